"""Entity spotting without a language model: people, places, organisations, names, dates and
quantities in English and Chinese text.

- Chinese: ``jieba``'s part-of-speech tagger (its dictionary ships inside the package, so it
  works offline): ``nr`` person, ``ns`` place, ``nt`` organisation, ``nz`` proper noun, ``t``
  time words. jieba is imported on first use only.
- English: capitalised word runs ("New York", "Bank of America"; a sentence's first word only
  when it is not a common word), quoted names ("Becoming Nicole"), numbers with units
  ("5 km", "$40"), and dates.
- Dates are normalised against the moment the text was said: "yesterday" said on 2023-05-08
  is ``2023-05-07``, "last month" ``2023-04``, "last week" ``2023-W18``, "昨天" and "上个月"
  likewise; absolute dates ("7 May 2023", "2023-05-07", "2023年5月") keep their own value.

Every mention has a ``key`` (case-folded, so "paris" in a question finds "Paris").
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from rag_memory.text.terms import STOPWORDS_EN

__all__ = ["ENTITY_KINDS", "Mention", "extract_entities", "resolve_period"]

ENTITY_KINDS = ("person", "place", "organisation", "name", "title", "date", "quantity")


@dataclass(frozen=True)
class Mention:
    """One entity a text mentions.

    Attributes:
        name: The entity as written, or the normalised date (``2023-05-07``).
        key: What mentions are matched by: the name case-folded, or the normalised date.
        kind: One of ``ENTITY_KINDS``.
    """

    name: str
    key: str
    kind: str


# -- dates -------------------------------------------------------------------------------
_MONTHS = {m: i for i, m in enumerate(
    "january february march april may june july august september october november december".split(), 1)}
_MONTHS.update({m[:3]: i for m, i in list(_MONTHS.items())})
_MONTHS["sept"] = 9
_MONTH_RE = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
_WEEKDAYS = {d: i for i, d in enumerate("monday tuesday wednesday thursday friday saturday sunday".split())}
_NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "a few": 3,
                 "few": 3, "several": 3, "couple of": 2, "a couple of": 2}

_EN_DATES = re.compile(
    rf"\b(?P<iso>\d{{4}}-\d{{2}}-\d{{2}})\b"
    rf"|\b(?P<dmy>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<dmy_m>{_MONTH_RE})\.?,?(?:\s+(?P<dmy_y>\d{{4}}))?\b"
    rf"|\b(?P<mdy_m>{_MONTH_RE})\.?\s+(?P<mdy>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(?P<mdy_y>\d{{4}}))?"
    rf"|\b(?P<my_m>{_MONTH_RE})\s+(?P<my_y>\d{{4}})\b"
    r"|\b(?P<rel_day>yesterday|today|tonight|tomorrow)\b"
    r"|\b(?P<rel_dir>last|this|next|past)\s+(?P<rel_unit>week(?:end)?|month|year|summer|winter|spring|fall|autumn"
    r"|monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b"
    r"|\b(?P<ago_n>\d+|an?|one|two|three|four|five|six|a few|few|several|a couple of|couple of)\s+"
    r"(?P<ago_unit>days?|weeks?|months?|years?)\s+ago\b"
    r"|\b(?:in|since|during|of)\s+(?P<year>(?:19|20)\d{2})\b",
    re.IGNORECASE,
)
_SEASON_MONTH = {"spring": 3, "summer": 6, "fall": 9, "autumn": 9, "winter": 12}


def _week(d: date) -> str:
    y, w, _ = d.isocalendar()
    return f"{y}-W{w:02d}"


def _month_shift(d: date, months: int) -> str:
    m = d.month - 1 + months
    return f"{d.year + m // 12:04d}-{m % 12 + 1:02d}"


def _en_date(m: re.Match[str], when: date | None) -> str | None:
    g = m.groupdict()
    if g["iso"]:
        return g["iso"]
    if g["dmy"] or g["mdy"]:
        day = int(g["dmy"] or g["mdy"])
        month = _MONTHS[_month_key(g["dmy_m"] or g["mdy_m"])]
        year = g["dmy_y"] or g["mdy_y"]
        if not 1 <= day <= 31:
            return None
        if year:
            return f"{int(year):04d}-{month:02d}-{day:02d}"
        return f"{when.year:04d}-{month:02d}-{day:02d}" if when else f"--{month:02d}-{day:02d}"
    if g["my_m"]:
        return f"{int(g['my_y']):04d}-{_MONTHS[_month_key(g['my_m'])]:02d}"
    if g["year"]:
        return g["year"]
    if when is None:
        return None
    if g["rel_day"]:
        offset = {"yesterday": -1, "today": 0, "tonight": 0, "tomorrow": 1}[g["rel_day"].lower()]
        return (when + timedelta(days=offset)).isoformat()
    if g["rel_dir"]:
        direction = {"last": -1, "past": -1, "this": 0, "next": 1}[g["rel_dir"].lower()]
        unit = g["rel_unit"].lower()
        if unit in ("week", "weekend"):
            return _week(when + timedelta(weeks=direction))
        if unit == "month":
            return _month_shift(when, direction)
        if unit == "year":
            return f"{when.year + direction:04d}"
        if unit in _SEASON_MONTH:
            year = when.year + (direction if direction else 0)
            if direction < 0 and when.month > _SEASON_MONTH[unit] + 2:
                year = when.year
            return f"{year:04d}-{unit}"
        target = _WEEKDAYS[unit]
        delta = (when.weekday() - target) % 7 or 7
        if direction < 0:
            return (when - timedelta(days=delta)).isoformat()
        if direction > 0:
            return (when + timedelta(days=(target - when.weekday()) % 7 or 7)).isoformat()
        return (when + timedelta(days=target - when.weekday())).isoformat()
    if g["ago_n"]:
        raw = g["ago_n"].lower()
        n = int(raw) if raw.isdigit() else _NUMBER_WORDS.get(raw, 1)
        unit = g["ago_unit"].lower().rstrip("s")
        if unit == "day":
            return (when - timedelta(days=n)).isoformat()
        if unit == "week":
            return _week(when - timedelta(weeks=n))
        if unit == "month":
            return _month_shift(when, -n)
        return f"{when.year - n:04d}"
    return None


def _month_key(name: str) -> str:
    name = name.lower().rstrip(".")
    return name if name in _MONTHS else name[:3]


# Chinese relative and absolute dates.
_ZH_DATES = re.compile(
    r"(?P<y>\d{4}|[零〇一二三四五六七八九]{4})年(?:(?P<m>\d{1,2}|[一二三四五六七八九十]{1,3})月(?:(?P<d>\d{1,2})[日号])?)?"
    r"|(?P<md_m>\d{1,2})月(?P<md_d>\d{1,2})[日号]"
    r"|(?P<rel>大前天|前天|昨天|今天|明天|后天|上周末|上周|上个?星期|这周|本周|下周|下个?星期|上个月|这个月|本月|下个月|去年|今年|明年|前年)"
    r"|(?P<ago_n>\d+|[一两二三四五六七八九十几]+)个?(?P<ago_u>天|周|星期|月|年)前"
)
_ZH_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9,
              "几": 3}


def _zh_number(text: str) -> int:
    if text.isdigit():
        return int(text)
    if "十" in text:
        left, _, right = text.partition("十")
        return (_ZH_DIGITS.get(left, 1) if left else 1) * 10 + (_ZH_DIGITS.get(right, 0) if right else 0)
    if len(text) == 4:
        return int("".join(str(_ZH_DIGITS.get(c, 0)) for c in text))
    return _ZH_DIGITS.get(text, 1)


def _zh_date(m: re.Match[str], when: date | None) -> str | None:
    g = m.groupdict()
    if g["y"]:
        year = _zh_number(g["y"])
        if g["m"]:
            month = _zh_number(g["m"])
            if not 1 <= month <= 12:
                return None
            return f"{year:04d}-{month:02d}-{int(g['d']):02d}" if g["d"] else f"{year:04d}-{month:02d}"
        return f"{year:04d}"
    if g["md_m"]:
        month, day = int(g["md_m"]), int(g["md_d"])
        if not (1 <= month <= 12 and 1 <= day <= 31):
            return None
        return f"{when.year:04d}-{month:02d}-{day:02d}" if when else f"--{month:02d}-{day:02d}"
    if when is None:
        return None
    if g["rel"]:
        rel = g["rel"]
        days = {"大前天": -3, "前天": -2, "昨天": -1, "今天": 0, "明天": 1, "后天": 2}
        if rel in days:
            return (when + timedelta(days=days[rel])).isoformat()
        if rel.startswith("上") and ("周" in rel or "星期" in rel):
            return _week(when - timedelta(weeks=1))
        if rel in ("这周", "本周"):
            return _week(when)
        if rel.startswith("下") and ("周" in rel or "星期" in rel):
            return _week(when + timedelta(weeks=1))
        months = {"上个月": -1, "这个月": 0, "本月": 0, "下个月": 1}
        if rel in months:
            return _month_shift(when, months[rel])
        years = {"前年": -2, "去年": -1, "今年": 0, "明年": 1}
        return f"{when.year + years[rel]:04d}"
    n = _zh_number(g["ago_n"])
    unit = g["ago_u"]
    if unit == "天":
        return (when - timedelta(days=n)).isoformat()
    if unit in ("周", "星期"):
        return _week(when - timedelta(weeks=n))
    if unit == "月":
        return _month_shift(when, -n)
    return f"{when.year - n:04d}"


def resolve_period(key: str) -> tuple[date, date] | None:
    """The days a normalised date key covers, first and last: ``2023-05-07`` one day,
    ``2023-W18`` a week, ``2023-05`` a month, ``2023`` a year, ``2023-summer`` three months."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", key):
            d = date.fromisoformat(key)
            return d, d
        m = re.fullmatch(r"(\d{4})-W(\d{2})", key)
        if m:
            start = date.fromisocalendar(int(m[1]), int(m[2]), 1)
            return start, start + timedelta(days=6)
        m = re.fullmatch(r"(\d{4})-(\d{2})", key)
        if m:
            start = date(int(m[1]), int(m[2]), 1)
            nxt = date(start.year + start.month // 12, start.month % 12 + 1, 1)
            return start, nxt - timedelta(days=1)
        m = re.fullmatch(r"(\d{4})-(spring|summer|fall|autumn|winter)", key)
        if m:
            start = date(int(m[1]), _SEASON_MONTH[m[2]], 1)
            end_month = start.month + 2
            end = date(start.year + (end_month - 1) // 12, (end_month - 1) % 12 + 1, 28)
            return start, end + timedelta(days=3)
        if re.fullmatch(r"\d{4}", key):
            return date(int(key), 1, 1), date(int(key), 12, 31)
    except ValueError:
        return None
    return None


# -- English names ---------------------------------------------------------------------------
_CAP_WORD = r"(?:[A-Z][a-z'’]+(?:-[A-Z]?[a-z]+)*|[A-Z]{2,}[a-z]?|[A-Z]\.)"
_CAP_RUN = re.compile(rf"\b{_CAP_WORD}(?:\s+(?:of|the|de|da|van|von|and|&)\s+{_CAP_WORD}|\s+{_CAP_WORD})*")
_QUOTED = re.compile(r"[\"“”]([^\"“”\n]{2,60})[\"“”]|(?<![\w])'([A-Z][^'\n]{1,58})'(?![\w])")
_QUANTITY = re.compile(
    r"(?:[$£€¥]\s?\d[\d,]*(?:\.\d+)?(?:\s?(?:k|m|bn|million|billion|thousand))?)"
    r"|\b\d[\d,]*(?:\.\d+)?\s?(?:%|percent|km|kilometers?|kilometres?|miles?|mi|m|meters?|metres?|kg|kilograms?|"
    r"lbs?|pounds?|g|grams?|hours?|hrs?|minutes?|mins?|seconds?|days?|weeks?|months?|years?|yrs?|am|pm|"
    r"dollars?|euros?|yuan|rmb|people|kids|children|times|books?|cats?|dogs?|pets?)\b",
    re.IGNORECASE,
)
# Words that start sentences without being names.
_COMMON = STOPWORDS_EN | frozenset(
    """i i'm i've i'll i'd im ive hey hi hello hiya wow oh ooh ah yes yeah yep no nope ok okay thanks thank
    sure great awesome cool nice good glad sounds sorry well so also and but or just really totally
    absolutely definitely congrats congratulations haha lol omg please let let's lets can could would
    should will do does did is are was were have has had it's that's there's what's how's here's
    same me my mine you your yours we us our they them their he she his her its this that these those
    my mom dad anyway btw by maybe perhaps actually hmm um uh right true exactly agreed love like
    see look thinking think hope wish keep take make go went got get been being after before
    when where why who how which what whatever yesterday today tonight tomorrow last next
    monday tuesday wednesday thursday friday saturday sunday one two three four five six seven eight nine
    ten a few several many some any all every each both user assistant""".split()
)
_MONTH_NAMES = frozenset(_MONTHS)
_SENTENCE_START = re.compile(r"(?:^|[.!?]\s+|\n\s*|:\s+)$")
_PLACE_PREP = re.compile(r"\b(?:in|at|to|from|near|visited|visit|around|across|into|toward|towards)\s+$", re.I)


def _english(text: str, speakers: frozenset[str]) -> list[Mention]:
    out: list[Mention] = []
    for m in _QUOTED.finditer(text):
        name = (m.group(1) or m.group(2) or "").strip(" .,!?")
        if name and len(name.split()) <= 8:
            out.append(Mention(name, name.casefold(), "title"))
    for m in _CAP_RUN.finditer(text):
        span = m.group().strip()
        words = span.split()
        start = m.start()
        if _SENTENCE_START.search(text[:start]) or start == 0:
            # Drop common words opening a sentence ("Thanks", "Wow Caroline" -> "Caroline").
            while words and words[0].casefold().strip("'’") in _COMMON:
                start += len(words[0]) + 1
                words = words[1:]
        while words and words[-1].lower() in ("of", "the", "and", "&", "de", "da", "van", "von"):
            words = words[:-1]
        if not words:
            continue
        span = " ".join(words)
        low = span.casefold()
        if low in _COMMON or low in _MONTH_NAMES or low.rstrip("'’s") in _COMMON or len(span) < 2:
            continue
        if low.endswith(("'s", "’s")):
            span, low = span[:-2], low[:-2]
        kind = "person" if low in speakers else ("place" if _PLACE_PREP.search(text[:start]) else "name")
        out.append(Mention(span, low, kind))
    for m in _QUANTITY.finditer(text):
        raw = " ".join(m.group().split())
        if re.fullmatch(r"\d{1,2}\s?(?:am|pm)", raw, re.I):
            continue
        out.append(Mention(raw, raw.casefold().replace(",", ""), "quantity"))
    return out


# -- Chinese ---------------------------------------------------------------------------------
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_ZH_FLAGS = {"nr": "person", "nrfg": "person", "nrt": "person", "ns": "place", "nt": "organisation", "nz": "name"}
_ZH_QUANTITY = re.compile(r"\d+(?:\.\d+)?\s?(?:公里|千米|米|公斤|千克|斤|元|块钱|块|万|小时|分钟|岁|个人|人|本|只|次|%)")
_jieba_lock = threading.Lock()
_posseg = None


def _jieba():
    global _posseg
    with _jieba_lock:
        if _posseg is None:
            import jieba
            import jieba.posseg

            jieba.setLogLevel(logging.WARNING)
            _posseg = jieba.posseg
    return _posseg


def _chinese(text: str) -> list[Mention]:
    out: list[Mention] = []
    for pair in _jieba().cut(text):
        word, flag = pair.word.strip(), pair.flag
        kind = _ZH_FLAGS.get(flag)
        if kind and len(word) >= 2 and _CJK.search(word):
            out.append(Mention(word, word.casefold(), kind))
    for m in _ZH_QUANTITY.finditer(text):
        out.append(Mention(m.group(), m.group().replace(" ", ""), "quantity"))
    return out


def extract_entities(
    text: str, *, when: datetime | date | None = None, speakers: frozenset[str] | set[str] = frozenset()
) -> list[Mention]:
    """The entities a text mentions, each once, in the order first mentioned.

    Args:
        text: English, Chinese or mixed text.
        when: When it was said; relative dates ("yesterday", "上个月") are resolved against it
            and dropped without it.
        speakers: Lower-cased names known to be people (the conversation's speakers).

    Returns:
        Mentions; dates have ``kind="date"`` and their normalised value as name and key.

    Example:
        >>> [(m.name, m.kind) for m in extract_entities("I went to Paris yesterday.", when=date(2023, 5, 8))]
        [('Paris', 'place'), ('2023-05-07', 'date')]
    """
    if not text or not text.strip():
        return []
    day = when.date() if isinstance(when, datetime) else when
    found: list[Mention] = []
    if _CJK.search(text):
        found += _chinese(text)
        for m in _ZH_DATES.finditer(text):
            value = _zh_date(m, day)
            if value:
                found.append(Mention(value, value, "date"))
    found += _english(text, frozenset(s.casefold() for s in speakers))
    for m in _EN_DATES.finditer(text):
        value = _en_date(m, day)
        if value:
            found.append(Mention(value, value, "date"))
    seen: set[tuple[str, str]] = set()
    out = []
    for mention in found:
        key = (mention.key, mention.kind if mention.kind in ("date", "quantity") else "")
        if mention.key and key not in seen:
            seen.add(key)
            out.append(mention)
    return out
