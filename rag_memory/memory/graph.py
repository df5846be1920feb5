"""The per-user entity graph: people, places, things and dates linked across conversations.

SQLite (through ``rag_memory.sqlite.Database``, with migrations), one file under the home:

- ``entities``: one row per (user, key), with its name, kind and when it was first/last seen;
- ``mentions``: which memory unit mentions which entity, with provenance ``session:turn``;
- ``edges``: two entities mentioned by the same unit, with how many units and first/last seen.

Edges and the seen-times are derived from the mentions, so forgetting a unit removes its
mentions and recomputes what depended on them: no entity or edge outlives its last mention.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from rag_memory.schema import Entity
from rag_memory.sqlite import Database
from rag_memory.text.entities import Mention

log = logging.getLogger(__name__)

__all__ = ["EntityGraph", "UnitMentions"]

MIGRATIONS = [
    (
        "0001-entity-graph",
        """
CREATE TABLE IF NOT EXISTS entities (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT NOT NULL,
    key        TEXT NOT NULL,
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen  TEXT NOT NULL,
    UNIQUE (user_id, key)
);
CREATE TABLE IF NOT EXISTS mentions (
    entity_id  INTEGER NOT NULL REFERENCES entities(id),
    memory_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    session_id TEXT NOT NULL,
    turn       TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (entity_id, memory_id)
);
CREATE INDEX IF NOT EXISTS mentions_by_memory ON mentions (memory_id);
CREATE INDEX IF NOT EXISTS mentions_by_user ON mentions (user_id, session_id);
CREATE TABLE IF NOT EXISTS edges (
    user_id    TEXT NOT NULL,
    a          INTEGER NOT NULL REFERENCES entities(id),
    b          INTEGER NOT NULL REFERENCES entities(id),
    weight     INTEGER NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen  TEXT NOT NULL,
    PRIMARY KEY (user_id, a, b)
);
CREATE INDEX IF NOT EXISTS edges_by_b ON edges (user_id, b);
""",
    )
]

# Entities mentioned by more units than this share of a user's units say little about any
# one unit (a conversation partner's name), so they link nothing in the graph.
MAX_EDGE_ENTITIES = 12


@dataclass(frozen=True)
class UnitMentions:
    """The entities one memory unit mentions."""

    memory_id: str
    session_id: str
    turn: str | None
    created_at: str
    mentions: tuple[Mention, ...]


class EntityGraph:
    """Entities, mentions and co-occurrence edges per user.

    Args:
        path: The SQLite file (created on first write).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.db = Database(self.path, "the entity graph", migrations=MIGRATIONS)

    def close(self) -> None:
        self.db.close()

    # -- writes ----------------------------------------------------------------------------
    def add(self, user_id: str, units: Sequence[UnitMentions]) -> None:
        """Record the entities of a batch of one user's units (one transaction)."""
        units = [u for u in units if u.mentions]
        if not units:
            return
        with self.db.transaction() as conn:
            for unit in units:
                ids = []
                for m in unit.mentions[:MAX_EDGE_ENTITIES * 2]:
                    conn.execute(
                        "INSERT INTO entities (user_id, key, name, kind, first_seen, last_seen)"
                        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, key) DO UPDATE SET"
                        " first_seen = min(first_seen, excluded.first_seen),"
                        " last_seen = max(last_seen, excluded.last_seen)",
                        (user_id, m.key, m.name, m.kind, unit.created_at, unit.created_at),
                    )
                    eid = conn.execute(
                        "SELECT id FROM entities WHERE user_id = ? AND key = ?", (user_id, m.key)
                    ).fetchone()[0]
                    inserted = conn.execute(
                        "INSERT OR IGNORE INTO mentions (entity_id, memory_id, user_id, session_id, turn, created_at)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (eid, unit.memory_id, user_id, unit.session_id, unit.turn, unit.created_at),
                    ).rowcount
                    if inserted:
                        ids.append(eid)
                for a, b in combinations(sorted(set(ids))[:MAX_EDGE_ENTITIES], 2):
                    conn.execute(
                        "INSERT INTO edges (user_id, a, b, weight, first_seen, last_seen) VALUES (?, ?, ?, 1, ?, ?)"
                        " ON CONFLICT (user_id, a, b) DO UPDATE SET weight = weight + 1,"
                        " first_seen = min(first_seen, excluded.first_seen),"
                        " last_seen = max(last_seen, excluded.last_seen)",
                        (user_id, a, b, unit.created_at, unit.created_at),
                    )

    def remove(self, user_id: str, memory_ids: Iterable[str]) -> int:
        """Forget the mentions of these units; entities and edges are recomputed from the
        mentions left, and those with none left are deleted. Returns mentions removed."""
        memory_ids = list(memory_ids)
        if not memory_ids or not self.db.exists:
            return 0
        removed = 0
        with self.db.transaction("delete from") as conn:
            affected: set[int] = set()
            for start in range(0, len(memory_ids), 500):
                batch = memory_ids[start : start + 500]
                marks = ",".join("?" * len(batch))
                affected.update(
                    r[0] for r in conn.execute(
                        f"SELECT DISTINCT entity_id FROM mentions WHERE user_id = ? AND memory_id IN ({marks})",
                        (user_id, *batch),
                    )
                )
                removed += conn.execute(
                    f"DELETE FROM mentions WHERE user_id = ? AND memory_id IN ({marks})", (user_id, *batch)
                ).rowcount
            self._recompute(conn, user_id, sorted(affected))
        return removed

    def _recompute(self, conn: sqlite3.Connection, user_id: str, entity_ids: Sequence[int]) -> None:
        for eid in entity_ids:
            row = conn.execute(
                "SELECT count(*), min(created_at), max(created_at) FROM mentions WHERE entity_id = ?", (eid,)
            ).fetchone()
            conn.execute("DELETE FROM edges WHERE user_id = ? AND (a = ? OR b = ?)", (user_id, eid, eid))
            if not row[0]:
                conn.execute("DELETE FROM entities WHERE id = ?", (eid,))
                continue
            conn.execute("UPDATE entities SET first_seen = ?, last_seen = ? WHERE id = ?", (row[1], row[2], eid))
            # Rebuild this entity's edges from the units that still mention it and a neighbour.
            conn.execute(
                "INSERT OR REPLACE INTO edges (user_id, a, b, weight, first_seen, last_seen)"
                " SELECT ?, min(m1.entity_id, m2.entity_id), max(m1.entity_id, m2.entity_id), count(*),"
                " min(m1.created_at), max(m1.created_at)"
                " FROM mentions m1 JOIN mentions m2 ON m1.memory_id = m2.memory_id AND m2.entity_id != m1.entity_id"
                " WHERE m1.entity_id = ? GROUP BY m2.entity_id",
                (user_id, eid),
            )

    def forget_user(self, user_id: str) -> None:
        """Delete all of a user's entities, mentions and edges."""
        if not self.db.exists:
            return
        with self.db.transaction("delete from") as conn:
            conn.execute("DELETE FROM edges WHERE user_id = ?", (user_id,))
            conn.execute("DELETE FROM mentions WHERE user_id = ?", (user_id,))
            conn.execute("DELETE FROM entities WHERE user_id = ?", (user_id,))

    def clear(self) -> None:
        """Delete every user's graph."""
        if not self.db.exists:
            return
        with self.db.transaction("clear") as conn:
            for table in ("edges", "mentions", "entities"):
                conn.execute(f"DELETE FROM {table}")

    # -- reads -----------------------------------------------------------------------------
    def entities(self, user_id: str, *, limit: int | None = None) -> list[Entity]:
        """The user's entities, most mentioned first, with their sessions and related entities."""
        rows = self.db.read(
            "SELECT e.id, e.name, e.kind, count(m.memory_id), e.first_seen, e.last_seen FROM entities e"
            " JOIN mentions m ON m.entity_id = e.id WHERE e.user_id = ? GROUP BY e.id"
            " ORDER BY count(m.memory_id) DESC, e.first_seen, e.name LIMIT ?",
            (user_id, -1 if limit is None else int(limit)),
        )
        return [self._entity(user_id, *row) for row in rows]

    def _entity(self, user_id: str, eid: int, name: str, kind: str, n: int, first: str, last: str) -> Entity:
        sessions = self.db.read(
            "SELECT session_id FROM mentions WHERE entity_id = ? GROUP BY session_id ORDER BY min(created_at)",
            (eid,),
        )
        related = self.db.read(
            "SELECT e.name, x.weight FROM (SELECT b AS other, weight FROM edges WHERE user_id = ? AND a = ?"
            " UNION ALL SELECT a, weight FROM edges WHERE user_id = ? AND b = ?) x JOIN entities e ON e.id = x.other"
            " ORDER BY x.weight DESC, e.name LIMIT 8",
            (user_id, eid, user_id, eid),
        )
        return Entity(name, kind, int(n), first, last, tuple(r[0] for r in sessions),
                      tuple((r[0], int(r[1])) for r in related))

    def lookup(self, user_id: str, keys: Sequence[str]) -> list[Entity]:
        """The user's entities with these keys (case-folded names or normalised dates)."""
        if not keys:
            return []
        marks = ",".join("?" * len(keys))
        rows = self.db.read(
            "SELECT e.id, e.name, e.kind, count(m.memory_id), e.first_seen, e.last_seen FROM entities e"
            f" JOIN mentions m ON m.entity_id = e.id WHERE e.user_id = ? AND e.key IN ({marks}) GROUP BY e.id",
            (user_id, *keys),
        )
        return [self._entity(user_id, *row) for row in rows]

    def mentioning(self, user_id: str, keys: Sequence[str]) -> dict[str, set[str]]:
        """For each key the user's graph knows: the ids of the memory units that mention it."""
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        out: dict[str, set[str]] = {}
        for key, mid in self.db.read(
            "SELECT e.key, m.memory_id FROM entities e JOIN mentions m ON m.entity_id = e.id"
            f" WHERE e.user_id = ? AND e.key IN ({marks})",
            (user_id, *keys),
        ):
            out.setdefault(key, set()).add(mid)
        return out

    def neighbours(self, user_id: str, keys: Sequence[str], *, limit: int = 5) -> list[tuple[str, int]]:
        """Keys of the entities most often mentioned with these ones (one hop), strongest first."""
        if not keys:
            return []
        marks = ",".join("?" * len(keys))
        rows = self.db.read(
            "WITH q AS (SELECT id FROM entities WHERE user_id = ? AND key IN (" + marks + "))"
            " SELECT e.key, sum(x.weight) AS w FROM (SELECT b AS other, weight FROM edges WHERE user_id = ?"
            " AND a IN (SELECT id FROM q) UNION ALL SELECT a, weight FROM edges WHERE user_id = ? AND b IN"
            " (SELECT id FROM q)) x JOIN entities e ON e.id = x.other WHERE e.id NOT IN (SELECT id FROM q)"
            " GROUP BY e.key ORDER BY w DESC LIMIT ?",
            (user_id, *keys, user_id, user_id, limit),
        )
        return [(r[0], int(r[1])) for r in rows]

    def mention_counts(self, user_id: str, keys: Sequence[str]) -> dict[str, int]:
        """How many units mention each key."""
        return {k: len(v) for k, v in self.mentioning(user_id, keys).items()}

    def counts(self) -> dict[str, int]:
        """Rows per table (for checks and status)."""
        return {t: int(self.db.read(f"SELECT count(*) FROM {t}")[0][0]) if self.db.exists else 0
                for t in ("entities", "mentions", "edges")}
