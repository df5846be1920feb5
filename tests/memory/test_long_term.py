"""Long-term memory: per-user recall, recency blending, gating, exclusion, forgetting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rag_memory.errors import ConfigError, MemoryStoreError
from rag_memory.knowledge_base.embedders import HashingEmbedder, make_embedder
from rag_memory.knowledge_base.store import ChromaStore
from rag_memory.memory.long_term import MAX_ANSWER_CHARS, LongTermMemory, memory_id, recency

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


def make_memory(settings, embedder=None, **kwargs) -> LongTermMemory:
    store = ChromaStore(settings.memory_collection, path=settings.chroma_path)
    return LongTermMemory(store, embedder or make_embedder(settings.embedder), **kwargs)


@pytest.fixture
def memory(settings) -> LongTermMemory:
    return make_memory(settings)


def test_nothing_remembered_yet_means_empty_results_not_errors(memory):
    assert memory.recall("alice", "anything") == []
    assert memory.list() == [] and memory.list("alice") == []
    assert memory.forget("alice") == 0
    assert memory.export("alice") == []
    assert not memory.store.exists()


def test_remember_stores_metadata_and_a_content_derived_id(memory):
    m = memory.remember("alice", "s1", "The user's project is about solar panels.", kind="fact", created_at=days_ago(1))
    assert m.id == memory_id("alice", "s1", "fact", m.text, m.created_at)
    assert m.created_at == "2024-05-31T12:00:00+00:00"
    again = memory.remember("alice", "s1", m.text, kind="fact", created_at=days_ago(1))
    assert again.id == m.id and memory.store.count() == 1
    [hit] = memory.store.get_records(ids=[m.id])
    assert hit.metadata == {
        "user_id": "alice", "session_id": "s1", "kind": "fact",
        "created_at": "2024-05-31T12:00:00+00:00", "created_ts": days_ago(1).timestamp(), "source": "user:alice",
    }


def test_remember_exchange_stores_the_exchange_and_the_users_facts(memory):
    stored = memory.remember_exchange(
        "alice", "s1", "My project is about solar panels. How should I chunk its PDFs?", "x" * 5000, created_at=NOW
    )
    assert [m.kind for m in stored] == ["exchange", "fact"]
    exchange, fact = stored
    assert exchange.text.startswith("User: My project is about solar panels.")
    assert "\nAssistant: x" in exchange.text and len(exchange.text) < MAX_ANSWER_CHARS + 100
    assert fact.text == "The user's project is about solar panels."
    assert {m.id for m in memory.list("alice")} == {exchange.id, fact.id}


def test_recall_never_crosses_users_even_for_an_identical_query(memory):
    memory.remember_exchange("alice", "a1", "My project is about solar panels.", "Noted.", created_at=NOW)
    query = "What is my project about? solar panels"
    assert memory.recall("bob", query) == []
    memory.remember_exchange("bob", "b1", "My project is about wind turbines.", "Noted.", created_at=NOW)
    memory.remember_exchange("bob", "b2", "My project is about solar panels.", "Noted.", created_at=NOW)
    for user in ("alice", "bob"):
        recalled = memory.recall(user, query, k=10, now=NOW)
        assert recalled and {m.user_id for m in recalled} == {user}
    alice_ids = {m.id for m in memory.list("alice")}
    assert not alice_ids & {m.id for m in memory.recall("bob", query, k=10, now=NOW)}


def test_recency_orders_two_equally_similar_memories_by_date(settings):
    memory = make_memory(settings, HashingEmbedder(4096), recency_weight=0.2, half_life_days=30)
    old = memory.remember("alice", "s1", "deadline friday", kind="fact", created_at=days_ago(90))
    new = memory.remember("alice", "s2", "deadline monday", kind="fact", created_at=days_ago(2))
    first, second = memory.recall("alice", "deadline", k=2, now=NOW)
    assert first.similarity == pytest.approx(second.similarity, abs=1e-6)  # the premise: equally similar
    assert (first.id, second.id) == (new.id, old.id)
    assert first.score > second.score
    # score = (1 - w) * similarity + w * 0.5 ** (age / half-life)
    assert first.score == pytest.approx(0.8 * first.similarity + 0.2 * 0.5 ** (2 / 30))
    assert second.score == pytest.approx(0.8 * second.similarity + 0.2 * 0.5 ** (90 / 30))


def test_recency_helper():
    assert recency(0, 30) == 1.0
    assert recency(30, 30) == pytest.approx(0.5)
    assert recency(-5, 30) == 1.0  # a future date counts as now


def test_without_recency_weight_score_is_similarity(settings):
    memory = make_memory(settings, recency_weight=0.0)
    memory.remember("alice", "s1", "solar panels on the roof", created_at=days_ago(400))
    [m] = memory.recall("alice", "solar panels", k=1, now=NOW)
    assert m.score == pytest.approx(m.similarity) and m.similarity > 0.3


def test_min_score_gate_drops_weak_memories(memory):
    memory.remember("alice", "s1", "solar panels on the roof of the barn", created_at=NOW)
    memory.remember("alice", "s1", "grandmother bakes bread every sunday", created_at=NOW)
    everything = memory.recall("alice", "solar panels roof", k=5, now=NOW)
    assert len(everything) == 2
    gated = memory.recall("alice", "solar panels roof", k=5, min_score=0.5, now=NOW)
    assert [m.text for m in gated] == ["solar panels on the roof of the barn"]
    assert all(m.score >= 0.5 for m in gated)


def test_exclude_session_leaves_the_current_session_out(memory):
    memory.remember("alice", "current", "solar panels discussed now", created_at=NOW)
    memory.remember("alice", "earlier", "solar panels discussed before", created_at=days_ago(3))
    memory.remember("bob", "earlier", "solar panels bob", created_at=NOW)
    recalled = memory.recall("alice", "solar panels", k=5, exclude_session="current", now=NOW)
    assert [(m.user_id, m.session_id) for m in recalled] == [("alice", "earlier")]


def test_k_limits_and_duplicate_texts_are_recalled_once(memory):
    for day in range(6):
        memory.remember("alice", f"s{day}", "solar panels", created_at=days_ago(day))
    recalled = memory.recall("alice", "solar panels", k=3, now=NOW)
    assert len(recalled) == 1 and recalled[0].session_id == "s0"
    assert memory.recall("alice", "solar panels", k=0) == []


def test_list_is_newest_first_and_filters(memory):
    memory.remember("alice", "s1", "first", created_at=days_ago(3))
    memory.remember("alice", "s2", "second", created_at=days_ago(2))
    memory.remember("bob", "s1", "bob's", created_at=days_ago(1))
    assert [m.text for m in memory.list()] == ["bob's", "second", "first"]
    assert [m.text for m in memory.list("alice")] == ["second", "first"]
    assert [m.text for m in memory.list(session_id="s1")] == ["bob's", "first"]
    assert [m.text for m in memory.list("alice", "s1")] == ["first"]


def test_forget_a_session_then_a_user_and_export(memory):
    memory.remember("alice", "s1", "one", created_at=days_ago(2))
    memory.remember("alice", "s2", "two", created_at=days_ago(1))
    memory.remember("bob", "s1", "bob's", created_at=NOW)
    exported = memory.export("alice")
    assert [e["text"] for e in exported] == ["two", "one"]
    assert set(exported[0]) == {"id", "user_id", "session_id", "kind", "text", "created_at"}
    assert memory.forget("alice", "s1") == 1
    assert [m.text for m in memory.list("alice")] == ["two"]
    assert memory.forget("alice") == 1
    assert memory.list("alice") == [] and [m.text for m in memory.list()] == ["bob's"]
    assert memory.clear() == 1 and memory.list() == []


def test_chinese_memories_are_recalled(memory):
    memory.remember_exchange("小明", "s1", "我的项目是关于太阳能电池板的。", "好的。", created_at=NOW)
    recalled = memory.recall("小明", "太阳能电池板项目", k=5, now=NOW)
    assert "用户的项目是关于太阳能电池板的。" in [m.text for m in recalled]


def test_a_different_embedder_is_refused_with_a_memory_specific_hint(settings):
    make_memory(settings).remember("alice", "s1", "solar panels")
    other = make_memory(settings, HashingEmbedder(32))
    with pytest.raises(MemoryStoreError, match="memory clear"):
        other.recall("alice", "solar")
    with pytest.raises(MemoryStoreError, match="hashing:64"):
        other.remember("alice", "s1", "wind")


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"recency_weight": 1.5}, "recency_weight"), ({"half_life_days": 0}, "half_life_days")],
)
def test_bad_settings_are_refused(settings, kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        make_memory(settings, **kwargs)


def test_bad_arguments_are_refused(memory):
    with pytest.raises(ConfigError, match="'opinion'"):
        memory.remember("alice", "s1", "x", kind="opinion")
    with pytest.raises(ConfigError, match="user_id"):
        memory.recall("", "x")
    with pytest.raises(ConfigError, match="text"):
        memory.remember("alice", "s1", "   ")


@pytest.mark.slow
def test_minilm_recalls_what_the_user_said_their_project_was_about(settings, minilm):
    memory = make_memory(settings, minilm)
    memory.remember_exchange("alice", "s1", "How do I install ragmem?", "pip install ragmem.", created_at=days_ago(9))
    memory.remember_exchange("alice", "s1", "My project is about solar panels.", "Nice, noted.", created_at=days_ago(8))
    memory.remember_exchange("alice", "s2", "I like hiking on weekends.", "Sounds fun.", created_at=days_ago(3))
    memory.remember_exchange("alice", "s2", "What is the capital of France?", "Paris.", created_at=days_ago(2))
    memory.remember_exchange("alice", "s3", "Which chunk size should I use for PDFs?", "About 200 tokens.", created_at=days_ago(1))
    memory.remember_exchange("bob", "b1", "My project is about wind turbines.", "Noted.", created_at=NOW)
    recalled = memory.recall("alice", "What did I say my project was about?", k=2, min_score=0.3, now=NOW)
    assert recalled and "solar panels" in recalled[0].text
    assert all(m.user_id == "alice" for m in recalled)
