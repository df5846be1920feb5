"""Short-term memory: the most recent turns of a session that fit a token budget."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rag_memory.schema import Turn


def recent_window(
    turns: Sequence[Turn],
    budget_tokens: int,
    count_tokens: Callable[[str], int],
    *,
    per_turn_tokens: int = 0,
) -> tuple[list[Turn], list[Turn]]:
    """Split a session into the recent turns that fit a budget and the older ones.

    Turns are counted newest first and taken whole until the next one would overflow the
    budget, so the window is always an unbroken run of the latest turns. A window that
    would open with an assistant turn whose question fell out loses that turn too: an
    answer without its question misleads more than it helps.

    Args:
        turns: The session's turns, in chronological order.
        budget_tokens: Most tokens the kept turns may use together (0 or less keeps none).
        count_tokens: Counts a text's tokens with the generator's tokenizer.
        per_turn_tokens: Tokens each turn costs on top of its text (role label, separators).

    Returns:
        ``(kept, dropped)``: the kept turns in chronological order, and the older turns that
        fell out of the window, also chronological. ``dropped + kept == list(turns)``.

    Example:
        >>> kept, dropped = recent_window(turns, 200, lambda s: len(s.split()))
    """
    turns = list(turns)
    used = 0
    start = len(turns)
    for i in range(len(turns) - 1, -1, -1):
        cost = count_tokens(turns[i].content) + per_turn_tokens
        if used + cost > budget_tokens:
            break
        used += cost
        start = i
    # An assistant turn is dangling when an earlier turn (its question) did not fit.
    while start < len(turns) and start > 0 and turns[start].role == "assistant":
        start += 1
    return turns[start:], turns[:start]
