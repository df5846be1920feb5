"""The SQLite chat history: persistence, WAL, ordering, search, deletion, summaries."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from rag_memory.errors import ConfigError, MemoryStoreError
from rag_memory.memory.history import ChatHistory, SessionInfo

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def history(settings) -> ChatHistory:
    h = ChatHistory(settings.history_path)
    yield h
    h.close()


def test_init_touches_nothing_until_first_use(tmp_path):
    path = tmp_path / "deep" / "memory.sqlite3"
    h = ChatHistory(path)
    assert not path.parent.exists()
    h.add("alice", "s1", "user", "hello")
    assert path.is_file()


def test_turns_persist_across_instances_in_order(settings):
    first = ChatHistory(settings.history_path)
    first.add("alice", "s1", "user", "What is ragmem?")
    first.add("alice", "s1", "assistant", "A local RAG framework.")
    first.close()
    again = ChatHistory(settings.history_path)
    turns = again.turns("alice", "s1")
    assert [(t.role, t.content) for t in turns] == [
        ("user", "What is ragmem?"),
        ("assistant", "A local RAG framework."),
    ]
    assert turns[0].id < turns[1].id
    assert all(t.user_id == "alice" and t.session_id == "s1" for t in turns)


def test_turns_written_by_another_process_are_read_here(settings):
    code = textwrap.dedent(
        f"""
        from rag_memory.memory.history import ChatHistory
        h = ChatHistory({str(settings.history_path)!r})
        h.add("alice", "s1", "user", "written by a child process")
        h.add("alice", "s1", "assistant", "子进程写的回答")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    turns = ChatHistory(settings.history_path).turns("alice", "s1")
    assert [t.content for t in turns] == ["written by a child process", "子进程写的回答"]


