"""A dependency-free lexical embedder for smoke runs and tests (``embedder = "hashing[:DIM]"``)."""

from __future__ import annotations

import hashlib

from rag_memory.errors import ConfigError
from rag_memory.knowledge_base.embedders.base import Embedder
from rag_memory.text.language import is_cjk_token, lexical_tokens


class HashingEmbedder(Embedder):
    """A dependency-free lexical embedder: hashed words and CJK characters/bigrams.

    It needs no model files and is fast and deterministic, which makes it useful for smoke
    runs and tests; it knows nothing of meaning, so use a real model for real retrieval.
    Configure it as ``embedder = "hashing"`` or ``"hashing:DIM"``.
    """

    def __init__(self, dimension: int = 1024, *, max_tokens: int = 256, batch_size: int = 256) -> None:
        if dimension < 8:
            raise ConfigError(f"hashing embedder dimension must be at least 8, got {dimension}")
        self._dimension = dimension
        self._max_tokens = max_tokens
        self.batch_size = batch_size
        self.model_id = f"hashing:{dimension}"

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    @staticmethod
    def tokens(text: str) -> list[str]:
        return lexical_tokens(text)

    def count_tokens(self, text: str) -> int:
        return len(self.tokens(text))

    def _features(self, text: str) -> list[str]:
        toks = self.tokens(text)[: self._max_tokens]
        cjk = [t for t in toks if is_cjk_token(t)]
        return toks + [a + b for a, b in zip(cjk, cjk[1:], strict=False)]

    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        out = []
        for text in texts:
            vec = [0.0] * self._dimension
            for feat in self._features(text):
                digest = hashlib.blake2b(feat.encode("utf-8"), digest_size=8).digest()
                h = int.from_bytes(digest, "little")
                vec[h % self._dimension] += 1.0 if (h >> 63) & 1 else -1.0
            if not any(vec):
                vec[0] = 1.0  # an empty text still gets a unit vector
            out.append(vec)
        return out


def from_spec(spec: str, *, device: str = "auto", batch_size: int = 64) -> HashingEmbedder:
    """``hashing`` or ``hashing:DIM``."""
    try:
        return HashingEmbedder(int(spec) if spec else 1024, batch_size=batch_size)
    except ValueError as exc:
        raise ConfigError(f"embedder 'hashing:{spec}': the dimension after 'hashing:' must be a number") from exc
