"""``as_runnable().batch()``: several questions through one batched ``generate`` where the
generator has one (the tiny random-weight model stands in for a real one), else one by one."""

from __future__ import annotations

import pytest

from rag_memory.generation import TransformersGenerator
from rag_memory.generation.select import Selection
from rag_memory.pipelines.components import Components
from rag_memory.pipelines.rag import RagPipeline
from tests.helpers.fakes import RecordingGenerator

DOCS = {
    "sync.md": "# Sync\n\nWhen a file is deleted, re-ingest removes its chunks from the knowledge base.",
    "boats.txt": "Boats sail down the river to the sea. Ferries cross the bay every hour.",
    "greatwall.txt": "长城是中国古代的军事防御工程。长城全长两万多公里。",
}
QUESTIONS = ["What happens to deleted files on re-ingest?", "长城有多长？", "How often do ferries cross the bay?"]


@pytest.fixture
def parts(settings, tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    for name, text in DOCS.items():
        (root / name).write_text(text, encoding="utf-8")
    # No recall across sessions: each answer then depends on its own question only, so batched
    # and one-at-a-time answers are comparable.
    s = settings.replace(embedder="hashing:1024", relevance_gate=0.05, memory_top_k=0, temperature=0.0,
                         max_new_tokens=8)
    parts = Components(s)
    parts.ingestor().run([root])
    return parts


class CountingTransformers(TransformersGenerator):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []
        self.streams = 0

    def generate_batch(self, conversations, config=None):
        self.batches.append(len(conversations))
        return super().generate_batch(conversations, config)

    def stream(self, messages, config=None):
        self.streams += 1
        return super().stream(messages, config)


def test_batch_sends_every_question_through_one_generate_batch_with_the_answers_of_single_calls(
    parts, tiny_chat_model
):
    gen = CountingTransformers(str(tiny_chat_model), device="cpu", dtype="float32")
    parts.generation = Selection(gen)
    runnable = RagPipeline(components=parts).as_runnable(return_sources=True)
    together = runnable.batch(QUESTIONS)
    assert gen.batches == [3] and gen.streams == 0
    alone = [runnable.invoke(q) for q in QUESTIONS]
    assert gen.streams == 3
    assert [r["answer"] for r in together] == [r["answer"] for r in alone]
    assert [[d.metadata["source"] for d in r["sources"]] for r in together] == [
        [d.metadata["source"] for d in r["sources"]] for r in alone
    ]
    assert any(d.metadata["source"].endswith("greatwall.txt") for d in together[1]["sources"])


def test_each_batched_question_is_stored_in_its_own_session(parts, tiny_chat_model):
    gen = CountingTransformers(str(tiny_chat_model), device="cpu", dtype="float32")
    parts.generation = Selection(gen)
    answers = RagPipeline(components=parts).ask_batch(
        [{"question": q, "session_id": f"s{i}", "user_id": "alice"} for i, q in enumerate(QUESTIONS)]
    )
    assert gen.batches == [3]
    for i, (question, answer) in enumerate(zip(QUESTIONS, answers, strict=True)):
        turns = parts.memory.history("alice", f"s{i}", limit=10)
        assert [t.content for t in turns] == [question, answer.answer]
        assert answer.session_id == f"s{i}" and answer.tokens["completion"] is not None


def test_a_generator_without_a_batch_answers_question_by_question(parts):
    gen = RecordingGenerator("Deleted files lose their chunks [1].")
    parts.generation = Selection(gen)
    answers = RagPipeline(components=parts).as_runnable().batch(QUESTIONS[:2])
    assert answers == ["Deleted files lose their chunks [1]."] * 2
    assert len(gen.calls) == 2


def test_questions_that_share_a_session_are_answered_in_turn(parts, tiny_chat_model):
    # A follow-up needs the previous answer stored first, so these are not batched.
    gen = CountingTransformers(str(tiny_chat_model), device="cpu", dtype="float32")
    parts.generation = Selection(gen)
    RagPipeline(components=parts).as_runnable().batch(
        [{"question": QUESTIONS[0], "session_id": "same"}, {"question": "And changed files?", "session_id": "same"}]
    )
    assert gen.batches == [] and gen.streams >= 2
    assert len(parts.memory.history(parts.settings.user, "same", limit=10)) == 4
