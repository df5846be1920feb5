"""The embedder base class: batching, normalisation and a query cache on top of one method.

A backend subclasses ``Embedder`` and implements ``_embed_batch``, ``dimension``,
``max_tokens`` and ``count_tokens``; ``embed_documents`` and ``embed_query`` are built on them.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence

_QUERY_CACHE_SIZE = 32
_QUERY_CACHE_LOCK = threading.Lock()


class Embedder(ABC):
    """Base class: batching and normalisation on top of ``_embed_batch``.

    Attributes:
        model_id: A stable name stored with the collection, so a mismatch is caught.
        batch_size: Texts per call to ``_embed_batch``.
    """

    model_id: str = "embedder"
    batch_size: int = 64
    # Whether ``warm_up`` and ``embed_query`` may run in a background thread while the caller
    # imports other packages (after ``preload_modules`` on the calling thread): two threads
    # importing the same package at once can fail, so a backend says yes only when everything
    # it imports after ``preload_modules`` is already imported.
    background_safe: bool = False

    def preload_modules(self) -> None:  # noqa: B027 - most backends need nothing
        """Import, on the calling thread, what ``warm_up`` and ``embed_query`` will need."""

    def warm_up(self) -> None:  # noqa: B027 - a backend without a model has nothing to load
        """Load the model; idempotent."""

    @property
    @abstractmethod
    def dimension(self) -> int:
        """Floats per vector."""

    @property
    def max_tokens(self) -> int:
        """Tokens of text the model reads before it truncates (special tokens excluded); needed
        by ingest's chunker."""
        raise NotImplementedError(f"{type(self).__name__} does not say how many tokens it reads")

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` has for this model (special tokens excluded); needed by ingest's chunker."""
        raise NotImplementedError(f"{type(self).__name__} does not count tokens")

    def count_tokens_batch(self, texts: list[str]) -> list[int]:
        """``count_tokens`` of each text; backends with a batch tokenizer do it in one call."""
        return [self.count_tokens(t) for t in texts]

    def token_spans(self, texts: list[str]) -> list[tuple[list[tuple[int, int]], list[int | None]]] | None:
        """Per text, the character offsets of its tokens and the number of the word each was
        cut from, where the tokenizer works word by word: cut between two words, a text
        tokenises into exactly the tokens between the cuts (WordPiece after BERT's
        pre-tokenizer does; byte-level BPE and SentencePiece, which fold a space into the next
        token, do not). None where that does not hold: the chunker then counts each piece."""
        return None

    def _lengths(self, texts: Sequence[str]) -> list[int]:
        """Sort keys for batching: token counts where the backend counts tokens, else characters."""
        try:
            return self.count_tokens_batch(list(texts))
        except NotImplementedError:
            return [len(t) for t in texts]

    @abstractmethod
    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        """Vectors (any length-scale; they are normalised afterwards) for a batch of documents."""

    def _embed_query(self, text: str) -> list[float]:
        return self._embed_batch([text])[0]

    def embed_documents(
        self,
        texts: Sequence[str],
        *,
        progress: Callable[[int], None] | None = None,
        lengths: Sequence[int] | None = None,
    ) -> list[list[float]]:
        """Embed texts for storage.

        Texts are sorted by token count and cut into batches of ``batch_size`` in that order,
        so a batch pads to lengths close to its own (results come back in the input order).

        Args:
            texts: The texts, each within ``max_tokens``.
            progress: Called with the number of texts done after each batch.
            lengths: The texts' token counts where the caller has them (ingest's chunks carry
                theirs), so they are not tokenised again only to be sorted.

        Returns:
            One unit-length vector (``dimension`` floats) per text, in order.
        """
        self.warm_up()
        if not texts:
            return []
        if len(texts) <= self.batch_size:  # one batch pads to its longest text in any order
            order = list(range(len(texts)))
        else:
            if lengths is None or len(lengths) != len(texts):
                lengths = self._lengths(texts)
            order = sorted(range(len(texts)), key=lengths.__getitem__, reverse=True)
        out: list[list[float] | None] = [None] * len(texts)
        for start in range(0, len(order), self.batch_size):
            picked = order[start : start + self.batch_size]
            vectors = self._embed_batch([texts[i] for i in picked])
            for i, vector in zip(picked, vectors, strict=True):
                out[i] = _normalise(vector)
            if progress:
                progress(len(picked))
        return out  # type: ignore[return-value]

    def embed_query(self, text: str) -> list[float]:
        """Embed a search query as one unit-length vector.

        The last few queries are remembered: one question is searched in the knowledge base
        and in long-term memory, and should be embedded once. A query another thread is
        embedding right now (a search's background prefetch) is waited for, not embedded again.
        """
        cache = self.__dict__.setdefault("_query_cache", OrderedDict())
        pending: dict[str, threading.Event] = self.__dict__.setdefault("_query_pending", {})
        with _QUERY_CACHE_LOCK:
            if text in cache:
                cache.move_to_end(text)
                return list(cache[text])
            running = pending.get(text)
            if running is None:
                pending[text] = done = threading.Event()
        if running is not None:
            running.wait()
            with _QUERY_CACHE_LOCK:
                if text in cache:
                    return list(cache[text])
            return self.embed_query(text)  # that thread failed: try here (its error is ours too)
        try:
            self.warm_up()
            vector = _normalise(self._embed_query(text))
            with _QUERY_CACHE_LOCK:
                cache[text] = tuple(vector)
                if len(cache) > _QUERY_CACHE_SIZE:
                    cache.popitem(last=False)
        finally:
            with _QUERY_CACHE_LOCK:
                pending.pop(text, None)
            done.set()
        return vector


def _normalise(vector: Sequence[float]) -> list[float]:
    norm = math.hypot(*vector)
    if norm == 0.0:
        return [float(x) for x in vector]
    return [float(x) / norm for x in vector]
