"""The chat history: every turn of every session, per user, in one SQLite file.

SQLite in WAL mode under the ragmem home, so a reader (``ragmem memory list``) never blocks
the writer (``ragmem ask``), and a turn written by one process is seen by the next. The
connection opens on first use; one connection, shared by threads under a lock, is plenty
for a CLI or a single-process app.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from rag_memory.errors import ConfigError, MemoryStoreError
from rag_memory.schema import Turn
from rag_memory.sqlite import Database

log = logging.getLogger(__name__)

ROLES = ("user", "assistant", "system")

SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT NOT NULL,
    session_id TEXT NOT NULL,
    role       TEXT NOT NULL,
    content    TEXT NOT NULL,
    created_at TEXT NOT NULL,
    metadata   TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS turns_by_session ON turns (user_id, session_id, id);
CREATE TABLE IF NOT EXISTS summaries (
    user_id      TEXT NOT NULL,
    session_id   TEXT NOT NULL,
    summary      TEXT NOT NULL,
    upto_turn_id INTEGER NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (user_id, session_id)
);
"""

MIGRATIONS = [("0001-history", SCHEMA)]

_T = TypeVar("_T")


def as_utc(value: datetime | str | None = None) -> datetime:
    """A moment as an aware UTC datetime: now when ``None``; naive values are taken as UTC.

    Raises:
        ConfigError: ``value`` is a string that is not ISO 8601.
    """
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise ConfigError(
                f"timestamp {value!r} is not ISO 8601; use e.g. 2024-05-01T09:30:00+00:00"
            ) from exc
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def utc_iso(value: datetime | str | None = None) -> str:
    """``as_utc(value)`` as an ISO 8601 string with its ``+00:00`` offset."""
    return as_utc(value).isoformat()


