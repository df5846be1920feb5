"""Conversations between named people: who said a thing counts, and a question that swaps the
speaker ("What did Caroline realise after her race?" when Melanie ran it) recalls nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rag_memory.memory.recall import STRATEGIES, named_speakers, said_by_another, speaker_of, without_names
from rag_memory.memory.service import SpokenTurn
from rag_memory.pipelines.components import Components
from rag_memory.schema import Memory

START = datetime(2023, 5, 8, 13, 0, tzinfo=UTC)
NOW = START + timedelta(days=60)

ENGLISH = [
    ("Caroline", "I went to a support group for transgender people yesterday, it was powerful."),
    ("Melanie", "That sounds amazing, Caroline! I ran a charity race for mental health last Saturday."),
    ("Caroline", "Wow Melanie, how did the race go? What did you take away from it?"),
    ("Melanie", "I realised that self-care is really important and I need to make time for myself."),
    ("Caroline", "I've been researching adoption agencies, I want to give a kid a loving home."),
    ("Melanie", "My kids love painting; we painted a sunset by the lake together."),
    ("Caroline", "My grandma gave me a necklace from Sweden, it stands for love and faith."),
    ("Melanie", "I play the clarinet in a small band on weekends."),
]
CHINESE = [
    ("李雷", "我上周末跑了一场慈善马拉松，为心理健康筹款。"),
    ("韩梅梅", "李雷，太厉害了！跑完马拉松你有什么感想？"),
    ("李雷", "我意识到照顾好自己真的很重要，要给自己留时间。"),
    ("韩梅梅", "我最近在研究领养机构，想给孩子一个温暖的家。"),
    ("李雷", "我在周末的乐队里吹单簧管。"),
    ("韩梅梅", "我奶奶送了我一条来自瑞典的项链。"),
]


def _service(settings, turns):
    memory = Components(settings.replace(embedder="hashing:1024", memory_min_score=0.3)).memory
    for i, (speaker, text) in enumerate(turns):
        memory.remember_turns("conv", f"s{i // 2 + 1}",
                              [SpokenTurn(text, speaker=speaker, created_at=START + timedelta(days=i))])
    return memory


@pytest.fixture
def english(settings):
    memory = _service(settings, ENGLISH)
    yield memory
    memory.close()


@pytest.fixture
def chinese(settings):
    memory = _service(settings, CHINESE)
    yield memory
    memory.close()


def test_the_speakers_of_a_conversation_are_known_and_a_plain_user_has_none(english, settings):
    assert english.speakers("conv") == {"Caroline", "Melanie"}
    english.remember_turn("alice", "a1", "I like tea.", created_at=START)
    assert english.speakers("alice") == set()


def test_names_are_found_and_taken_out_of_the_content_query():
    assert named_speakers("What did caroline research?", {"Caroline", "Melanie", "User"}) == ["Caroline"]
    assert named_speakers("What did Carolines do?", {"Caroline"}) == []
    assert without_names("What is Melanie's favourite band?", ["Melanie"]) == "What is favourite band?"
    assert without_names("Who is Melanie?", ["Melanie"]) == "Who is Melanie?"  # nothing else would be left
    assert named_speakers("李雷跑完马拉松有什么感想？", {"李雷", "韩梅梅"}) == ["李雷"]
    assert without_names("李雷的乐器是什么？", ["李雷"]) == "乐器是什么？"
    assert speaker_of("韩梅梅: 我奶奶送了我一条项链。") == "韩梅梅" and speaker_of("no label here") is None


def test_what_the_named_speaker_said_comes_first(english):
    recalled = english.recall("conv", "What does Melanie play in her band?", now=NOW)
    assert recalled[0].text.startswith("Melanie: I play the clarinet")
    recalled = english.recall("conv", "Which agencies has Caroline been researching?", now=NOW)
    assert recalled[0].text.startswith("Caroline: I've been researching adoption agencies")


def test_a_question_that_swaps_the_speaker_recalls_nothing(english):
    # Melanie ran the race and realised it; Caroline only asked about it.
    assert english.recall("conv", "What did Melanie realize after her charity race?", now=NOW)
    assert english.recall("conv", "What did Caroline realize after her charity race?", now=NOW) == []
    # without the gate the same question still ranks Melanie's turn
    ungated = english.with_strategy(STRATEGIES["hybrid+time+entities+speakers"])
    assert ungated.recall("conv", "What did Caroline realize after her charity race?", now=NOW)


def test_a_chinese_question_that_swaps_the_speaker_recalls_nothing(chinese):
    recalled = chinese.recall("conv", "李雷在乐队里吹什么乐器？", now=NOW)
    assert recalled and recalled[0].text.startswith("李雷: 我在周末的乐队里吹单簧管")
    assert chinese.recall("conv", "韩梅梅跑完慈善马拉松意识到了什么？", now=NOW) == []
    assert chinese.recall("conv", "李雷跑完慈善马拉松意识到了什么？", now=NOW)


def test_the_swap_check_weighs_first_person_statements_only():
    def unit(text: str, score: float) -> Memory:
        return Memory(text[:8], "u", "s", text, "turn", "2023-05-08T00:00:00+00:00", score=score)

    asked = [unit("Melanie: I ran a charity race.", 1.0), unit("Caroline: How did your race go?", 0.9)]
    coverage = {m.id: 0.6 for m in asked}
    assert said_by_another(asked, "Caroline", coverage) is True  # Caroline only asked about it
    owned = [unit("Melanie: I ran a charity race.", 1.0), unit("Caroline: I ran one too!", 0.9)]
    assert said_by_another(owned, "Caroline", {m.id: 0.6 for m in owned}) is False


def test_the_session_several_good_units_agree_on_leads_and_a_fact_counts_with_its_turn():
    from rag_memory.memory.recall import lead_with_best_session

    def unit(mid: str, session: str, score: float, turn: str | None = None, kind: str = "turn") -> Memory:
        return Memory(mid, "u", session, mid, kind, "2023-05-08T00:00:00+00:00", score=score, turn=turn)

    lone, agreeing = unit("lone", "s1", 0.9, "s1:1"), [unit("a", "s2", 0.8, "s2:1"), unit("b", "s2", 0.7, "s2:2")]
    ranked = lead_with_best_session([lone, *agreeing])
    assert [m.id for m in ranked] == ["a", "lone", "b"] and ranked[0].score > lone.score
    # a fact and the turn it came from are one piece of evidence, not two
    fact = unit("fact", "s2", 0.8, "s2:1", kind="fact")
    assert [m.id for m in lead_with_best_session([lone, fact, agreeing[0]])] == ["lone", "fact", "a"]
