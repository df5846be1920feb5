"""Facts a user states about themselves, picked out of their messages by rules.

Rules rather than a model: they run on every turn for free, and a rule that misses a fact
costs less than one that invents a fact. Each rule matches a first-person statement at the
start of a clause ("my project is about …", "I work at …", "我在…工作", "我喜欢…") and
rewrites it in the third person ("The user's project is about …", "用户在…工作。"), so the
fact reads right when it is recalled into a later prompt. Questions are never facts.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["extract_facts"]

_MAX_EN_OBJECT = 160
_MAX_ZH_OBJECT = 60

# -- English -----------------------------------------------------------------------------
_EN_SENTENCES = re.compile(r"(?<=[.!?;])\s+|\n+")
# A new clause starts where a first-person statement follows a comma or a conjunction.
_EN_CLAUSE_BREAK = re.compile(
    r"\s*(?:,|;|\s-\s)?\s*\b(?:and|but|also|so|plus)\b\s+(?=(?:i|i'm|i’m|my|call me|remember)\b)"
    r"|\s*[,;]\s*(?=(?:i|i'm|i’m|my|call me|remember)\b)",
    re.IGNORECASE,
)
_EN_FILLER = re.compile(
    r"^(?:(?:hi|hello|hey|ok|okay|so|well|also|and|but|actually|btw|by the way|fyi|oh|just so you know|"
    r"for the record|for context|please|just)\b[\s,:!-]*)+",
    re.IGNORECASE,
)
_EN_QUESTION_START = re.compile(
    r"^(?:what|where|who|whom|whose|which|when|why|how|do|does|did|can|could|would|will|should|shall|is|"
    r"am|are|was|were|have|has|may|might)\b",
    re.IGNORECASE,
)
# Objects that only point elsewhere ("I like that", "I work on it") say nothing on their own.
_EN_VAGUE_OBJECT = re.compile(
    r"^(?:(?:on|at|in|with|for|about|to|from)\s+)?"
    r"(?:it|this|that|these|those|them|you|your|yours|so|too|a lot|much|more|here|there)\b",
    re.IGNORECASE,
)
# "my question is …" describes the conversation, not the user.
_EN_NOT_ABOUT_USER = {
    "question", "questions", "query", "problem", "issue", "point", "guess", "bad", "mistake", "answer",
    "pleasure", "turn", "last question", "next question", "first question", "follow-up", "request",
}
_EN_SWAPS = (
    (re.compile(r"\bI am\b|\bI'm\b|\bI’m\b"), "they are"),
    (re.compile(r"\bI was\b"), "they were"),
    (re.compile(r"\bI've\b|\bI’ve\b"), "they have"),
    (re.compile(r"\bI'd\b|\bI’d\b"), "they would"),
    (re.compile(r"\bI'll\b|\bI’ll\b"), "they will"),
    (re.compile(r"\bI\b"), "they"),
    (re.compile(r"\bmy\b", re.IGNORECASE), "their"),
    (re.compile(r"\bmine\b", re.IGNORECASE), "theirs"),
    (re.compile(r"\bmyself\b", re.IGNORECASE), "themselves"),
    (re.compile(r"\bme\b", re.IGNORECASE), "them"),
)

_IM = r"(?:i\s+am|i'm|i’m)"
_EN_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (
        re.compile(r"^my\s+(?P<noun>[a-z][\w'’-]*(?:\s+[a-z][\w'’-]*){0,2}?)\s+(?P<verb>is|are|was|'s|’s)\s+(?P<obj>.+)$", re.I),
        lambda m: f"The user's {m['noun'].lower()} {_en_verb(m['verb'])} {_third(m['obj'])}",
    ),
    (
        re.compile(r"^i\s+(?:currently\s+|now\s+|also\s+)?work\s+(?P<prep>on|at|for|in|as|with)\s+(?P<obj>.+)$", re.I),
        lambda m: f"The user works {m['prep'].lower()} {_third(m['obj'])}",
    ),
    (
        re.compile(
            rf"^{_IM}\s+(?:currently\s+|now\s+|also\s+)?(?P<verb>working|building|writing|developing|studying|"
            r"researching|learning)\s+(?P<obj>.+)$",
            re.I,
        ),
        lambda m: f"The user is {m['verb'].lower()} {_third(m['obj'])}",
    ),
    (
        re.compile(
            r"^i\s+(?:really\s+|generally\s+|usually\s+|also\s+|much\s+|strongly\s+)?"
            r"(?P<verb>prefer|like|love|enjoy|dislike|hate|use|speak)\s+(?P<obj>.+)$",
            re.I,
        ),
        lambda m: f"The user {_en_third_person(m['verb'].lower())} {_third(m['obj'])}",
    ),
    (
        re.compile(r"^i\s+(?:do\s+not|don't|don’t)\s+(?P<verb>like|use|want)\s+(?P<obj>.+)$", re.I),
        lambda m: f"The user does not {m['verb'].lower()} {_third(m['obj'])}",
    ),
    (
        re.compile(rf"^{_IM}\s+(?P<article>an?)\s+(?!(?:bit|little|lot)\b)(?P<obj>.+)$", re.I),
        lambda m: f"The user is {m['article'].lower()} {_third(m['obj'])}",
    ),
    (
        re.compile(rf"^{_IM}\s+(?P<prep>from|based\s+in)\s+(?P<obj>.+)$", re.I),
        lambda m: f"The user is {' '.join(m['prep'].lower().split())} {_third(m['obj'])}",
    ),
    (
        re.compile(r"^i\s+(?:currently\s+|now\s+)?live\s+in\s+(?P<obj>.+)$", re.I),
        lambda m: f"The user lives in {_third(m['obj'])}",
    ),
    # An update: "I moved (from Leeds) to Porto" means the user lives in Porto now.
    (
        re.compile(r"^i(?:'ve|’ve|\s+have)?\s+(?:just\s+|recently\s+)?(?:moved|relocated)\s+(?:from\s+.+?\s+)?to\s+(?P<obj>.+)$", re.I),
        lambda m: f"The user lives in {_third(m['obj'])}",
    ),
    (
        re.compile(r"^(?:you\s+can\s+|please\s+)?call\s+me\s+(?P<obj>.+)$", re.I),
        lambda m: f"The user wants to be called {m['obj']}",
    ),
    # "I'm Alice": a capitalised name right after "I'm", and nothing else in the clause.
    (
        re.compile(r"^(?:I\s+am|I'm|I’m)\s+(?P<obj>[A-Z][\w-]+(?:\s+[A-Z][\w-]+)?)$"),
        lambda m: f"The user is {m['obj']}",
    ),
]
_EN_REMEMBER = re.compile(
    r"^(?:please\s+)?(?:remember|don't\s+forget|don’t\s+forget|keep\s+in\s+mind|note)\s*(?:that\b|:)?\s*(?P<obj>.+)$",
    re.I,
)


def _en_verb(verb: str) -> str:
    return "is" if verb.lower() in ("'s", "’s") else verb.lower()


def _en_third_person(verb: str) -> str:
    return verb + "es" if verb.endswith(("s", "sh", "ch")) else verb + "s"


def _third(text: str) -> str:
    for pattern, repl in _EN_SWAPS:
        text = pattern.sub(repl, text)
    return text


def _en_object_ok(obj: str) -> bool:
    obj = obj.strip()
    return bool(obj) and len(obj) <= _MAX_EN_OBJECT and not _EN_VAGUE_OBJECT.match(obj)


def _en_sentence(text: str) -> str:
    text = text.strip().rstrip(".,;:!- ")
    return text[:1].upper() + text[1:] + "."


def _en_clause_fact(clause: str) -> str | None:
    clause = _EN_FILLER.sub("", clause.strip()).strip().rstrip(".!;,")
    if not clause or _EN_QUESTION_START.match(clause):
        return None
    for pattern, render in _EN_RULES:
        m = pattern.match(clause)
        if not m or not _en_object_ok(m["obj"]):
            continue
        if "noun" in m.groupdict() and m["noun"].lower() in _EN_NOT_ABOUT_USER:
            return None
        return _en_sentence(render(m))
    m = _EN_REMEMBER.match(clause)
    if m and _en_object_ok(m["obj"]):
        inner = _en_clause_fact(m["obj"])
        return inner or _en_sentence(f"The user asked to remember: {_third(m['obj'])}")
    return None


def _english_facts(text: str) -> list[str]:
    out = []
    for sentence in _EN_SENTENCES.split(text):
        sentence = sentence.strip()
        if not sentence or sentence.endswith("?"):
            continue
        for clause in _EN_CLAUSE_BREAK.split(sentence):
            fact = _en_clause_fact(clause)
            if fact:
                out.append(fact)
    return out


# -- Chinese -----------------------------------------------------------------------------
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_ZH_SENTENCES = re.compile(r"(?<=[。！？!?；;])|\n+")
_ZH_CLAUSES = re.compile(r"[，,、：:]\s*(?=(?:而且|并且|另外|还有|也|但是|不过)?\s*(?:我|叫我|请记住|记住))")
_ZH_QUESTION = re.compile(r"[?？]\s*$|[吗呢么嘛]\s*[。！!]?\s*$|什么|哪|谁|怎么|怎样|如何|多少|几个|为什么|是否|是不是|有没有")
_ZH_FILLER = re.compile(r"^(?:(?:你好|您好|嗨|哈喽|对了|顺便说一下|顺便说|顺便|另外|还有|而且|并且|也|但是|不过|其实|请)[，,\s]*)+")
_ZH_VAGUE_OBJECT = re.compile(r"^(?:它|它们|这个|那个|这些|那些|这样|那样|你|你的|您|这|那)")
_ZH_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (re.compile(r"^我的(?P<noun>[^，,。是叫在]{1,8})(?P<verb>是|叫)(?P<obj>.+)$"), lambda m: f"用户的{m['noun']}{m['verb']}{_zh_third(m['obj'])}"),
    (
        re.compile(r"^我(?:现在|目前|也)?在(?P<obj>.{1,30}?)(?P<verb>工作|上班|上学|读书|实习|任职)$"),
        lambda m: f"用户在{m['obj']}{m['verb']}",
    ),
    (
        re.compile(r"^我(?:现在|目前|最近|也)?(?:正)?在(?P<verb>做|研究|开发|写|学习|搞)(?P<obj>.+)$"),
        lambda m: f"用户在{m['verb']}{_zh_third(m['obj'])}",
    ),
    # An update: "我换到成都工作了" means the user works in Chengdu now.
    (
        re.compile(r"^我(?:已经|最近|现在)?(?:换到|调到|转到|搬到|去了)(?P<obj>.{1,30}?)(?P<verb>工作|上班|上学|读书)了?$"),
        lambda m: f"用户在{m['obj']}{m['verb']}",
    ),
    (re.compile(r"^我(?:已经|最近)?(?:搬到|搬去)(?P<obj>.{1,30}?)(?:住)?了?$"), lambda m: f"用户住在{m['obj']}"),
    (re.compile(r"^我(?:现在|目前)?(?P<verb>从事|负责|研究)(?P<obj>.+)$"), lambda m: f"用户{m['verb']}{_zh_third(m['obj'])}"),
    (
        re.compile(r"^我(?:比较|更|很|非常|特别|最|也)?(?P<verb>喜欢|偏好|爱|讨厌|不喜欢|习惯)(?P<obj>.+)$"),
        lambda m: f"用户{m['verb']}{_zh_third(m['obj'])}",
    ),
    (re.compile(r"^我(?:现在|目前)?(?P<verb>住在|来自|生活在)(?P<obj>.+)$"), lambda m: f"用户{m['verb']}{m['obj']}"),
    (re.compile(r"^我(?:的名字)?叫(?P<obj>.+)$"), lambda m: f"用户叫{m['obj']}"),
    (re.compile(r"^(?:你可以|请)?叫我(?P<obj>.+)$"), lambda m: f"用户希望被称为{m['obj']}"),
    # "我是说" (I mean) and "我是在…" are not statements about who the user is.
    (re.compile(r"^我(?:也)?是(?![说想在不否])(?P<obj>.+)$"), lambda m: f"用户是{_zh_third(m['obj'])}"),
]
_ZH_REMEMBER = re.compile(r"^(?:请|麻烦)?(?:你)?(?:记住|记得|别忘了|不要忘记)[，,：:]?(?P<obj>.+)$")


def _zh_third(text: str) -> str:
    text = text.replace("我的", "自己的")
    return re.sub(r"我(?!们)", "用户", text)


def _zh_object_ok(obj: str) -> bool:
    obj = obj.strip()
    return bool(obj) and len(obj) <= _MAX_ZH_OBJECT and not _ZH_VAGUE_OBJECT.match(obj)


def _zh_sentence(text: str) -> str:
    return text.strip().rstrip("。！!；;，,、 ") + "。"


def _zh_clause_fact(clause: str) -> str | None:
    clause = _ZH_FILLER.sub("", clause.strip()).strip().rstrip("。！!；;，, ")
    if not clause:
        return None
    m = _ZH_REMEMBER.match(clause)
    if m and _zh_object_ok(m["obj"]):
        inner = _zh_clause_fact(m["obj"])
        return inner or _zh_sentence(f"用户要求记住：{_zh_third(m['obj'])}")
    for pattern, render in _ZH_RULES:
        m = pattern.match(clause)
        if m and _zh_object_ok(m["obj"]):
            return _zh_sentence(render(m))
    return None


def _chinese_facts(text: str) -> list[str]:
    out = []
    for sentence in _ZH_SENTENCES.split(text):
        sentence = sentence.strip()
        if not sentence or not _CJK.search(sentence) or _ZH_QUESTION.search(sentence):
            continue
        for clause in _ZH_CLAUSES.split(sentence):
            fact = _zh_clause_fact(clause)
            if fact:
                out.append(fact)
    return out


def extract_facts(text: str) -> list[str]:
    """Facts the user states about themselves or their work, in the third person.

    English and Chinese first-person statements are recognised: "my project is about X",
    "I work on/at X", "I prefer X", "I am a X", "call me X", "I live in X", "remember that
    X"; "我的项目是关于…", "我在…工作", "我喜欢…", "我是…", "我叫…", "记住…".
    Questions yield nothing, and neither do statements whose object only points elsewhere
    ("I like that"). Precision over recall: anything unclear is left out.

    Args:
        text: One user message.

    Returns:
        Normalised sentences without repeats, e.g.
        ``["The user's project is about solar panels."]`` or ``["用户的项目是关于太阳能的。"]``.

    Example:
        >>> extract_facts("Hi! My project is about solar panels, and I prefer short answers.")
        ["The user's project is about solar panels.", 'The user prefers short answers.']
        >>> extract_facts("What is my project about?")
        []
    """
    if not text or not text.strip():
        return []
    facts = _chinese_facts(text) if _CJK.search(text) else []
    facts += _english_facts(text)
    seen: set[str] = set()
    out = []
    for fact in facts:
        if fact not in seen:
            seen.add(fact)
            out.append(fact)
    return out
