"""Chroma-style metadata filters (``{"key": value}``, ``$eq`` ... ``$and``/``$or``).

Chroma evaluates every filter, for the dense side and for the keyword index alike: the keyword
index is restricted to the ids Chroma's own evaluation allows (``ChromaStore.ids(where=...)``,
then ``BM25Index.search(ids=...)``), so no SQL is ever built from a filter's keys or values and
both retrievers agree on which chunks a filter keeps. This module turns Chroma's complaints
about a filter into a ``ConfigError`` that names the filter and the syntax.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from rag_memory.errors import ConfigError

__all__ = ["FILTER_SYNTAX", "filter_errors"]

FILTER_SYNTAX = (
    'one key per mapping, e.g. {"source": "/docs/a.md"}, {"page": {"$gte": 3}},'
    ' {"$and": [{"a": 1}, {"b": {"$in": ["x", "y"]}}]}; operators $eq $ne $gt $gte $lt $lte $in $nin'
    " on str, int, float or bool values, and $and/$or over two or more filters"
)


@contextmanager
def filter_errors(where: Mapping[str, Any] | None) -> Iterator[None]:
    """Raise a ``ConfigError`` naming ``where`` when Chroma refuses it inside the block."""
    if where is None or (isinstance(where, Mapping) and not where):  # no filter
        yield
        return
    if not isinstance(where, Mapping):
        raise ConfigError(f"a metadata filter must be a mapping, got {where!r}; use {FILTER_SYNTAX}")
    from rag_memory.knowledge_base.chroma_import import import_chromadb

    import_chromadb()
    from chromadb.errors import InvalidArgumentError

    try:
        yield
    except (ValueError, TypeError, OverflowError, InvalidArgumentError) as exc:
        # Chroma validates a filter before it reads anything, so this is the filter's fault.
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"the metadata filter {where!r} is not valid: {message}. Use {FILTER_SYNTAX}") from exc
