"""Isolation: one user's memories and history never reach another user's prompt, memory list,
memory search, export or knowledge search, in English and Chinese, even when the two users share
a session id or have look-alike names."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rag_memory.cli import app
from rag_memory.generation.select import Selection
from rag_memory.pipelines.components import Components
from rag_memory.pipelines.rag import RagPipeline
from tests.helpers.fakes import RecordingGenerator

ALICE_SAYS = [
    "My locker code is 4417 and my project is about solar panels on boats.",
    "我的体检报告显示血压偏高，医生叫我少吃盐。",
]
ALICE_MARKS = ["4417", "solar panels", "血压偏高", "少吃盐"]
# Users whose names an SQL or a filter built by pasting text would confuse with alice.
OTHERS = ["bob", "Alice", "alice ", "alice'", 'alice" OR "1"="1', "alice') OR 1=1 --", "爱丽丝"]


@pytest.fixture
def kb(settings, tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    (root / "boats.txt").write_text("Boats sail down the river to the sea. 船沿河而下驶向大海。", encoding="utf-8")
    s = settings.replace(embedder="hashing:1024", relevance_gate=0.1, memory_min_score=-1.0)
    parts = Components(s)
    parts.ingestor().run([root])
    gen = RecordingGenerator("Noted.")
    parts.generation = Selection(gen)
    rag = RagPipeline(components=parts)
    for i, text in enumerate(ALICE_SAYS):
        rag.ask(text, session_id="shared", user_id="alice")
        rag.ask(text, session_id=f"a{i}", user_id="alice")
    # alice's memories are really there and recalled for her
    again = rag.ask("What is my locker code and what did the doctor say about 血压?", session_id="a9", user_id="alice")
    assert any("4417" in s.text for s in again.sources if s.kind == "memory")
    return parts, rag, gen


@pytest.mark.parametrize("other", OTHERS)
def test_another_users_prompt_never_holds_alices_memories_or_turns(kb, other):
    _, rag, gen = kb
    before = len(gen.calls)
    # the same session id as alice, and questions aimed squarely at her memories
    for question in ("What is my locker code? What is my project about?", "我的血压怎么样？医生怎么说？"):
        answer = rag.ask(question, session_id="shared", user_id=other)
        assert all(s.kind != "memory" or not any(m in s.text for m in ALICE_MARKS) for s in answer.sources)
    for call in gen.calls[before:]:
        prompt = "\n".join(m.content for m in call)
        assert not any(mark in prompt for mark in ALICE_MARKS), (other, prompt)


def test_memory_list_search_and_export_show_only_the_named_user(kb):
    parts, rag, _ = kb
    rag.ask("I keep bees in the garden.", session_id="b1", user_id="bob")
    runner = CliRunner()
    env = {"RAGMEM_EMBEDDER": "hashing:1024"}
    listed = runner.invoke(app, ["memory", "list", "--user", "bob", "--memories", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "bees" in listed.stdout and not any(m in listed.stdout for m in ALICE_MARKS)
    shared = runner.invoke(app, ["memory", "list", "--user", "bob", "--session", "shared", "--memories", "--json"], env=env)
    assert shared.exit_code == 0, shared.output
    assert not any(m in shared.stdout for m in ALICE_MARKS)
    for query in ("locker code 4417 solar panels", "血压 医生 少吃盐"):
        found = runner.invoke(app, ["memory", "search", query, "--user", "bob", "--json"], env=env)
        assert found.exit_code == 0, found.output
        data = json.loads(found.stdout)
        shown = json.dumps([data["turns"], data["memories"]], ensure_ascii=False)  # not the echoed query
        assert data["memories"] and not any(m in shown for m in ALICE_MARKS), shown
    exported = runner.invoke(app, ["memory", "export", "--user", "bob"], env=env)
    assert exported.exit_code == 0, exported.output
    assert "bees" in exported.stdout and not any(m in exported.stdout for m in ALICE_MARKS)
    # history: bob's view of the shared session id holds none of alice's turns
    assert not any(any(m in t.content for m in ALICE_MARKS) for t in parts.memory.history("bob", "shared"))
    assert any("4417" in t.content for t in parts.memory.history("alice", "shared"))


def test_knowledge_search_never_returns_memories(kb):
    runner = CliRunner()
    result = runner.invoke(app, ["search", "locker code 4417 血压偏高", "--json"], env={"RAGMEM_EMBEDDER": "hashing:1024"})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    data.pop("query", None)
    text = json.dumps(data, ensure_ascii=False)
    assert not any(m in text for m in ALICE_MARKS)