def check_id(name: str, value: str) -> str:
    """Refuse empty or non-string user and session ids; returns the id unchanged."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
    return value


@dataclass(frozen=True)
class SessionInfo:
    """One stored conversation.

    Attributes:
        user_id: Whose conversation it is.
        session_id: The session's id.
        turns: How many turns it holds.
        first_at: When its first turn was stored (ISO 8601, UTC).
        last_at: When its latest turn was stored (ISO 8601, UTC).
    """

    user_id: str
    session_id: str
    turns: int
    first_at: str
    last_at: str


class ChatHistory:
    """Stored conversation turns and running session summaries.

    Args:
        path: The SQLite file; it and its folder are created on first use.

    Example:
        >>> history = ChatHistory(Path("memory.sqlite3"))
        >>> history.add("alice", "s1", "user", "What is ragmem?").role
        'user'
        >>> [t.content for t in history.turns("alice", "s1")]
        ['What is ragmem?']
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        # SQLite's lower() and LIKE fold ASCII only; casefold covers every script.
        self.db = Database(
            self.path, "the chat history", migrations=MIGRATIONS, error=self._fail,
            functions=[("ragmem_fold", 1, _fold)],
        )

    # -- the connection ------------------------------------------------------------------
    def _fail(self, doing: str, exc: Exception) -> MemoryStoreError:
        text = str(exc)
        if isinstance(exc, OSError):
            return MemoryStoreError(
                f"cannot create the folder of the chat history {self.path}: {exc.strerror}."
                " Check its permissions, or move the ragmem home with RAGMEM_HOME."
            )
        if "not a database" in text or "malformed" in text:
            hint = "The file is damaged: move it aside (the next run starts an empty history)."
        elif "locked" in text or "busy" in text:
            hint = "Another ragmem process holds it: wait for it to finish and try again."
        else:
            hint = "Check the folder's permissions and free space, or move the ragmem home with RAGMEM_HOME."
        return MemoryStoreError(f"cannot {doing} the chat history {self.path}: {text}. {hint}")

    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection (opened, in WAL mode, with the schema, on first use)."""
        return self.db.conn

    def close(self) -> None:
        """Close the connection; the next call opens it again."""
        self.db.close()

    def __enter__(self) -> ChatHistory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, doing: str, work: Callable[[sqlite3.Connection], _T]) -> _T:
        return self.db.run(doing, work)

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        with self.db.transaction() as tx:
            yield tx

    # -- turns ---------------------------------------------------------------------------
    def add(
        self,
        user_id: str,
        session_id: str,
        role: str,
        content: str,
        *,
        created_at: datetime | str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Turn:
        """Store one turn at the end of a session.

        Args:
            user_id: Whose conversation it is.
            session_id: The conversation.
            role: ``user``, ``assistant`` or ``system``.
            content: The message's text.
            created_at: When it was said (default: now); stored as ISO 8601 UTC.
            metadata: Anything JSON-serialisable to keep with the turn.

        Returns:
            The stored turn, with its ``id``.
        """
        check_id("user_id", user_id)
        check_id("session_id", session_id)
        if role not in ROLES:
            raise ConfigError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise ConfigError(f"turn content must be text, got {type(content).__name__}")
        when = utc_iso(created_at)
        try:
            meta = json.dumps(dict(metadata or {}), ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"turn metadata must be JSON-serialisable: {exc}") from exc

        def work(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO turns (user_id, session_id, role, content, created_at, metadata)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (user_id, session_id, role, content, when, meta),
            )
            return int(cur.lastrowid or 0)

        turn_id = self._run("write to", work)
        return Turn(role=role, content=content, user_id=user_id, session_id=session_id, created_at=when, id=turn_id)

    def add_many(
        self,
        user_id: str,
        session_id: str,
        turns: Sequence[tuple[str, str, datetime | str | None, Mapping[str, Any] | None]],
    ) -> list[Turn]:
        """Store several turns at the end of a session in one transaction.

        Args:
            user_id: Whose conversation it is.
            session_id: The conversation.
            turns: ``(role, content, created_at, metadata)`` each, in the order they were said.

        Returns:
            The stored turns, with their ids.
        """
        check_id("user_id", user_id)
        check_id("session_id", session_id)
        rows = []
        for role, content, created_at, metadata in turns:
            if role not in ROLES:
                raise ConfigError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
            if not isinstance(content, str):
                raise ConfigError(f"turn content must be text, got {type(content).__name__}")
            try:
                meta = json.dumps(dict(metadata or {}), ensure_ascii=False)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"turn metadata must be JSON-serialisable: {exc}") from exc
            rows.append((role, content, utc_iso(created_at), meta))

        def work(conn: sqlite3.Connection) -> list[int]:
            ids = []
            with self._transaction(conn):
                for role, content, when, meta in rows:
                    cur = conn.execute(
                        "INSERT INTO turns (user_id, session_id, role, content, created_at, metadata)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (user_id, session_id, role, content, when, meta),
                    )
                    ids.append(int(cur.lastrowid or 0))
            return ids

        ids = self._run("write to", work) if rows else []
        return [
            Turn(role=r[0], content=r[1], user_id=user_id, session_id=session_id, created_at=r[2], id=i)
            for r, i in zip(rows, ids, strict=True)
        ]

    def turns(self, user_id: str, session_id: str, *, limit: int | None = None) -> list[Turn]:
        """A session's turns in the order they were said; with ``limit``, only the last ones."""
        if limit is not None and limit < 0:
            raise ConfigError(f"limit must be 0 or more, got {limit}")
        if limit == 0:
            return []
        cols = "id, user_id, session_id, role, content, created_at"
        if limit is None:
            sql, args = (
                f"SELECT {cols} FROM turns WHERE user_id = ? AND session_id = ? ORDER BY id",
                (user_id, session_id),
            )
        else:
            sql, args = (
                f"SELECT * FROM (SELECT {cols} FROM turns WHERE user_id = ? AND session_id = ?"
                " ORDER BY id DESC LIMIT ?) ORDER BY id",
                (user_id, session_id, limit),
            )
        rows = self._run("read", lambda conn: conn.execute(sql, args).fetchall())
        return [_turn(r) for r in rows]

    def turn_metadata(self, turn_id: int) -> dict[str, Any]:
        """The metadata stored with a turn (empty when there is none or no such turn)."""
        row = self._run(
            "read", lambda conn: conn.execute("SELECT metadata FROM turns WHERE id = ?", (turn_id,)).fetchone()
        )
        return json.loads(row[0]) if row and row[0] else {}

    def sessions(self, user_id: str | None = None) -> list[SessionInfo]:
        """Every stored session (of one user, when given), most recently active first."""
        where, args = ("WHERE user_id = ?", (user_id,)) if user_id is not None else ("", ())
        sql = (
            "SELECT user_id, session_id, COUNT(*), MIN(created_at), MAX(created_at), MAX(id) FROM turns"
            f" {where} GROUP BY user_id, session_id ORDER BY MAX(id) DESC"
        )
        rows = self._run("read", lambda conn: conn.execute(sql, args).fetchall())
        return [SessionInfo(r[0], r[1], int(r[2]), r[3], r[4]) for r in rows]

    def speakers(self, user_id: str) -> set[str]:
        """The names the user's turns were stored under (``remember_turns``' speakers, e.g. the
        people of a replayed conversation); empty for the plain user of ``ask``/``chat``."""
        rows = self._run(
            "read",
            lambda conn: conn.execute(
                "SELECT DISTINCT json_extract(metadata, '$.speaker') FROM turns WHERE user_id = ? AND role = 'user'"
                " AND metadata != '{}'",
                (user_id,),
            ).fetchall(),
        )
        return {str(r[0]) for r in rows if r[0]}

    def users(self) -> list[str]:
        """Every user with stored turns, sorted."""
        rows = self._run(
            "read", lambda conn: conn.execute("SELECT DISTINCT user_id FROM turns ORDER BY user_id").fetchall()
        )
        return [r[0] for r in rows]

    def search(
        self, text: str, *, user_id: str | None = None, session_id: str | None = None, limit: int = 50
    ) -> list[Turn]:
        """Turns containing ``text`` (case-insensitive, any script), newest first.

        Args:
            text: The substring to look for; an empty one matches nothing.
            user_id: Only this user's turns.
            session_id: Only this session's turns.
            limit: At most this many turns.
        """
        needle = _fold(text).strip()
        if not needle or limit <= 0:
            return []
        clauses, args = ["instr(ragmem_fold(content), ?) > 0"], [needle]
        if user_id is not None:
            clauses.append("user_id = ?")
            args.append(user_id)
        if session_id is not None:
            clauses.append("session_id = ?")
            args.append(session_id)
        sql = (
            "SELECT id, user_id, session_id, role, content, created_at FROM turns"
            f" WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT ?"
        )
        rows = self._run("read", lambda conn: conn.execute(sql, (*args, limit)).fetchall())
        return [_turn(r) for r in rows]

    def delete(self, user_id: str, session_id: str | None = None) -> int:
        """Delete a user's turns and summaries (one session's, when given); returns turns deleted."""
        check_id("user_id", user_id)
        if session_id is None:
            where, args = "user_id = ?", (user_id,)
        else:
            where, args = "user_id = ? AND session_id = ?", (user_id, session_id)

        def work(conn: sqlite3.Connection) -> int:
            with self._transaction(conn):
                n = conn.execute(f"DELETE FROM turns WHERE {where}", args).rowcount
                conn.execute(f"DELETE FROM summaries WHERE {where}", args)
            return int(n)

        return self._run("delete from", work)

    def clear(self) -> int:
        """Delete every turn and summary of every user; returns turns deleted."""

        def work(conn: sqlite3.Connection) -> int:
            with self._transaction(conn):
                n = conn.execute("DELETE FROM turns").rowcount
                conn.execute("DELETE FROM summaries")
            return int(n)

        return self._run("clear", work)

    # -- summaries -----------------------------------------------------------------------
    def summary(self, user_id: str, session_id: str) -> tuple[str, int] | None:
        """The session's running summary and the last turn id it covers, if any."""
        row = self._run(
            "read",
            lambda conn: conn.execute(
                "SELECT summary, upto_turn_id FROM summaries WHERE user_id = ? AND session_id = ?",
                (user_id, session_id),
            ).fetchone(),
        )
        return (row[0], int(row[1])) if row else None

    def set_summary(self, user_id: str, session_id: str, summary: str, upto_turn_id: int) -> None:
        """Store (or replace) the session's running summary, covering turns up to ``upto_turn_id``."""
        check_id("user_id", user_id)
        check_id("session_id", session_id)
        now = utc_iso()
        self._run(
            "write to",
            lambda conn: conn.execute(
                "INSERT INTO summaries (user_id, session_id, summary, upto_turn_id, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, session_id) DO UPDATE SET"
                " summary = excluded.summary, upto_turn_id = excluded.upto_turn_id,"
                " updated_at = excluded.updated_at",
                (user_id, session_id, summary, int(upto_turn_id), now),
            ),
        )

    def summaries(self, user_id: str | None = None) -> list[dict[str, Any]]:
        """Every stored session summary (of one user, when given), as plain dicts for export."""
        where, args = ("WHERE user_id = ?", (user_id,)) if user_id is not None else ("", ())
        rows = self._run(
            "read",
            lambda conn: conn.execute(
                "SELECT user_id, session_id, summary, upto_turn_id, updated_at FROM summaries"
                f" {where} ORDER BY user_id, session_id",
                args,
            ).fetchall(),
        )
        keys = ("user_id", "session_id", "summary", "upto_turn_id", "updated_at")
        return [dict(zip(keys, r, strict=True)) for r in rows]


def _fold(text: str | None) -> str:
    return "" if text is None else str(text).casefold()


def _turn(row: tuple[Any, ...]) -> Turn:
    return Turn(role=row[3], content=row[4], user_id=row[1], session_id=row[2], created_at=row[5], id=int(row[0]))
