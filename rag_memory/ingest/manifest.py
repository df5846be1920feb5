"""The sync manifest: which files are in a collection, at which content, as which chunks.

SQLite under the ragmem home. Writes to the vector store are bracketed by a *pending*
record (written before, cleared after, in one transaction with the file's new row), so a
run killed at any point leaves enough behind for the next run to repair the store.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rag_memory.errors import StoreError
from rag_memory.sqlite import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    collection   TEXT NOT NULL,
    path         TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    settings_key TEXT NOT NULL,
    chunk_ids    TEXT NOT NULL,
    title        TEXT,
    size         INTEGER,
    ingested_at  TEXT NOT NULL,
    PRIMARY KEY (collection, path)
);
CREATE TABLE IF NOT EXISTS pending (
    collection TEXT NOT NULL,
    path       TEXT NOT NULL,
    chunk_ids  TEXT NOT NULL,
    started_at TEXT NOT NULL,
    PRIMARY KEY (collection, path)
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    collection  TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    summary     TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class FileRecord:
    path: str
    content_hash: str
    settings_key: str
    chunk_ids: tuple[str, ...]
    title: str | None
    ingested_at: str


MIGRATIONS = [("0001-manifest", SCHEMA)]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Manifest:
    """Sync state of one collection.

    Args:
        path: The SQLite file (created on first use).
        collection: Which collection's records to read and write.
    """

    def __init__(self, path: Path, collection: str) -> None:
        self.path = Path(path)
        self.collection = collection
        self.db = Database(self.path, "the ingest manifest", migrations=MIGRATIONS, error=self._error)

    def _error(self, doing: str, exc: Exception) -> StoreError:
        return StoreError(
            f"cannot {doing} the ingest manifest {self.path}: {exc}. Check the folder's permissions,"
            " or move the ragmem home with RAGMEM_HOME."
        )

    @property
    def exists(self) -> bool:
        """Whether the manifest file is there; reads of a missing one return nothing."""
        return self.db.exists

    def _read(self, sql: str, params=()) -> list[tuple]:
        return self.db.read(sql, params)

    @property
    def instance_id(self) -> str:
        """A random id of this manifest, stamped on every chunk it writes.

        Repair removes only the chunks that carry it, so two homes sharing a collection on a
        Chroma server never delete each other's chunks.
        """
        _ = self.db.conn  # create the file: the id must outlive this call
        rows = self._read("SELECT value FROM meta WHERE key = 'instance_id'")
        if rows:
            return rows[0][0]
        new = uuid.uuid4().hex
        with self.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('instance_id', ?)", (new,))
        return self._read("SELECT value FROM meta WHERE key = 'instance_id'")[0][0]

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.db.transaction() as conn:
            yield conn

    # -- files -------------------------------------------------------------------------
    def files(self) -> dict[str, FileRecord]:
        rows = self._read(
            "SELECT path, content_hash, settings_key, chunk_ids, title, ingested_at FROM files"
            " WHERE collection = ?",
            (self.collection,),
        )
        return {
            r[0]: FileRecord(r[0], r[1], r[2], tuple(json.loads(r[3])), r[4], r[5]) for r in rows
        }

    def sources(self) -> list[str]:
        return [r[0] for r in self._read("SELECT path FROM files WHERE collection = ?", (self.collection,))]

    def counts(self) -> tuple[int, int]:
        """(documents, chunks) recorded for the collection."""
        docs = 0
        chunks = 0
        for (ids,) in self._read("SELECT chunk_ids FROM files WHERE collection = ?", (self.collection,)):
            docs += 1
            chunks += len(json.loads(ids))
        return docs, chunks

    def all_chunk_ids(self) -> set[str]:
        out: set[str] = set()
        for (ids,) in self._read("SELECT chunk_ids FROM files WHERE collection = ?", (self.collection,)):
            out.update(json.loads(ids))
        return out

    # -- the write-ahead bracket ---------------------------------------------------------
    def begin(self, entries: Iterable[tuple[str, Iterable[str]]]) -> None:
        """Record that these files' chunks are about to be written to the store."""
        now = _now()
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO pending (collection, path, chunk_ids, started_at) VALUES (?, ?, ?, ?)",
                [(self.collection, path, json.dumps(sorted(set(ids))), now) for path, ids in entries],
            )

    def commit_files(self, records: Iterable[FileRecord], removed: Iterable[str] = ()) -> None:
        """Store the files' new state and clear their pending marks, atomically."""
        records = list(records)
        removed = list(removed)
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO files (collection, path, content_hash, settings_key, chunk_ids,"
                " title, ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (self.collection, r.path, r.content_hash, r.settings_key, json.dumps(list(r.chunk_ids)),
                     r.title, r.ingested_at)
                    for r in records
                ],
            )
            conn.executemany(
                "DELETE FROM files WHERE collection = ? AND path = ?", [(self.collection, p) for p in removed]
            )
            conn.executemany(
                "DELETE FROM pending WHERE collection = ? AND path = ?",
                [(self.collection, p) for p in [r.path for r in records] + removed],
            )

    def pending(self) -> dict[str, set[str]]:
        rows = self._read("SELECT path, chunk_ids FROM pending WHERE collection = ?", (self.collection,))
        return {r[0]: set(json.loads(r[1])) for r in rows}

    def clear_pending(self, paths: Iterable[str]) -> None:
        with self.transaction() as conn:
            conn.executemany(
                "DELETE FROM pending WHERE collection = ? AND path = ?", [(self.collection, p) for p in paths]
            )

    def forget(self, paths: Iterable[str]) -> None:
        with self.transaction() as conn:
            conn.executemany(
                "DELETE FROM files WHERE collection = ? AND path = ?", [(self.collection, p) for p in paths]
            )

    def drop(self) -> None:
        """Forget everything about the collection (for --rebuild)."""
        with self.transaction() as conn:
            for table in ("files", "pending", "runs"):
                conn.execute(f"DELETE FROM {table} WHERE collection = ?", (self.collection,))

    # -- runs --------------------------------------------------------------------------
    def record_run(self, summary: dict) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO runs (collection, finished_at, summary) VALUES (?, ?, ?)",
                (self.collection, _now(), json.dumps(summary)),
            )

    def last_run(self) -> str | None:
        rows = self._read(
            "SELECT finished_at FROM runs WHERE collection = ? ORDER BY id DESC LIMIT 1", (self.collection,)
        )
        return rows[0][0] if rows else None

    @staticmethod
    def now() -> str:
        return _now()
