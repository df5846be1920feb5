"""Time cues in a question, English and Chinese: which period it asks about, and whether it
wants the latest or the earliest of several memories.

- A period: "last week", "in May 2023", "two months ago", "yesterday", "上个月", "去年",
  "2023年5月" (resolved against the moment the question is asked, ``now``).
- An order: "latest", "recently", "now", "currently", "still", "最近", "现在", "目前" want
  the newest; "first", "originally", "at first", "最早", "一开始", "以前" the oldest.
- A "when" question ("when did I", "什么时候", "哪天") asks for a date, so the memory block's
  dates matter more than usual; it names no period by itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from rag_memory.text.entities import extract_entities, resolve_period

__all__ = ["TimeCue", "time_cue"]

_NEWEST = re.compile(
    r"\b(?:latest|most recent(?:ly)?|recently|lately|now|currently|current|these days|still|anymore|nowadays|"
    r"these days|today)\b|最近|现在|目前|如今|当前|还在|最新",
    re.IGNORECASE,
)
_OLDEST = re.compile(
    r"\b(?:first|originally|at first|initially|earliest|used to|before|previously|formerly)\b|最早|一开始|起初|"
    r"以前|原来|之前|当初|第一次",
    re.IGNORECASE,
)
_WHEN = re.compile(r"\b(?:when|what (?:date|day|time|year|month)|how long ago)\b|什么时候|哪天|哪一天|哪年|几月|何时",
                   re.IGNORECASE)


@dataclass(frozen=True)
class TimeCue:
    """What a question says about time.

    Attributes:
        periods: The periods it names, as (first day, last day).
        order: ``newest``, ``oldest`` or ``None``.
        asks_when: Whether it asks for a date.
    """

    periods: tuple[tuple[date, date], ...] = ()
    order: str | None = None
    asks_when: bool = False

    def __bool__(self) -> bool:
        return bool(self.periods or self.order or self.asks_when)

    def covers(self, moment: datetime | date) -> bool:
        """Whether a moment falls in one of the named periods."""
        day = moment.date() if isinstance(moment, datetime) else moment
        return any(start <= day <= end for start, end in self.periods)


def time_cue(question: str, now: datetime) -> TimeCue:
    """The time cues of ``question`` asked at ``now``.

    Example:
        >>> cue = time_cue("What did I say about the boiler last week?", datetime(2024, 6, 12))
        >>> cue.periods
        ((datetime.date(2024, 5, 27), datetime.date(2024, 6, 2)),)
    """
    periods = []
    for m in extract_entities(question, when=now):
        if m.kind == "date":
            period = resolve_period(m.key)
            if period:
                periods.append(period)
    newest = bool(_NEWEST.search(question))
    oldest = bool(_OLDEST.search(question))
    order = "newest" if newest and not oldest else "oldest" if oldest and not newest else None
    return TimeCue(tuple(periods), order, bool(_WHEN.search(question)))
