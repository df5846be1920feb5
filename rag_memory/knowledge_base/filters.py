"""Chroma-style metadata filters (``{"key": value}``, ``$eq`` ... ``$and``/``$or``) as SQL
conditions on a JSON metadata column, for the keyword index."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rag_memory.errors import ConfigError

__all__ = ["where_to_sql"]

_OPS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def where_to_sql(where: Mapping[str, Any], column: str = "metadata") -> tuple[str, list[Any]]:
    """A Chroma ``where`` filter as an SQL condition on a JSON metadata column.

    Supports what Chroma does for metadata: ``{"key": value}``, ``$eq $ne $gt $gte $lt $lte
    $in $nin`` and nested ``$and`` / ``$or``.
    """
    if not isinstance(where, Mapping) or not where:
        raise ConfigError(f"a metadata filter must be a non-empty mapping, got {where!r}")
    parts: list[str] = []
    params: list[Any] = []
    for key, value in where.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list | tuple) or not value:
                raise ConfigError(f"{key} in a metadata filter takes a non-empty list of filters, got {value!r}")
            subs = [where_to_sql(v, column) for v in value]
            parts.append("(" + f" {key[1:].upper()} ".join(s for s, _ in subs) + ")")
            for _, p in subs:
                params.extend(p)
            continue
        if key.startswith("$") or '"' in key:
            raise ConfigError(f"unsupported key {key!r} in a metadata filter")
        field = f"json_extract({column}, '$.\"{key}\"')"
        ops = value if isinstance(value, Mapping) else {"$eq": value}
        for op, arg in ops.items():
            if op in _OPS:
                parts.append(f"{field} {_OPS[op]} ?")
                params.append(arg)
            elif op in ("$in", "$nin"):
                if not isinstance(arg, list | tuple):
                    raise ConfigError(f"{op} in a metadata filter takes a list, got {arg!r}")
                neg = "NOT " if op == "$nin" else ""
                parts.append(f"{field} {neg}IN (SELECT value FROM json_each(?))")
                params.append(json.dumps(list(arg)))
            else:
                raise ConfigError(
                    f"unsupported operator {op!r} in a metadata filter; use one of"
                    f" {', '.join([*_OPS, '$in', '$nin', '$and', '$or'])}"
                )
    return "(" + " AND ".join(parts) + ")", params
