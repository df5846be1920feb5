"""Reranking: a cross-encoder reads the query and each candidate together and re-scores it.

Slower than the first-stage retrievers (one forward pass per candidate), so it sees only the
best few fused candidates; on a GPU when there is one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from rag_memory.errors import ConfigError, EmbedderError
from rag_memory.hub import no_telemetry
from rag_memory.schema import Hit

log = logging.getLogger(__name__)


class CrossEncoderReranker:
    """Re-score hits with a sentence-transformers ``CrossEncoder``.

    Args:
        model: A cross-encoder's Hugging Face id (e.g. ``cross-encoder/ms-marco-MiniLM-L6-v2``,
            or ``BAAI/bge-reranker-v2-m3`` for Chinese and other languages) or a local folder.
        device: ``auto`` picks CUDA when available, else CPU.
        batch_size: Query-candidate pairs per forward pass.
        max_length: Longest pair in tokens (default: the model's own limit).
        allow_downloads: Fetch a model id missing from the Hugging Face cache from the hub
            (off by default; ``ragmem models pull`` fetches explicitly).

    Example:
        >>> reranker = CrossEncoderReranker("cross-encoder/ms-marco-MiniLM-L6-v2")  # doctest: +SKIP
        >>> reranker.rerank("capital of France", hits, top_k=3)[0].metadata["rerank_score"]  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        batch_size: int = 32,
        max_length: int | None = None,
        allow_downloads: bool = False,
    ) -> None:
        if not model or not str(model).strip():
            raise ConfigError("rerank_model is empty; name a cross-encoder model id or folder")
        if batch_size < 1:
            raise ConfigError(f"rerank batch_size must be at least 1, got {batch_size}")
        self.model_name = str(model)
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self.allow_downloads = allow_downloads
        self._model = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the model; idempotent."""
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            from rag_memory.devices import resolve_device

            device = resolve_device(self.device)
            local = Path(self.model_name).expanduser().exists()
            try:
                no_telemetry()
                from sentence_transformers import CrossEncoder

                from rag_memory.devices import quiet_model_loading

                with quiet_model_loading():
                    model = CrossEncoder(
                        str(Path(self.model_name).expanduser()) if local else self.model_name,
                        device=device,
                        local_files_only=local or not self.allow_downloads,
                        max_length=self.max_length,
                    )
            except Exception as exc:
                raise EmbedderError(
                    f"cannot load the reranker {self.model_name!r}: {exc}. Name a local cross-encoder folder or"
                    " a model in the Hugging Face cache (setting 'rerank_model'; fetch it once with"
                    f" `ragmem models pull {self.model_name}`, or set allow_downloads = true), or unset"
                    " rerank_model to skip reranking."
                ) from exc
            log.info("loaded reranker %s on %s", self.model_name, device)
            self._model = model

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        """The cross-encoder's relevance score of each text for the query (higher is better)."""
        if not texts:
            return []
        self.warm_up()
        assert self._model is not None
        scores = self._model.predict(
            [(query, t) for t in texts], batch_size=self.batch_size, show_progress_bar=False, convert_to_numpy=True
        )
        return [float(s) for s in scores.reshape(len(texts), -1)[:, -1]]

    def rerank(self, query: str, hits: Sequence[Hit], top_k: int | None = None) -> list[Hit]:
        """Hits re-ordered by the cross-encoder, best first.

        Args:
            query: The search text.
            hits: First-stage candidates.
            top_k: How many to keep (default: all).

        Returns:
            Hits whose ``score`` is the rerank score; ``metadata`` gains ``rerank_score`` and
            keeps the first-stage score as ``retrieval_score``.
        """
        if top_k is not None and top_k <= 0:
            raise ConfigError(f"top_k must be at least 1, got {top_k}")
        hits = list(hits)
        scores = self.score(query, [h.text for h in hits])
        out = []
        for hit, s in zip(hits, scores, strict=True):
            meta = dict(hit.metadata)
            meta["retrieval_score"] = hit.score
            meta["rerank_score"] = s
            out.append(
                Hit(chunk_id=hit.chunk_id, text=hit.text, score=s, source=hit.source, page=hit.page,
                    title=hit.title, metadata=meta)
            )
        out.sort(key=lambda h: -h.score)  # stable: ties keep the first-stage order
        return out if top_k is None else out[:top_k]
