"""The per-user entity graph: mentions with provenance, co-occurrence edges, no orphans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rag_memory.memory.service import SpokenTurn
from rag_memory.pipelines.components import Components

T0 = datetime(2023, 5, 8, 14, 0, tzinfo=UTC)


@pytest.fixture
def memory(settings):
    return Components(settings.replace(embedder="hashing:256", memory_min_score=0.0)).memory


def tables(memory) -> dict[str, int]:
    return memory.graph.counts()


def test_entities_link_people_places_and_dates_across_sessions(memory):
    memory.remember_turns("alice", "s1", [
        SpokenTurn("Caroline and I visited Porto yesterday.", speaker="Melanie", created_at=T0),
    ])
    memory.remember_turns("alice", "s2", [
        SpokenTurn("Caroline loved the food in Porto.", speaker="Melanie", created_at=T0 + timedelta(days=9)),
    ])
    by_name = {e.name: e for e in memory.entities("alice")}
    porto, caroline = by_name["Porto"], by_name["Caroline"]
    assert porto.kind == "place" and porto.mentions == 2 and porto.sessions == ("s1", "s2")
    assert porto.first_seen.startswith("2023-05-08") and porto.last_seen.startswith("2023-05-17")
    assert by_name["2023-05-07"].kind == "date"  # "yesterday", said on 8 May
    assert ("Caroline", 2) in porto.related and ("Porto", 2) in caroline.related
    assert memory.entities("bob") == []


def test_chinese_entities_come_from_jieba(memory):
    memory.remember_turn("li", "z1", "我和张伟上个月去了成都出差。", created_at=T0)
    names = {e.name: e.kind for e in memory.entities("li")}
    assert names.get("张伟") == "person" and names.get("成都") == "place"
    assert names.get("2023-04") == "date"


def test_forgetting_removes_mentions_and_edges_and_leaves_no_orphans(memory):
    memory.remember_turn("alice", "s1", "Caroline moved to Porto.", created_at=T0)
    memory.remember_turn("alice", "s2", "Caroline started a job at Acme Robotics.", created_at=T0 + timedelta(days=1))
    memory.remember_turn("bob", "b1", "Porto is lovely in June.", created_at=T0)
    memory.forget("alice", session_id="s1")
    names = {e.name: e for e in memory.entities("alice")}
    assert "Porto" not in names  # its only mention of alice's was in s1
    assert names["Caroline"].mentions == 1 and names["Caroline"].related == (("Acme Robotics", 1),)
    assert "Porto" in {e.name for e in memory.entities("bob")}  # bob's graph is his own
    conn = memory.graph.db.conn
    orphans = conn.execute(
        "SELECT count(*) FROM entities e WHERE NOT EXISTS (SELECT 1 FROM mentions m WHERE m.entity_id = e.id)"
    ).fetchone()[0]
    dangling = conn.execute(
        "SELECT count(*) FROM edges g WHERE NOT EXISTS (SELECT 1 FROM entities e WHERE e.id = g.a)"
        " OR NOT EXISTS (SELECT 1 FROM entities e WHERE e.id = g.b)"
    ).fetchone()[0]
    stale = conn.execute(
        "SELECT count(*) FROM mentions m WHERE m.user_id = 'alice' AND m.session_id = 's1'"
    ).fetchone()[0]
    assert (orphans, dangling, stale) == (0, 0, 0)
    [unit] = [m for m in memory.list("alice") if "Acme" in m.text]
    memory.forget("alice", memory_id=unit.id)
    assert "Acme Robotics" not in {e.name for e in memory.entities("alice")}
    memory.forget("alice")
    assert memory.entities("alice") == [] and tables(memory)["entities"] == 1  # bob's Porto
    memory.clear()
    assert tables(memory) == {"entities": 0, "mentions": 0, "edges": 0}