def test_database_is_in_wal_mode(history, settings):
    history.add("alice", "s1", "user", "hi")
    assert history.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other = sqlite3.connect(settings.history_path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()


def test_chinese_content_round_trips_and_is_searchable(history):
    text = "我的项目是关于太阳能电池板的，请用中文回答。"
    history.add("小明", "会话一", "user", text)
    [turn] = history.turns("小明", "会话一")
    assert turn.content == text and turn.user_id == "小明" and turn.session_id == "会话一"
    assert [t.content for t in history.search("太阳能")] == [text]
    assert history.users() == ["小明"]


def test_created_at_is_iso_utc_with_offset(history):
    turn = history.add("alice", "s1", "user", "now")
    parsed = datetime.fromisoformat(turn.created_at)
    assert parsed.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 60
    east = datetime(2024, 5, 1, 10, 0, tzinfo=timezone(timedelta(hours=8)))
    explicit = history.add("alice", "s1", "user", "then", created_at=east)
    assert explicit.created_at == "2024-05-01T02:00:00+00:00"
    naive = history.add("alice", "s1", "user", "naive", created_at=datetime(2024, 5, 1, 2, 0))
    assert naive.created_at == "2024-05-01T02:00:00+00:00"


def test_limit_returns_the_last_turns_in_chronological_order(history):
    for i in range(6):
        history.add("alice", "s1", "user" if i % 2 == 0 else "assistant", f"turn {i}")
    assert [t.content for t in history.turns("alice", "s1", limit=3)] == ["turn 3", "turn 4", "turn 5"]
    assert history.turns("alice", "s1", limit=0) == []
    assert len(history.turns("alice", "s1", limit=100)) == 6


def test_sessions_and_users_are_listed_per_user(history):
    history.add("alice", "s1", "user", "a1", created_at="2024-01-01T00:00:00+00:00")
    history.add("alice", "s1", "assistant", "a2", created_at="2024-01-01T00:01:00+00:00")
    history.add("bob", "b1", "user", "b", created_at="2024-01-02T00:00:00+00:00")
    history.add("alice", "s2", "user", "a3", created_at="2024-01-03T00:00:00+00:00")
    assert history.users() == ["alice", "bob"]
    assert history.sessions("alice") == [
        SessionInfo("alice", "s2", 1, "2024-01-03T00:00:00+00:00", "2024-01-03T00:00:00+00:00"),
        SessionInfo("alice", "s1", 2, "2024-01-01T00:00:00+00:00", "2024-01-01T00:01:00+00:00"),
    ]
    assert [(s.user_id, s.session_id) for s in history.sessions()] == [("alice", "s2"), ("bob", "b1"), ("alice", "s1")]


def test_search_is_case_insensitive_and_filtered(history):
    history.add("alice", "s1", "user", "How does CHUNKING work?")
    history.add("alice", "s2", "user", "chunking of PDFs")
    history.add("bob", "b1", "user", "Chunking again")
    history.add("alice", "s1", "user", "Ünïcödé Straße")
    assert len(history.search("chunking")) == 3
    assert [t.content for t in history.search("Chunking", user_id="alice")] == ["chunking of PDFs", "How does CHUNKING work?"]
    assert [t.content for t in history.search("chunking", user_id="alice", session_id="s1")] == ["How does CHUNKING work?"]
    assert [t.content for t in history.search("STRASSE")] == ["Ünïcödé Straße"]
    assert history.search("100%_") == [] and history.search("  ") == []
    assert len(history.search("chunking", limit=1)) == 1


def test_delete_one_session_or_a_whole_user(history):
    history.add("alice", "s1", "user", "a")
    history.add("alice", "s1", "assistant", "b")
    history.add("alice", "s2", "user", "c")
    history.add("bob", "b1", "user", "d")
    history.set_summary("alice", "s1", "summary", 2)
    assert history.delete("alice", "s1") == 2
    assert history.summary("alice", "s1") is None
    assert [s.session_id for s in history.sessions("alice")] == ["s2"]
    assert history.delete("alice") == 1
    assert history.users() == ["bob"]
    assert history.clear() == 1
    assert history.users() == []


def test_summary_is_stored_and_replaced(history):
    assert history.summary("alice", "s1") is None
    history.set_summary("alice", "s1", "The user asked about chunking.", 4)
    assert history.summary("alice", "s1") == ("The user asked about chunking.", 4)
    history.set_summary("alice", "s1", "用户问了分块。", 9)
    assert history.summary("alice", "s1") == ("用户问了分块。", 9)
    assert history.summaries("alice")[0]["summary"] == "用户问了分块。"


def test_metadata_is_kept_as_json(history):
    turn = history.add("alice", "s1", "assistant", "answer", metadata={"sources": ["a.md"], "模型": "qwen"})
    assert history.turn_metadata(turn.id) == {"sources": ["a.md"], "模型": "qwen"}
    with pytest.raises(ConfigError, match="JSON"):
        history.add("alice", "s1", "user", "x", metadata={"bad": object()})


@pytest.mark.parametrize(
    ("user", "session", "role", "needle"),
    [
        ("alice", "s1", "robot", "'robot'"),
        ("", "s1", "user", "user_id"),
        ("alice", "  ", "user", "session_id"),
    ],
)
def test_bad_role_or_empty_ids_are_refused_by_name(history, user, session, role, needle):
    with pytest.raises(ConfigError, match=needle):
        history.add(user, session, role, "text")


def test_bad_timestamp_is_refused_by_value(history):
    with pytest.raises(ConfigError, match="yesterday"):
        history.add("alice", "s1", "user", "x", created_at="yesterday")


def test_a_file_that_is_not_a_database_is_a_memory_store_error(tmp_path):
    path = tmp_path / "memory.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(MemoryStoreError) as info:
        ChatHistory(path).turns("alice", "s1")
    assert str(path) in str(info.value) and "move it aside" in str(info.value)


def test_threads_share_one_connection(history):
    def write(n: int) -> None:
        for i in range(20):
            history.add("alice", f"t{n}", "user", f"{n}-{i}")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(s.turns for s in history.sessions("alice")) == 80
    assert [t.content for t in history.turns("alice", "t2")] == [f"2-{i}" for i in range(20)]
