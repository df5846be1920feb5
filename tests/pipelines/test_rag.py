"""The RAG pipeline with a recording fake generator: what reaches the prompt, and what is stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_memory.generation.extractive import ExtractiveAnswerer
from rag_memory.generation.select import Selection
from rag_memory.pipelines.components import Components
from rag_memory.pipelines.rag import NOTHING_RELEVANT, RagPipeline
from tests.helpers.fakes import RecordingGenerator

DOCS = {
    "sync.md": "# Sync\n\nWhen a file is deleted, re-ingest removes its chunks from the knowledge base.\n\n"
    "Changed files are re-chunked and their changed chunks are embedded again.",
    "boats.txt": "Boats sail down the river to the sea. Ferries cross the bay every hour.",
    "greatwall.txt": "长城是中国古代的军事防御工程。长城全长两万多公里。",
}


@pytest.fixture
def kb(settings, tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    for name, text in DOCS.items():
        (root / name).write_text(text, encoding="utf-8")
    s = settings.replace(embedder="hashing:1024", relevance_gate=0.1, memory_min_score=0.15)
    parts = Components(s)
    parts.ingestor().run([root])
    return parts


def pipeline(parts: Components, generator=None) -> tuple[RagPipeline, RecordingGenerator]:
    gen = generator or RecordingGenerator("Deleted files lose their chunks [1].")
    parts.generation = Selection(gen)
    return RagPipeline(components=parts), gen


def test_fusion_injects_the_relevant_chunk_as_a_numbered_untrusted_source(kb):
    rag, gen = pipeline(kb)
    answer = rag.ask("What happens to deleted files on re-ingest?", session_id="s1", user_id="alice")
    prompt = gen.prompt
    assert '<source n="1" from="' in prompt and "sync.md" in prompt
    assert "re-ingest removes its chunks" in prompt
    assert "Boats sail" not in prompt  # below the gate
    assert prompt.endswith("Question: What happens to deleted files on re-ingest?")
    assert gen.calls[-1][0].role == "system" and "untrusted" in gen.calls[-1][0].content
    assert answer.answer == "Deleted files lose their chunks [1]."
    assert answer.cited == [1]
    assert answer.sources[0].kind == "document" and Path(answer.sources[0].source).name == "sync.md"
    assert answer.generator == {"backend": "fake", "model": "recording-fake"}
    assert answer.tokens["prompt"] <= answer.tokens["context_length"] - answer.tokens["max_new_tokens"]
    assert {"retrieve", "recall", "fuse", "generate", "store"} <= set(answer.timings)


def test_a_follow_up_sees_the_session_history_and_is_condensed_for_retrieval(kb):
    rag, gen = pipeline(kb)
    rag.ask("What happens to deleted files on re-ingest?", session_id="s1", user_id="alice")
    answer = rag.ask("And changed files?", session_id="s1", user_id="alice")
    assert answer.standalone_question == "What happens to changed files on re-ingest?"
    roles = [m.role for m in gen.calls[-1]]
    assert roles == ["system", "user", "assistant", "user"]
    assert gen.calls[-1][1].content == "What happens to deleted files on re-ingest?"
    # another session of the same user does not see these turns as recent history
    rag.ask("And changed files?", session_id="s2", user_id="alice")
    assert [m.role for m in gen.calls[-1]] == ["system", "user"]


def test_long_term_memory_is_recalled_in_a_later_session_and_never_for_another_user(kb):
    rag, gen = pipeline(kb)
    rag.ask("My project is about solar panels on boats.", session_id="a1", user_id="alice")
    answer = rag.ask("What did I say my project was about?", session_id="a2", user_id="alice")
    mems = [s for s in answer.sources if s.kind == "memory"]
    assert mems and any("solar panels" in s.text for s in mems)
    assert "<memory n=" in gen.prompt and "solar panels" in gen.prompt
    calls = len(gen.calls)
    other = rag.ask("What did I say my project was about?", session_id="b1", user_id="bob")
    assert all("solar" not in s.text for s in other.sources)
    assert all("solar" not in m.content for call in gen.calls[calls:] for m in call)
    assert all(m.user_id == "alice" for m in kb.long_term.list("alice"))
    assert not any("solar" in m.text for m in kb.long_term.list("bob"))


def test_nothing_relevant_abstains_without_calling_the_generator(kb):
    rag, gen = pipeline(kb)
    answer = rag.ask("quantum chromodynamics lattice gauge", session_id="x", user_id="carol")
    assert answer.abstained and answer.answer == NOTHING_RELEVANT["en"]
    assert answer.sources == [] and gen.calls == []
    zh = rag.ask("量子色动力学拉格朗日量", session_id="x", user_id="carol")
    assert zh.abstained and zh.answer == NOTHING_RELEVANT["zh"]


def test_a_fact_told_with_nothing_to_retrieve_is_acknowledged_and_remembered(kb):
    rag, gen = pipeline(kb)
    answer = rag.ask("I live in Lisbon.", session_id="f1", user_id="dana")
    assert answer.answer == "Noted. I will remember that you live in Lisbon."
    assert not answer.abstained and gen.calls == []
    assert any("Lisbon" in m.text for m in kb.long_term.list("dana"))


def test_a_statement_is_acknowledged_whatever_the_knowledge_base_holds(kb):
    rag, gen = pipeline(kb)
    # Every content word of this statement is in boats.txt, and still nothing is quoted.
    answer = rag.ask("I prefer ferries and my project is called Boats on the river", session_id="f2", user_id="dana")
    assert answer.answer == (
        "Noted. I will remember that you prefer ferries and your project is called Boats on the river."
    )
    assert gen.calls == [] and "[1]" not in answer.answer
    zh = rag.ask("我喜欢用要点回答，我的项目叫长城", session_id="f3", user_id="dana")
    assert zh.answer == "好的，我记住了：你喜欢用要点回答；你的项目叫长城。"
    texts = [m.text for m in kb.long_term.list("dana")]
    assert "用户的项目叫长城。" in texts and "The user's project is called Boats on the river." in texts
    # A question that also states a fact is still answered.
    asked = rag.ask("My name is Dana. What happens to deleted files on re-ingest?", session_id="f4", user_id="dana")
    assert gen.calls and asked.sources


def test_an_extractive_answer_about_the_user_comes_from_recalled_memory(kb):
    kb.generation = Selection(ExtractiveAnswerer(), ["no model"])
    rag = RagPipeline(components=kb)
    rag.ask("My name is Alice Walker.", session_id="m1", user_id="alice")
    answer = rag.ask("What is my name?", session_id="m2", user_id="alice")
    assert answer.answer.startswith("The user's name is Alice Walker.")
    rag.ask("我叫小明。", session_id="m3", user_id="ming")
    zh = rag.ask("我叫什么名字？", session_id="m4", user_id="ming")
    assert zh.answer.startswith("用户叫小明。")


def test_identical_chunks_reach_the_prompt_once(kb, tmp_path):
    root = tmp_path / "copies"
    root.mkdir()
    text = "The lighthouse keeper lights the lamp at dusk every evening."
    for i in range(3):
        (root / f"copy{i}.txt").write_text(text, encoding="utf-8")
    kb.ingestor().run([root])
    rag, gen = pipeline(kb)
    answer = rag.ask("When does the lighthouse keeper light the lamp?", session_id="d", user_id="eve")
    assert gen.prompt.count("lights the lamp at dusk") == 1
    assert [s.text for s in answer.sources].count(text) == 1


def test_chinese_question_retrieves_chinese_knowledge(kb):
    rag, gen = pipeline(kb, RecordingGenerator("长城全长两万多公里 [1]。"))
    answer = rag.ask("长城有多长？", session_id="z", user_id="li")
    assert "长城全长两万多公里" in gen.prompt
    assert answer.cited == [1]


def test_extractive_answer_cites_the_retrieved_sentence(kb):
    kb.generation = Selection(ExtractiveAnswerer(), ["no model"])
    rag = RagPipeline(components=kb)
    answer = rag.ask("What happens to deleted files on re-ingest?", session_id="e", user_id="erin")
    assert "re-ingest removes its chunks from the knowledge base. [1]" in answer.answer
    assert answer.generator["backend"] == "extractive" and answer.notes == ["no model"]


def test_turns_that_fall_out_of_the_window_are_summarised(kb):
    rag, gen = pipeline(kb, RecordingGenerator("Ok [1].", context_length=900))
    for i in range(8):
        rag.ask(f"Question {i}: what happens to deleted files on re-ingest? {'deleted files chunks ' * 8}", session_id="long",
                user_id="sam")
    summary = kb.history.summary("sam", "long")
    assert summary is not None and summary[0]
    answer_calls = [c for c in gen.calls if c[0].role == "system"]
    summary_calls = [c for c in gen.calls if c[0].role == "user"]
    assert summary_calls and "summary" in summary_calls[-1][0].content.lower()
    assert "summary of the earlier conversation" not in answer_calls[-1][0].content.lower()
    assert "<summary>" in answer_calls[-1][-1].content  # a data block in the user's message


class WordySummariser(RecordingGenerator):
    """Answers in two pieces, but writes 40-word summaries (the summariser's call comes after)."""

    def stream(self, messages, config=None):
        if messages[0].role == "user" and "summary" in messages[0].content.lower():
            self.answer = " ".join(["word"] * 40)
        else:
            self.answer = "Ok [1]."
        yield from super().stream(messages, config)


def test_completion_tokens_count_the_answer_not_the_summary_written_after_it(kb):
    gen = WordySummariser(context_length=900)
    rag, _ = pipeline(kb, gen)
    summarised_after = []
    for i in range(8):
        before = len(gen.calls)
        answer = rag.ask(f"Question {i}: what happens to deleted files? {'deleted files chunks ' * 8}",
                         session_id="long", user_id="sam")
        summarised_after.append(any(c[0].role == "user" for c in gen.calls[before:]))
        assert answer.tokens["completion"] == 2, (i, answer.tokens)
    assert any(summarised_after)  # the summariser really ran after some answers


def test_stream_yields_pieces_then_the_answer(kb):
    rag, gen = pipeline(kb, RecordingGenerator("One two three [1]."))
    stream = rag.stream("What happens to deleted files?", session_id="st", user_id="u")
    pieces = list(stream)
    assert pieces == ["One", " two", " three", " [1]."]
    assert stream.answer.answer == "One two three [1]."
    turns = kb.history.turns("u", "st")
    assert [t.role for t in turns] == ["user", "assistant"] and turns[1].content == "One two three [1]."


def test_explain_lists_candidates_gate_and_budgets(kb):
    rag, _ = pipeline(kb)
    answer = rag.ask("What happens to deleted files?", session_id="ex", user_id="u", explain=True)
    info = answer.explain
    assert info["gate"]["knowledge"] == 0.1
    assert any(c["passed_gate"] and c["injected"] for c in info["chunks"])
    assert any(not c["passed_gate"] for c in info["chunks"])
    assert set(info["budget"]["sections"]) == {"knowledge", "memory", "history"}
