"""One SQLite helper for every SQLite file ragmem keeps (manifest, chat history, keyword index,
entity graph ...).

Every file is opened the same way: write-ahead logging, a busy timeout, one connection per
process shared by its threads under a lock (so ``as_retriever().batch()`` and ``ainvoke()``
work), ``BEGIN IMMEDIATE`` transactions, and named migrations applied on open. SQL is built
from bound parameters; only table names that the code itself makes are formatted into it.

Example:
    >>> db = Database(home / "notes.sqlite3", "the notes", migrations=[
    ...     ("0001-notes", "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT)"),
    ... ])
    >>> with db.transaction() as conn:
    ...     _ = conn.execute("INSERT INTO notes (text) VALUES (?)", ("hello",))
    >>> db.read("SELECT text FROM notes")
    [('hello',)]
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from rag_memory.errors import RagMemoryError, StoreError
from rag_memory.home import private_file

__all__ = ["BUSY_TIMEOUT_S", "Database", "Migration"]

_T = TypeVar("_T")

BUSY_TIMEOUT_S = 30.0

# (name, SQL script or a function of the connection). Names are applied once, in order; a
# script should use IF NOT EXISTS so files made before migrations existed take it cleanly.
Migration = tuple[str, "str | Callable[[sqlite3.Connection], None]"]

_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS ragmem_migrations (
    name       TEXT PRIMARY KEY,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
"""


def _default_error(what: str, path: Path) -> Callable[[str, Exception], RagMemoryError]:
    def make(doing: str, exc: Exception) -> RagMemoryError:
        text = str(exc)
        if "not a database" in text or "malformed" in text:
            hint = f"The file is damaged: move {path} aside and run the command again."
        elif "locked" in text or "busy" in text:
            hint = "Another ragmem process holds it: wait for it to finish and try again."
        else:
            hint = "Check the folder's permissions and free space, or move the ragmem home with RAGMEM_HOME."
        return StoreError(f"cannot {doing} {what} {path}: {text}. {hint}")

    return make


class Database:
    """A lazily opened SQLite file with the project's pragmas, lock, transactions and migrations.

    Args:
        path: The file (it and its folder are created on first use, readable only by their owner).
        what: What the file is, for error messages ("the chat history").
        migrations: Named schema steps, applied once each, in order, on open.
        error: Turns (doing, exception) into the user-facing error to raise; the default
            names the file and says what to do.
        functions: SQL functions to register on the connection: (name, n_args, function).
    """

    def __init__(
        self,
        path: Path | str,
        what: str,
        *,
        migrations: Sequence[Migration] = (),
        error: Callable[[str, Exception], RagMemoryError] | None = None,
        functions: Sequence[tuple[str, int, Callable[..., Any]]] = (),
    ) -> None:
        self.path = Path(path)
        self.what = what
        self.migrations = list(migrations)
        self.error = error or _default_error(what, self.path)
        self.functions = list(functions)
        self.lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None

    @property
    def exists(self) -> bool:
        """Whether the file is open or on disk; readers of a missing file return nothing."""
        return self._conn is not None or self.path.exists()

    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection (opened, migrated, on first use). Hold ``lock`` while using it."""
        with self.lock:
            if self._conn is None:
                self._conn = self._open()
            return self._conn

    def _open(self) -> sqlite3.Connection:
        try:
            # Created 0600 in a 0700 folder before SQLite opens it; SQLite gives its -wal and
            # -shm files the database file's mode.
            private_file(self.path)
        except OSError as exc:
            raise self.error("create", exc) from exc
        conn = None
        try:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            for name, n_args, fn in self.functions:
                conn.create_function(name, n_args, fn, deterministic=True)
            self._migrate(conn)
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise self.error("open", exc) from exc
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.executescript(_MIGRATIONS_TABLE)
        done = {r[0] for r in conn.execute("SELECT name FROM ragmem_migrations")}
        for name, step in self.migrations:
            if name in done:
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Another process may have applied it while this one waited for the lock.
                if conn.execute("SELECT 1 FROM ragmem_migrations WHERE name = ?", (name,)).fetchone():
                    conn.execute("ROLLBACK")
                    continue
                if callable(step):
                    step(conn)
                else:
                    for statement in _statements(step):
                        conn.execute(statement)
                conn.execute("INSERT INTO ragmem_migrations (name) VALUES (?)", (name,))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection; the next use opens it again."""
        with self.lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- use -------------------------------------------------------------------------------
    def run(self, doing: str, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Call ``work(conn)`` under the lock, turning SQLite errors into the user-facing one."""
        with self.lock:
            conn = self.conn
            try:
                return work(conn)
            except sqlite3.Error as exc:
                raise self.error(doing, exc) from exc

    def read(self, sql: str, params: Sequence[Any] = (), *, doing: str = "read") -> list[tuple]:
        """All rows of one query (no rows when the file does not exist yet)."""
        if not self.exists:
            return []
        return self.run(doing, lambda conn: conn.execute(sql, params).fetchall())

    @contextmanager
    def transaction(self, doing: str = "write to") -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception), under the lock."""
        with self.lock:
            conn = self.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self.error("start a write to", exc) from exc
            try:
                yield conn
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK")
                raise self.error(doing, exc) from exc
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    conn.execute("ROLLBACK")
                    raise self.error(doing, exc) from exc


def _statements(script: str) -> list[str]:
    """Split a schema script into statements (``executescript`` would commit our transaction)."""
    out, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                out.append(current.strip())
            current = ""
    if current.strip():
        out.append(current.strip())
    return out
