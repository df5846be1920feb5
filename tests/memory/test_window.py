"""The short-term window: recent turns within a token budget, never split, never dangling."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rag_memory.memory.window import recent_window
from rag_memory.schema import Turn


def words(text: str) -> int:
    return len(text.split())


def turn(role: str, content: str, i: int = 0) -> Turn:
    return Turn(role=role, content=content, user_id="u", session_id="s", created_at="2024-01-01T00:00:00+00:00", id=i)


def conversation(*contents: str) -> list[Turn]:
    return [turn("user" if i % 2 == 0 else "assistant", c, i) for i, c in enumerate(contents)]


def test_keeps_the_newest_turns_that_fit():
    turns = conversation("one two", "three four five", "six", "seven eight")
    kept, dropped = recent_window(turns, 6, words)
    assert [t.content for t in kept] == ["six", "seven eight"]
    assert [t.content for t in dropped] == ["one two", "three four five"]


def test_everything_fits_in_a_large_budget():
    turns = conversation("a b", "c d", "e")
    assert recent_window(turns, 100, words) == (turns, [])


def test_a_window_never_starts_with_an_answer_whose_question_fell_out():
    turns = conversation("q1 " * 10, "a1", "q2", "a2 a2")
    # "a1" would fit (1 + 1 + 2 = 4 tokens), but its question did not: it goes too.
    kept, dropped = recent_window(turns, 4, words)
    assert [t.content for t in kept] == ["q2", "a2 a2"]
    assert dropped == turns[:2]


def test_a_turn_is_never_split_and_an_oversized_newest_turn_keeps_nothing():
    turns = conversation("q", "a very long answer indeed")
    kept, dropped = recent_window(turns, 3, words)
    assert kept == [] and dropped == turns


def test_zero_or_negative_budget_keeps_nothing():
    turns = conversation("q", "a")
    assert recent_window(turns, 0, words) == ([], turns)
    assert recent_window(turns, -5, words) == ([], turns)
    assert recent_window([], 10, words) == ([], [])


def test_per_turn_overhead_is_counted():
    turns = conversation("q", "a")
    assert recent_window(turns, 2, words)[0] == turns
    assert recent_window(turns, 2, words, per_turn_tokens=1)[0] == []


def test_a_conversation_opening_with_an_assistant_greeting_keeps_it():
    turns = [turn("assistant", "Hello!"), turn("user", "hi")]
    assert recent_window(turns, 10, words)[0] == turns


roles = st.sampled_from(["user", "assistant", "system"])
contents = st.lists(st.sampled_from(["a", "bb", "中文", "x y", "long text here"]), min_size=0, max_size=6).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(roles, contents), max_size=25), st.integers(min_value=-3, max_value=60))
def test_window_property_budget_never_exceeded_and_split_is_a_clean_suffix(pairs, budget):
    turns = [turn(role, content, i) for i, (role, content) in enumerate(pairs)]
    kept, dropped = recent_window(turns, budget, words)
    assert sum(words(t.content) for t in kept) <= max(budget, 0)
    assert dropped + kept == turns
    if kept and dropped:
        assert kept[0].role != "assistant"
    # Maximal: the turn just before the window either did not fit, or was a dangling answer.
    if dropped:
        before = dropped[-1]
        used = sum(words(t.content) for t in kept)
        assert used + words(before.content) > budget or before.role == "assistant"
