"""`ragmem memory list / search / forget / export / clear` through typer's CliRunner."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import typer
from typer.testing import CliRunner

from rag_memory.cli.memory import memory_app
from rag_memory.config import Settings
from rag_memory.knowledge_base.embedders import make_embedder
from rag_memory.knowledge_base.store import ChromaStore
from rag_memory.memory.history import ChatHistory
from rag_memory.memory.long_term import LongTermMemory

runner = CliRunner()
cli = typer.Typer()
cli.add_typer(memory_app, name="memory")
WHEN = datetime(2024, 6, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fast_embedder(monkeypatch):
    monkeypatch.setenv("RAGMEM_EMBEDDER", "hashing:64")


def run(*args: str, input: str | None = None):
    return runner.invoke(cli, ["memory", *args], input=input, env={"COLUMNS": "200"})


def run_json(*args: str) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def long_term(settings: Settings) -> LongTermMemory:
    store = ChromaStore(settings.memory_collection, path=settings.chroma_path)
    return LongTermMemory(store, make_embedder(settings.embedder))


@pytest.fixture
def stored(ragmem_home) -> Settings:
    settings = Settings.load({})
    history = ChatHistory(settings.history_path)
    for user, session, question, answer in [
        ("alice", "a1", "My project is about solar panels.", "Noted."),
        ("alice", "a2", "How does ragmem chunk PDF files?", "By tokens."),
        ("bob", "b1", "我的项目是关于风力发电的。", "好的。"),
    ]:
        history.add(user, session, "user", question, created_at=WHEN)
        history.add(user, session, "assistant", answer, created_at=WHEN)
        long_term(settings).remember_exchange(user, session, question, answer, created_at=WHEN)
    history.set_summary("alice", "a1", "The user works on solar panels.", 2)
    history.close()
    return settings


def test_list_sessions_reads_only_the_history(ragmem_home):
    settings = Settings.load({})
    ChatHistory(settings.history_path).add("alice", "a1", "user", "hello")
    data = run_json("list")
    assert [(s["user_id"], s["session_id"], s["turns"]) for s in data["sessions"]] == [("alice", "a1", 1)]
    assert "memories" not in data
    assert not settings.chroma_path.exists()  # Chroma was never opened


def test_list_sessions_turns_and_memories(stored):
    data = run_json("list", "--user", "alice")
    assert sorted(s["session_id"] for s in data["sessions"]) == ["a1", "a2"]
    turns = run_json("list", "--user", "alice", "--session", "a1")["turns"]
    assert [(t["role"], t["content"]) for t in turns] == [("user", "My project is about solar panels."), ("assistant", "Noted.")]
    with_memories = run_json("list", "--user", "alice", "--session", "a1", "--memories")
    assert {m["kind"] for m in with_memories["memories"]} == {"exchange", "fact"}
    assert {m["user_id"] for m in with_memories["memories"]} == {"alice"}
    table = run("list", "--user", "bob", "--session", "b1")
    assert table.exit_code == 0 and "风力发电" in table.stdout


def test_list_with_nothing_stored_says_so(ragmem_home):
    result = run("list")
    assert result.exit_code == 0 and "No conversations stored" in result.stderr


def test_search_finds_history_turns_and_the_users_memories_only(stored):
    data = run_json("search", "solar panels", "--user", "alice")
    assert [t["content"] for t in data["turns"]] == ["My project is about solar panels."]
    assert data["memories"] and {m["user_id"] for m in data["memories"]} == {"alice"}
    assert "solar panels" in data["memories"][0]["text"]
    assert {"score", "similarity"} <= set(data["memories"][0])
    bob = run_json("search", "风力发电", "--user", "bob")
    assert [t["content"] for t in bob["turns"]] == ["我的项目是关于风力发电的。"]
    assert all(m["user_id"] == "bob" for m in bob["memories"])
    table = run("search", "solar", "--user", "alice")
    assert table.exit_code == 0 and "solar panels" in table.stdout


def test_forget_requires_a_user_and_deletes_history_and_memories(stored):
    missing = run("forget")
    assert missing.exit_code == 2 and "--user" in missing.output
    data = run_json("forget", "--user", "alice", "--session", "a1")
    assert data == {"user": "alice", "session": "a1", "turns_deleted": 2, "memories_deleted": 2}
    assert [s["session_id"] for s in run_json("list", "--user", "alice")["sessions"]] == ["a2"]
    data = run_json("forget", "--user", "alice")
    assert (data["turns_deleted"], data["memories_deleted"]) == (2, 1)
    left = run_json("list", "--memories")
    assert {s["user_id"] for s in left["sessions"]} == {"bob"}
    assert {m["user_id"] for m in left["memories"]} == {"bob"}


def test_export_prints_turns_summaries_and_memories(stored, tmp_path):
    result = run("export", "--user", "alice")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [t["content"] for t in data["turns"]] == [
        "My project is about solar panels.", "Noted.", "How does ragmem chunk PDF files?", "By tokens.",
    ]
    assert data["summaries"][0]["summary"] == "The user works on solar panels."
    assert {m["user_id"] for m in data["memories"]} == {"alice"} and len(data["memories"]) == 3
    out = tmp_path / "export" / "bob.json"
    written = run("export", "--user", "bob", "--output", str(out))
    assert written.exit_code == 0 and written.stdout == ""
    bob = json.loads(out.read_text(encoding="utf-8"))
    assert bob["turns"][0]["content"] == "我的项目是关于风力发电的。"
    assert "用户的项目是关于风力发电的。" in [m["text"] for m in bob["memories"]]


def test_clear_asks_first_and_keeps_everything_when_declined(stored):
    declined = run("clear", input="n\n")
    assert declined.exit_code == 1
    assert len(run_json("list")["sessions"]) == 3
    accepted = run("clear", input="y\n")
    assert accepted.exit_code == 0 and "Deleted 6 turns and 5 long-term memories" in accepted.stdout
    assert run_json("list", "--memories") == {"user": None, "session": None, "sessions": [], "memories": []}


def test_clear_yes_json_and_scoped_clear(stored):
    scoped = run_json("clear", "--yes", "--user", "bob")
    assert (scoped["turns_deleted"], scoped["memories_deleted"]) == (2, 2)
    everything = run_json("clear", "--yes")
    assert (everything["turns_deleted"], everything["memories_deleted"]) == (4, 3)


def test_clear_session_without_user_is_a_user_error(stored):
    result = run("clear", "--yes", "--session", "a1")
    assert result.exit_code == 1 and "Error:" in result.stderr and "--user" in result.stderr


def test_a_damaged_history_file_is_reported_not_raised(ragmem_home):
    settings = Settings.load({})
    settings.history_path.parent.mkdir(parents=True, exist_ok=True)
    settings.history_path.write_bytes(b"garbage" * 200)
    result = run("list")
    assert result.exit_code == 1
    assert "Error:" in result.stderr and "memory.sqlite3" in result.stderr


@pytest.mark.parametrize("query", ["", "   "])
def test_search_with_an_empty_query_is_an_error(query):
    result = run("search", query)
    assert result.exit_code != 0
    assert "the query is empty" in result.output


def test_entities_lists_the_users_graph_as_json_and_table(ragmem_home):
    from rag_memory.pipelines.components import Components

    memory = Components(Settings.load({})).memory
    memory.remember_turn("alice", "a1", "Caroline and I visited Porto in June 2023.", created_at=WHEN)
    memory.remember_turn("alice", "a2", "我和张伟去了成都。", created_at=WHEN)
    memory.close()
    data = run_json("entities", "--user", "alice")
    names = {e["name"]: e for e in data["entities"]}
    assert {"Caroline", "Porto", "2023-06", "张伟", "成都"} <= set(names)
    assert names["Porto"]["kind"] == "place" and names["Porto"]["sessions"] == ["a1"]
    assert ["Caroline", 1] in names["Porto"]["related"]
    table = run("entities", "--user", "alice")
    assert table.exit_code == 0 and "Porto" in table.stdout and "成都" in table.stdout
    assert "No entities" in run("entities", "--user", "nobody").stderr
    forgot = run_json("forget", "--user", "alice")
    assert forgot["memories_deleted"] >= 2 and run_json("entities", "--user", "alice")["entities"] == []
