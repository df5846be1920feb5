"""Running summaries of turns that fell out of the short-term window."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence

from rag_memory.errors import ConfigError, RagMemoryError
from rag_memory.schema import Turn

log = logging.getLogger(__name__)

__all__ = ["summarise_turns", "summary_prompt"]

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_MAX_TURN_CHARS = 600
_MAX_QUESTION_CHARS = 160
_LABEL = re.compile(r"^(?:updated summary|summary|new summary|摘要|总结|更新后的摘要)\s*[:：]\s*", re.IGNORECASE)


def _chinese(turns: Sequence[Turn], previous: str | None) -> bool:
    """Whether the conversation is mostly Chinese (by the share of CJK among letters)."""
    text = (previous or "") + "".join(t.content for t in turns)
    cjk = len(_CJK.findall(text))
    letters = sum(ch.isalpha() for ch in text)
    return cjk > 0 and cjk >= 0.3 * max(letters, 1)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def summary_prompt(turns: Sequence[Turn], *, previous: str | None, max_chars: int = 800) -> str:
    """The prompt asking an LLM to fold ``turns`` into the running summary.

    Args:
        turns: The turns to add to the summary, chronological.
        previous: The summary so far, if any.
        max_chars: The longest summary wanted, in characters.

    Returns:
        The instruction (naming the language to write in), the summary so far, the new turns
        and an answer cue.
    """
    language = "Chinese (用中文写)" if _chinese(turns, previous) else "the language of the conversation"
    lines = [
        "You keep a running summary of a conversation between a user and an assistant.",
        "Update the summary with the new turns below. Keep what the user said about themselves"
        " and their work, the questions they asked and the conclusions reached; drop small talk.",
        f"Write at most {max_chars} characters, in {language}, as plain prose."
        " Reply with the updated summary only.",
        "",
        f"Summary so far: {previous.strip() if previous and previous.strip() else '(none)'}",
        "",
        "New turns:",
    ]
    labels = {"user": "User", "assistant": "Assistant", "system": "System"}
    for turn in turns:
        lines.append(f"{labels.get(turn.role, turn.role)}: {_clip(turn.content, _MAX_TURN_CHARS)}")
    lines += ["", "Updated summary:"]
    return "\n".join(lines)


def _extractive(turns: Sequence[Turn], previous: str | None, max_chars: int) -> str | None:
    chinese = _chinese(turns, previous)
    asked = [_clip(t.content, _MAX_QUESTION_CHARS) for t in turns if t.role == "user" and t.content.strip()]
    if not asked:
        return previous.strip() if previous and previous.strip() else None
    lead = "用户问过：" if chinese else "The user asked: "
    sep = "；" if chinese else "; "
    new = lead + sep.join(asked)
    text = f"{previous.strip()}\n{new}" if previous and previous.strip() else new
    if len(text) <= max_chars:
        return text
    # Too long: the oldest material goes first, the newest questions stay.
    return "…" + text[-(max_chars - 1) :]


def summarise_turns(
    turns: Sequence[Turn],
    *,
    previous: str | None = None,
    generate: Callable[[str], str] | None = None,
    max_chars: int = 800,
) -> str | None:
    """Fold turns into a session's running summary.

    With ``generate`` (an LLM: prompt in, text out), the LLM rewrites the summary so far
    plus the new turns into a short summary in the conversation's language. Without one,
    or when the LLM returns nothing or fails, the summary is *extractive*: the summary so
    far followed by the user's questions from ``turns`` (each clipped), keeping the newest
    material when it overflows ``max_chars``. That is cruder, but it never invents anything.

    Args:
        turns: The turns to add, chronological (typically those that left the window).
        previous: The summary so far, if any.
        generate: Takes a prompt and returns the LLM's text.
        max_chars: The longest summary returned, in characters.

    Returns:
        The updated summary, or ``None`` when there is nothing to summarise.
    """
    if max_chars < 16:
        raise ConfigError(f"max_chars must be at least 16, got {max_chars}")
    if not turns:
        return previous.strip() if previous and previous.strip() else None
    if generate is not None:
        try:
            output = generate(summary_prompt(turns, previous=previous, max_chars=max_chars)) or ""
        except RagMemoryError as exc:
            log.warning("could not summarise with the LLM (%s); keeping an extractive summary", exc)
            output = ""
        text = _LABEL.sub("", output.strip()).strip()
        if text:
            return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"
    return _extractive(turns, previous, max_chars)
