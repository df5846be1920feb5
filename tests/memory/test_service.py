"""The memory facade: every turn remembered, recall within a budget, forgetting without orphans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rag_memory.errors import ConfigError
from rag_memory.memory.service import MemoryService, SpokenTurn, strip_citations
from rag_memory.pipelines.components import Components

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def memory(settings) -> MemoryService:
    return Components(settings.replace(embedder="hashing:1024", memory_min_score=0.0)).memory


def test_every_user_turn_is_remembered_not_only_first_person_facts(memory):
    memory.remember_turn("alice", "s1", "The backup job runs every Sunday at 2 am.", created_at=NOW)
    memory.remember_turn("alice", "s1", "我们组的周会改到周四下午了", created_at=NOW)
    texts = [m.text for m in memory.list("alice")]
    assert "User: The backup job runs every Sunday at 2 am." in texts
    assert "User: 我们组的周会改到周四下午了" in texts
    [turn] = [m for m in memory.list("alice") if "backup" in m.text]
    assert turn.kind == "turn" and turn.session_id == "s1" and turn.turn and turn.turn.startswith("s1:")
    assert [t.role for t in memory.history("alice", "s1")] == ["user", "user"]


def test_a_generated_answer_is_kept_without_its_citation_markers_and_an_extract_is_not(memory):
    memory.remember_turn("alice", "s1", "How do I restore the backup?", answer="Run restore.sh [1][2].", created_at=NOW)
    memory.remember_turn("alice", "s2", "Where are backups kept?", answer="In /srv/backup [1].",
                         answer_is_memory=False, created_at=NOW)
    texts = sorted(m.text for m in memory.list("alice"))
    assert texts == ["User: How do I restore the backup?\nAssistant: Run restore.sh.", "User: Where are backups kept?"]
    # the history keeps the answer as it was shown
    assert memory.history("alice", "s1")[1].content == "Run restore.sh [1][2]."
    assert strip_citations("见第二章[3]。") == "见第二章。"


def test_a_turn_keeps_the_turn_before_it_as_context(memory):
    memory.remember_turns("alice", "s1", [
        SpokenTurn("Did you go hiking last weekend?", speaker="Bob", created_at=NOW),
        SpokenTurn("Yes, up Mount Tam with my sister.", speaker="Alice", created_at=NOW),
    ])
    [answer] = [h for h in memory.long_term.store.get_records() if "Mount Tam" in h.text]
    assert answer.text == "Alice: Yes, up Mount Tam with my sister."
    assert answer.metadata["context"] == "Bob: Did you go hiking last weekend?"


def test_recall_leaves_out_the_current_session_and_other_users(memory):
    memory.remember_turn("alice", "old", "My sister lives in Porto.", created_at=NOW - timedelta(days=3))
    memory.remember_turn("alice", "now", "Where does my sister live again? Porto?", created_at=NOW)
    memory.remember_turn("bob", "b1", "My sister lives in Porto too.", created_at=NOW)
    recalled = memory.recall("alice", "where does my sister live", exclude_session="now", now=NOW)
    assert recalled and {m.session_id for m in recalled} == {"old"}
    assert all(m.user_id == "alice" for m in recalled)


def test_recall_packs_whole_memories_into_the_token_budget(memory):
    for i in range(30):
        memory.remember_turn("alice", f"s{i}", f"Note {i}: the garden shed needs paint, brushes and a ladder.",
                             created_at=NOW)
    everything = memory.recall("alice", "garden shed paint", budget_tokens=100_000, now=NOW)
    one = memory.count_tokens(everything[0].text)
    packed = memory.recall("alice", "garden shed paint", budget_tokens=3 * one + 1, now=NOW)
    assert len(packed) == 3 and packed == everything[:3]
    assert sum(memory.count_tokens(m.text) for m in packed) <= 3 * one + 1
    assert memory.recall("alice", "garden shed paint", budget_tokens=0, now=NOW) == []


def test_forget_one_memory_one_session_or_everything(memory):
    memory.remember_turn("alice", "s1", "The boiler was serviced in March.", created_at=NOW)
    memory.remember_turn("alice", "s2", "I live in Leeds.", created_at=NOW)
    memory.remember_turn("bob", "b1", "The boiler is new.", created_at=NOW)
    [boiler] = [m for m in memory.list("alice") if "boiler" in m.text]
    assert memory.forget("bob", memory_id=boiler.id) == 0  # never another user's memory
    assert memory.forget("alice", memory_id=boiler.id) == 1
    assert memory.history("alice", "s1")  # forgetting one unit leaves the history alone
    assert memory.forget("alice", session_id="s2") == 2  # the turn and its fact
    assert memory.sessions("alice") == [s for s in memory.sessions("alice") if s.session_id == "s1"]
    assert memory.forget("alice") == 0 and memory.sessions("alice") == []
    assert [m.user_id for m in memory.list(None)] == ["bob"]
    assert memory.clear() == 1 and memory.sessions() == [] and memory.list(None) == []


def test_export_holds_turns_memories_and_entities(memory):
    memory.remember_turn("alice", "s1", "I moved from Leeds to Porto.", created_at=NOW)
    data = memory.export("alice")
    assert [t["content"] for t in data["turns"]] == ["I moved from Leeds to Porto."]
    assert {m["kind"] for m in data["memories"]} >= {"turn"}
    assert "entities" in data and isinstance(data["entities"], list)


def test_bad_input_is_refused_with_a_clear_error(memory):
    with pytest.raises(ConfigError, match="user_id"):
        memory.remember_turn("", "s1", "hello")
    with pytest.raises(ConfigError, match="needs some text"):
        memory.remember_turn("alice", "s1", "   ")
    with pytest.raises(ConfigError, match="k must be"):
        memory.search("alice", "x", 0)
    assert memory.sessions("alice") == []  # nothing half-stored


def test_forget_removes_vectors_keyword_rows_history_and_graph_rows_in_the_stores(memory):
    memory.remember_turn("alice", "s1", "Caroline moved to Porto last May.", created_at=NOW)
    memory.remember_turn("alice", "s2", "我换到成都工作了，在腾讯上班。", created_at=NOW)
    memory.remember_turn("bob", "b1", "Porto is lovely in June.", created_at=NOW)
    store, keyword = memory.long_term.store, memory.long_term.keyword
    alice_ids = {h.chunk_id for h in store.get_records(where={"user_id": "alice"})}
    assert alice_ids and alice_ids <= keyword.ids()
    memory.forget("alice")
    assert store.get_records(where={"user_id": "alice"}) == []  # vectors
    left = {h.chunk_id for h in store.get_records()}
    assert keyword.ids() == left and not alice_ids & keyword.ids()  # keyword rows, in step with the vectors
    assert memory.history("alice", "s1") == [] and memory.history("alice", "s2") == []
    mentions = memory.graph.db.read("SELECT count(*) FROM mentions WHERE user_id = ?", ("alice",))
    assert mentions == [(0,)]
    assert memory.entities("alice") == [] and memory.list("bob")  # bob keeps his
