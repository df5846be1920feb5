"""The shared SQLite helper: migrations once, in order; threads share one connection safely."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from rag_memory.errors import StoreError
from rag_memory.sqlite import Database

NOTES = ("0001-notes", "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);")


def test_migrations_apply_once_and_in_order(tmp_path):
    path = tmp_path / "n.sqlite3"
    db = Database(path, "the notes", migrations=[NOTES])
    with db.transaction() as conn:
        conn.execute("INSERT INTO notes (text) VALUES (?)", ("一条笔记",))
    db.close()
    added = ("0002-tags", "ALTER TABLE notes ADD COLUMN tag TEXT NOT NULL DEFAULT '';")
    again = Database(path, "the notes", migrations=[NOTES, added])
    assert again.read("SELECT text, tag FROM notes") == [("一条笔记", "")]
    again.close()
    # a third open must not re-run ALTER TABLE (it would fail on the existing column)
    third = Database(path, "the notes", migrations=[NOTES, added])
    assert [r[0] for r in third.read("SELECT name FROM ragmem_migrations ORDER BY name")] == [
        "0001-notes", "0002-tags"]


def test_a_failed_migration_changes_nothing_and_names_the_file(tmp_path):
    path = tmp_path / "n.sqlite3"
    bad = ("0002-bad", "CREATE TABLE other (x);\nTHIS IS NOT SQL;")
    db = Database(path, "the notes", migrations=[NOTES, bad])
    with pytest.raises(StoreError, match="the notes"):
        _ = db.conn
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT name FROM sqlite_master WHERE name = 'other'").fetchone() is None
    assert [r[0] for r in raw.execute("SELECT name FROM ragmem_migrations")] == ["0001-notes"]


def test_threads_share_the_connection(tmp_path):
    db = Database(tmp_path / "n.sqlite3", "the notes", migrations=[NOTES])
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(25):
                with db.transaction() as conn:
                    conn.execute("INSERT INTO notes (text) VALUES (?)", (f"{n}-{i}",))
                db.read("SELECT count(*) FROM notes")
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert db.read("SELECT count(*) FROM notes") == [(100,)]


def test_an_exception_rolls_the_transaction_back(tmp_path):
    db = Database(tmp_path / "n.sqlite3", "the notes", migrations=[NOTES])
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute("INSERT INTO notes (text) VALUES ('lost')")
        raise RuntimeError("boom")
    assert db.read("SELECT count(*) FROM notes") == [(0,)]


def test_reading_a_missing_file_creates_nothing(tmp_path):
    path = tmp_path / "absent.sqlite3"
    assert Database(path, "the notes", migrations=[NOTES]).read("SELECT 1") == []
    assert not path.exists()
