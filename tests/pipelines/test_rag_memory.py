"""What the pipeline remembers and recalls: every turn, no [n] markers, never its own session."""

from __future__ import annotations

import pytest

from rag_memory.generation.select import Selection
from rag_memory.pipelines.components import Components
from rag_memory.pipelines.rag import RagPipeline
from tests.helpers.fakes import RecordingGenerator


@pytest.fixture
def parts(settings, tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    (root / "sync.md").write_text("When a file is deleted, re-ingest removes its chunks.", encoding="utf-8")
    p = Components(settings.replace(embedder="hashing:1024", relevance_gate=0.1, memory_min_score=0.15))
    p.ingestor().run([root])
    return p


def test_the_answer_is_stored_without_citation_markers_and_the_session_is_not_recalled_into_itself(parts):
    gen = RecordingGenerator("Re-ingest removes the chunks of deleted files [1].")
    parts.generation = Selection(gen)
    rag = RagPipeline(components=parts)
    rag.ask("What happens to deleted files on re-ingest?", session_id="s1", user_id="alice")
    [unit] = [m for m in parts.memory.list("alice") if m.kind == "turn"]
    assert unit.text.endswith("Assistant: Re-ingest removes the chunks of deleted files.")
    answer = rag.ask("And deleted files again?", session_id="s1", user_id="alice")
    assert not [s for s in answer.sources if s.kind == "memory"]  # its own turns are in the window
    later = rag.ask("What did I ask about deleted files?", session_id="s2", user_id="alice")
    assert [s.source for s in later.sources if s.kind == "memory"][:1] == ["memory:s1"]


def test_a_statement_that_is_not_a_first_person_fact_is_still_remembered(parts):
    parts.generation = Selection(RecordingGenerator("Noted [1]."))
    rag = RagPipeline(components=parts)
    rag.ask("我们组的周会改到周四下午了", session_id="z1", user_id="li")
    assert any("周会改到周四下午" in m.text for m in parts.memory.list("li"))


def test_the_prompt_marks_an_updated_memory_as_earlier_and_says_what_it_knows_about_a_name(parts):
    gen = RecordingGenerator("Porto [1].")
    parts.generation = Selection(gen)
    rag = RagPipeline(components=parts)
    parts.memory.remember_turn("alice", "s1", "I live in Leeds with Caroline.", created_at="2024-01-05T10:00:00")
    parts.memory.remember_turn("alice", "s2", "I moved from Leeds to Porto with Caroline.", created_at="2024-03-05T10:00:00")
    rag.ask("Where do Caroline and I live now?", session_id="s3", user_id="alice")
    prompt = gen.prompt
    assert prompt.index("moved from Leeds to Porto") < prompt.index("I live in Leeds")
    assert 'status="earlier, since updated"' in prompt
    assert "<entities>" in prompt and "Caroline (" in prompt
