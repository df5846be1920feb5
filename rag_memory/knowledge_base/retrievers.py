"""Retrievers: rank knowledge-base chunks for a query."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rag_memory.errors import ConfigError
from rag_memory.knowledge_base.embedders import Embedder
from rag_memory.knowledge_base.store import ChromaStore
from rag_memory.schema import Hit


def match_sources(sources: Iterable[str], pattern: str) -> list[str]:
    """Sources whose absolute path, path relative to the working folder, or name match a glob."""
    out = []
    for src in sources:
        rel = os.path.relpath(src) if os.path.isabs(src) else src
        if (
            fnmatch.fnmatch(src, pattern)
            or fnmatch.fnmatch(rel, pattern)
            or fnmatch.fnmatch(os.path.basename(src), pattern)
        ):
            out.append(src)
    return out


class DenseRetriever:
    """Rank knowledge-base chunks by cosine similarity to a query.

    Args:
        store: The knowledge base to search.
        embedder: Embeds the query; must be the embedder the store was built with.
        top_k: How many hits to return by default.
        min_score: Hits below this similarity are dropped by default.
        sources: Lists the stored sources, for ``source_glob`` filters.
    """

    def __init__(
        self,
        store: ChromaStore,
        embedder: Embedder,
        *,
        top_k: int = 5,
        min_score: float = -1.0,
        sources: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        if top_k <= 0:
            raise ConfigError(f"top_k must be at least 1, got {top_k}")
        self.store, self.embedder, self.top_k, self.min_score = store, embedder, top_k, min_score
        self.sources = sources

    def retrieve(
        self,
        query: str,
        *,
        top_k: int | None = None,
        min_score: float | None = None,
        source_glob: str | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> list[Hit]:
        """The best chunks for ``query``, best first.

        Args:
            query: The question or search text.
            top_k: Hits to return (default: the constructor's).
            min_score: Drop hits below this cosine similarity (default: the constructor's).
            source_glob: Keep only chunks from sources matching this glob, e.g. ``docs/*.md``.
            where: A raw Chroma metadata filter, combined with ``source_glob``.
        """
        vector, filt = self._prepare(query, top_k, source_glob, where)
        if vector is None:
            return []
        return self.store.query(
            vector,
            k=top_k or self.top_k,
            where=filt,
            min_score=self.min_score if min_score is None else min_score,
        )

    def rank(
        self,
        query: str,
        *,
        top_k: int | None = None,
        source_glob: str | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> list[tuple[str, float]]:
        """``retrieve`` without reading the chunks or a score floor: (chunk id, cosine) pairs,
        best first."""
        vector, filt = self._prepare(query, top_k, source_glob, where)
        if vector is None:
            return []
        return self.store.rank(vector, k=top_k or self.top_k, where=filt)

    def _prepare(
        self, query: str, top_k: int | None, source_glob: str | None, where: Mapping[str, Any] | None
    ) -> tuple[list[float] | None, dict[str, Any] | None]:
        """The query's vector and the Chroma filter; no vector when nothing can match."""
        if top_k is not None and top_k <= 0:
            raise ConfigError(f"top_k must be at least 1, got {top_k}")
        if not query.strip():
            raise ConfigError("the query is empty; give some text to search for")
        if not self.store.exists():
            return None, None
        self.store.check_embedder(self.embedder.model_id)
        clauses: list[dict[str, Any]] = [dict(where)] if where else []
        if source_glob:
            if self.sources is None:
                raise ConfigError("this retriever cannot filter by source: it was built without a source list")
            matching = match_sources(self.sources(), source_glob)
            if not matching:
                return None, None
            clauses.append({"source": {"$in": matching}})
        filt = clauses[0] if len(clauses) == 1 else ({"$and": clauses} if clauses else None)
        return self.embedder.embed_query(query), filt
