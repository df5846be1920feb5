"""Turn a follow-up question into one a retriever can use on its own.

"And changed files?" retrieves nothing useful; "What happens to deleted files on re-ingest?"
does. ``is_follow_up`` spots questions that lean on the conversation (a leading "and",
"what about", "那…", a trailing "呢", a pronoun with nothing in the question for it to point
at); ``condense_question`` rewrites those with an LLM when one is given, and otherwise
appends the earlier question so its key terms reach the retriever.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence

from rag_memory.errors import RagMemoryError
from rag_memory.schema import Turn

log = logging.getLogger(__name__)

__all__ = ["condense_question", "condense_prompt", "is_follow_up"]

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_WORD = re.compile(r"[^\W_]+(?:['’.\-][^\W_]+)*", re.UNICODE)

# -- English -----------------------------------------------------------------------------
# Openers that only make sense as a continuation, whatever follows them.
_EN_CONTINUATIONS = (
    "and", "also", "but", "what about", "how about", "what else", "anything else", "same for",
    "same with", "what if", "and if", "or", "then", "plus", "as well as",
)
# Openers that signal a follow-up only in a short question ("Why?" vs "Why does X do Y?").
_EN_SHORT_OPENERS = ("why", "so", "how so", "really", "ok", "okay", "then", "which one", "like what")
_EN_SHORT_WORDS = 4
_EN_WHOLE = {
    "why", "why not", "how", "how so", "really", "example", "examples", "an example", "for example",
    "more", "more details", "details", "elaborate", "continue", "go on", "tell me more", "explain more",
    "explain further", "such as", "like what", "and", "so", "ok", "okay", "which one", "and then",
}
_EN_PRONOUNS = {"it", "its", "they", "them", "their", "theirs", "this", "these", "those", "he", "she", "him",
                "her", "his", "hers", "itself", "themselves"}
# "that" is a pronoun in "what does that mean" / "why is that", a conjunction in "is it true that X".
_EN_THAT_BEFORE = {"is", "was", "does", "did", "do", "about", "of", "with", "for", "explain", "mean", "like",
                   "on", "in", "to", "use", "change", "fix", "try", "and"}
# Dummy "it": "is it possible to ...", "it is recommended to ..." point at nothing earlier.
_EN_DUMMY_IT = re.compile(
    r"\bit\s+(?:is|was|'s|’s)\s+(?:possible|necessary|true|better|worth|ok|okay|safe|recommended|required|"
    r"a good idea|faster|slower|normal)\b|\bis\s+it\s+(?:possible|necessary|true|better|worth|ok|okay|safe|"
    r"recommended|required|a good idea|faster|slower|normal)\b|\bhow\s+long\s+does\s+it\s+take\b",
    re.IGNORECASE,
)
_EN_STOPWORDS = {
    "a", "an", "the", "is", "are", "was", "were", "be", "been", "am", "do", "does", "did", "can", "could",
    "would", "will", "should", "shall", "may", "might", "must", "have", "has", "had", "what", "which",
    "who", "whom", "whose", "when", "where", "why", "how", "i", "you", "we", "me", "my", "your", "our",
    "us", "to", "of", "in", "on", "at", "for", "with", "by", "from", "about", "as", "into", "and", "or",
    "but", "if", "so", "not", "no", "yes", "there", "here", "then", "than", "too", "very", "just", "also",
    "please", "some", "any", "more", "most", "much", "many", "that", "s", "t", "don", "doesn",
    "isn", "aren", "get", "make", "work", "works", "use", "used", "using", "mean", "means",
}
_EN_PRONOUN_WORDS = 12
_EN_SUBJECT_BEFORE = 2

# -- Chinese -----------------------------------------------------------------------------
_ZH_OPENERS = ("那么", "那", "还有", "另外", "而且", "所以", "但是", "可是", "不过", "然后", "那如果", "如果是", "换成")
_ZH_PRONOUNS = ("它们", "它", "这个", "那个", "这些", "那些", "这样", "那样", "这种", "那种", "他们", "她们", "他", "她",
                "其", "此", "上面", "上述", "刚才")
_ZH_WHOLE = {"为什么", "为啥", "怎么说", "比如", "比如呢", "举个例子", "例如", "详细说说", "详细点", "继续", "然后呢",
             "还有呢", "还有吗", "真的吗", "是吗", "为什么呢", "怎么做", "具体呢", "具体点", "展开说说", "还有别的吗"}
_ZH_SHORT_NE = 12  # a question ending in 呢 is a follow-up when it is this short (characters)
_ZH_PRONOUN_REACH = 4  # a pronoun this close to the start has nothing before it to point at
_ZH_SHORT_PRONOUN = 10

_TRAILING = "?？!！。.,，;；:： \t\n"


def _is_chinese(text: str) -> bool:
    return bool(_CJK.search(text))


def _en_follow_up(question: str) -> bool:
    flat = " ".join(_WORD.findall(question.lower().replace("’", "'")))
    if not flat:
        return False
    if flat in _EN_WHOLE:
        return True
    words = flat.split()
    if any(flat == p or flat.startswith(p + " ") for p in _EN_CONTINUATIONS):
        return True
    if len(words) <= _EN_SHORT_WORDS and any(flat == p or flat.startswith(p + " ") for p in _EN_SHORT_OPENERS):
        return True
    if len(words) > _EN_PRONOUN_WORDS:
        return False
    masked = _EN_DUMMY_IT.sub(" ", question.lower())
    words = [w.lower() for w in _WORD.findall(masked)]
    content_before = 0
    for i, word in enumerate(words):
        is_pronoun = word in _EN_PRONOUNS or (
            word == "that" and (i == len(words) - 1 or (i > 0 and words[i - 1] in _EN_THAT_BEFORE))
        )
        if is_pronoun:
            # With a subject named before it, the pronoun most likely points at that subject.
            return content_before < _EN_SUBJECT_BEFORE
        if word not in _EN_STOPWORDS:
            content_before += 1
    return False


def _zh_follow_up(question: str) -> bool:
    q = question.strip().strip(_TRAILING)
    if not q:
        return False
    if q in _ZH_WHOLE:
        return True
    if q.startswith(_ZH_OPENERS):
        return True
    if q.endswith("呢") and len(q) <= _ZH_SHORT_NE:
        return True
    for pronoun in _ZH_PRONOUNS:
        at = q.find(pronoun)
        if at != -1 and (at <= _ZH_PRONOUN_REACH or len(q) <= _ZH_SHORT_PRONOUN):
            return True
    return False


def is_follow_up(question: str) -> bool:
    """Whether a question probably leans on the conversation before it.

    English: a question opening with "and", "also", "but", "what about", "how about"...;
    a short one opening with "why" or "so"; a bare "Why?" or "Tell me more"; or a short
    question with a pronoun (it, they, this, that...) that nothing before it in the question
    could refer to. Chinese: opening with "那", "还有", "但是"...; a short question ending in
    "呢"; a bare "为什么"; or a pronoun (它, 这个, 那个...) at or near the start.

    Args:
        question: The user's question as typed.

    Returns:
        True for follow-ups like "And changed files?" or "那 PDF 呢？"; False for standalone
        questions like "How does ragmem chunk PDF files?".
    """
    if not question or not question.strip():
        return False
    if _is_chinese(question) and _zh_follow_up(question):
        return True
    return _en_follow_up(question)


# -- condensing --------------------------------------------------------------------------
_MAX_TURN_CHARS = 500
_PROMPT_TURNS = 6
_MAX_PREVIOUS_CHARS = 300
_ANSWER_OPENERS = re.compile(
    r"^(?:yes|no|sure|certainly|of course|absolutely|as an ai|i'm sorry|i am sorry|sorry|i cannot|i can't|"
    r"here is|here's|the answer|answer\s*:|是的|不是|好的|当然|抱歉|对不起|答案|回答[:：])",
    re.IGNORECASE,
)
_LABELS = re.compile(
    r"^(?:standalone question|rewritten question|question|rewrite|独立问题|改写后的问题|改写|问题)\s*[:：]\s*",
    re.IGNORECASE,
)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def condense_prompt(question: str, recent: Sequence[Turn]) -> str:
    """The prompt asking an LLM to rewrite ``question`` as a standalone question.

    Args:
        question: The follow-up question.
        recent: The conversation so far, chronological; only the last few turns are used.

    Returns:
        An instruction, the last turns (each clipped), the follow-up and an answer cue.
    """
    lines = [
        "Rewrite the follow-up question so that it can be understood without the conversation:"
        " replace pronouns and references with what they refer to, and keep every detail the"
        " follow-up asks about. Do not answer it. Reply with the rewritten question only,"
        " on one line.",
    ]
    if _is_chinese(question):
        lines.append("The follow-up is in Chinese: write the standalone question in Chinese (用中文改写问题).")
    else:
        lines.append("Write the standalone question in the same language as the follow-up.")
    lines += ["", "Conversation:"]
    labels = {"user": "User", "assistant": "Assistant", "system": "System"}
    for turn in _history(recent, question)[-_PROMPT_TURNS:]:
        lines.append(f"{labels.get(turn.role, turn.role)}: {_clip(turn.content, _MAX_TURN_CHARS)}")
    lines += ["", f"Follow-up question: {question.strip()}", "Standalone question:"]
    return "\n".join(lines)


def _history(recent: Sequence[Turn], question: str) -> list[Turn]:
    """The turns before the question (the question itself may already be stored last)."""
    turns = list(recent)
    while turns and turns[-1].role == "user" and turns[-1].content.strip() == question.strip():
        turns.pop()
    return turns


def _previous_questions(recent: Sequence[Turn], question: str) -> list[str]:
    """The earlier question(s) the follow-up builds on, oldest first.

    The nearest earlier user question, and when that is itself a follow-up, the nearest
    standalone one before it as well, so a chain of follow-ups keeps the original subject.
    """
    asked = [t.content.strip() for t in _history(recent, question) if t.role == "user" and t.content.strip()]
    if not asked:
        return []
    chain = [asked[-1]]
    if is_follow_up(asked[-1]):
        for earlier in reversed(asked[:-1]):
            if not is_follow_up(earlier):
                chain.insert(0, earlier)
                break
    return chain


_EN_OPENER = re.compile(
    r"^\s*(?:(?:and|also|but|or|plus|then|so)\s+)*(?:what about|how about|same for|same with|what if|as well as)?\s*[,:]?\s*",
    re.IGNORECASE,
)
_ZH_OPENER = re.compile(r"^\s*(?:那么|那如果|那|还有|另外|而且|所以|但是|可是|不过|然后|换成|如果是)\s*")
_ZH_TAIL = re.compile(r"\s*(?:呢|吗|啊|呀|的呢)?\s*[?？!！。.,，\s]*$")
_EN_QUESTION_WORDS = {"what", "who", "whom", "whose", "when", "where", "why", "how", "which", "is", "are", "was",
                      "were", "does", "do", "did", "can", "could", "should", "would", "will", "has", "have", "in",
                      "on", "at", "during", "after", "before", "to", "from"}
_EN_PREPOSITIONS = {"in", "on", "at", "during", "after", "before", "to", "from"}
_ZH_QUESTION = re.compile(r"什么|谁|哪|几|多少|怎么|如何|为什么|为何|吗|是否|何时|多久|多大|多长")
_ZH_REQUEST = re.compile(r"^(?:请问|请|能不能|能否|可以)?(?:给我)?(?:介绍一下|介绍|说说|讲讲|解释一下)?(?:什么是)?")
_ZH_VERBS = re.compile(r"有|是|的|怎么|如何|能|可以|会|为什么|在|要|用|被|由|和|与|属于|位于|叫")


def _en_words(text: str) -> list[str]:
    return _WORD.findall(text)


def _en_content(words: Sequence[str]) -> list[str]:
    return [w for w in words if w.lower() not in _EN_STOPWORDS and w.lower() not in _EN_PRONOUNS]


def _has_pronoun(remainder: str) -> bool:
    if _is_chinese(remainder):
        return any(p in remainder for p in _ZH_PRONOUNS)
    masked = _EN_DUMMY_IT.sub(" ", remainder.lower())
    return any(w in _EN_PRONOUNS for w in _WORD.findall(masked))


def _strip_opener(question: str) -> str:
    q = question.strip()
    if _is_chinese(q):
        return _ZH_TAIL.sub("", _ZH_OPENER.sub("", q, count=1)).strip()
    return _EN_OPENER.sub("", q, count=1).strip().rstrip("?？.!").strip()


def _is_full_question(remainder: str) -> bool:
    """A follow-up that is a question on its own once "and"/"那" is taken off."""
    if _is_chinese(remainder):
        return bool(_ZH_QUESTION.search(remainder)) and len(_CJK.findall(remainder)) >= 5
    words = _en_words(remainder)
    # "approximately how many ...", "in which year ...": a question word among the first three.
    asks = any(w.lower() in _EN_QUESTION_WORDS - _EN_PREPOSITIONS for w in words[:3]) or (
        bool(words) and words[0].lower() in _EN_QUESTION_WORDS
    )
    return asks and len(_en_content(words)) >= 2


_EN_NAME = re.compile(r"\b[A-Z][\w'’-]*(?:\s+(?:(?:of|the|and|de|von|van|for)\s+)?[A-Z][\w'’-]*)*")


def _en_subject(previous: str, *, names_only: bool = False) -> tuple[int, int] | None:
    """Where the previous question's subject is: its longest run of capitalised words (past
    the first word), else its first run of content words; as a (start, end) span."""
    spans = [(m.start(), m.end()) for m in _EN_NAME.finditer(previous) if m.start() > 0]
    if spans:
        return max(spans, key=lambda sp: sp[1] - sp[0])
    if names_only:
        return None
    run: list[re.Match[str]] = []
    for m in _WORD.finditer(previous):
        if m.group().lower() in _EN_STOPWORDS:
            if run:
                break
            continue
        run.append(m)
    return (run[0].start(), run[-1].end()) if run else None


def _zh_subject(previous: str) -> tuple[int, int] | None:
    """The previous Chinese question's subject: a 《title》, else what comes before its first verb."""
    title = re.search(r"《[^》]+》", previous)
    if title:
        return title.start(), title.end()
    latin = re.search(r"[A-Za-z][A-Za-z0-9.+#-]*(?:\s+[A-Za-z][A-Za-z0-9.+#-]*)*", previous)
    if latin:  # "Promise 对象…", "什么是 BCPL": a Latin name is the subject
        return latin.start(), latin.end()
    q = previous.strip()
    lead = _ZH_REQUEST.match(q)
    if lead:
        m = _ZH_VERBS.search(q, lead.end() + 1)
        return (lead.end(), m.start()) if m and m.start() > lead.end() else None
    m = _ZH_VERBS.search(q, 1)
    if m and m.start() >= 1:
        return 0, m.start()
    return None


def _substitute(previous: str, fragment: str) -> str | None:
    """The previous question with its subject replaced by ``fragment`` ("And changed files?"
    after "What happens to deleted files on re-ingest?" is "What happens to changed files on
    re-ingest?"); None when no subject is found."""
    if _is_chinese(previous):
        common = _longest_common(fragment, previous)
        if len(common) >= 2:
            # The shared part anchors the swap: what the fragment puts before it replaces
            # as many characters before it in the previous question.
            at = previous.find(common)
            before = fragment.find(common)
            start = max(at - before, 0)
            return previous[:start] + fragment + previous[at + len(common) + (len(fragment) - before - len(common)):]
        span = _zh_subject(previous)
        if span is None:
            return None
        return previous[: span[0]] + fragment + previous[span[1] :]
    frag_words = {_stem(w) for w in _en_content(_en_words(fragment))}
    words = list(_WORD.finditer(previous))
    for i, m in enumerate(words):
        if _stem(m.group()) in frag_words and m.group().lower() not in _EN_STOPWORDS:
            # The shared word anchors the swap: replace the run of content words around it.
            lo = i
            while lo > 0 and words[lo - 1].group().lower() not in _EN_STOPWORDS:
                lo -= 1
            hi = i
            while hi + 1 < len(words) and words[hi + 1].group().lower() not in _EN_STOPWORDS:
                hi += 1
            return previous[: words[lo].start()] + fragment + previous[words[hi].end() :]
    span = _en_subject(previous)
    if span is None:
        return None
    return previous[: span[0]] + fragment + previous[span[1] :]


def _longest_common(a: str, b: str) -> str:
    """The longest run of CJK characters found in both texts."""
    best = ""
    for i in range(len(a)):
        for j in range(i + len(best) + 1, len(a) + 1):
            piece = a[i:j]
            if not _CJK.fullmatch(piece[-1]) or piece not in b:
                break
            if len(piece) > len(best) and all(_CJK.fullmatch(ch) for ch in piece):
                best = piece
    return best


def _stem(word: str) -> str:
    from rag_memory.text.stemmer import porter_stem

    w = word.lower()
    return porter_stem(w) if w.isascii() and w.isalpha() else w


def _replace_pronoun(remainder: str, previous: str) -> str | None:
    """``remainder`` with its pronoun replaced by the previous question's subject."""
    if _is_chinese(remainder):
        span = _zh_subject(previous) if _is_chinese(previous) else None
        if span is None:
            return None
        subject = previous[span[0] : span[1]]
        for p in _ZH_PRONOUNS:
            if p in remainder:
                return remainder.replace(p, subject, 1)
        return None
    span = _en_subject(previous, names_only=True)
    if span is None:
        return None
    subject = previous[span[0] : span[1]]
    masked = _EN_DUMMY_IT.sub(lambda m: "\0" * len(m.group()), remainder)
    for m in _WORD.finditer(masked):
        if m.group().lower() in _EN_PRONOUNS:
            return remainder[: m.start()] + subject + remainder[m.end() :]
    return None


def _appended(question: str, previous: list[str]) -> str:
    context = _clip(" ".join(previous), _MAX_PREVIOUS_CHARS)
    q = question.strip()
    if _is_chinese(q):
        return f"{q}（接上一个问题：{context}）"
    return f"{q} (following up on: {context})"


def _heuristic(question: str, recent: Sequence[Turn]) -> str:
    """Condense without a model.

    - A follow-up that is a whole question once its "and"/"那" is dropped keeps only itself.
    - One that names a new subject in a fragment ("And changed files?", "那 Set 呢？") takes the
      previous question with that subject swapped in, so it borrows only what it leaves out.
    - One that points back with a pronoun ("When was it built?") gets the previous question's
      subject in the pronoun's place; a bare "Why?" or "what about it?" (nothing of its own)
      has the previous question appended.
    """
    previous = _previous_questions(recent, question)
    if not previous:
        # No earlier question: the last thing said is the best context there is.
        said = [t.content for t in _history(recent, question) if t.content.strip()]
        return _appended(question, [said[-1]]) if said else question
    anchor = previous[0] if len(previous) > 1 else previous[-1]
    if len(previous) > 1:
        # A chain: the last follow-up, condensed against the standalone question before it.
        anchor = _heuristic_one(previous[-1], previous[0]) or previous[0]
    return _heuristic_one(question, anchor) or _appended(question, previous)


def _heuristic_one(question: str, previous: str) -> str | None:
    remainder = _strip_opener(question)
    if not remainder:
        return None
    own = _en_content(_en_words(remainder)) if not _is_chinese(remainder) else _CJK.findall(remainder) + [
        w for w in _en_words(remainder) if w.isascii()
    ]
    if _has_pronoun(remainder):
        if not own:
            return None  # "what about it?": nothing of its own, so the whole previous question
        swapped = _replace_pronoun(remainder, previous)
        return _finish(swapped, question) if swapped else None
    if not own:
        return None
    if _is_full_question(remainder):
        return _finish(remainder, question)
    if remainder.lower() in _EN_WHOLE or remainder in _ZH_WHOLE:
        return None
    swapped = _substitute(previous, remainder)
    return swapped


def _finish(text: str, question: str) -> str:
    text = text.strip()
    if not _is_chinese(text):
        text = text[:1].upper() + text[1:]
    if question.strip().endswith(("?", "？")) and not text.endswith(("?", "？")):
        text += "？" if _is_chinese(text) else "?"
    return text


def _content_lines(output: str) -> list[str]:
    return [line.strip() for line in output.strip().splitlines() if line.strip() and not _LABELS.fullmatch(line.strip())]


def _clean(output: str) -> str:
    lines = _content_lines(output)
    if not lines:
        return ""
    text = _LABELS.sub("", lines[0]).strip()
    return text.strip("\"'“”‘’「」` ").strip()


def _usable(rewritten: str, question: str, fallback: str, raw: str) -> bool:
    if not rewritten:
        return False
    if len(rewritten) > 3 * len(fallback):
        return False
    if _ANSWER_OPENERS.match(rewritten):
        return False
    # More than one line of content, or several sentences, is an answer, not a question.
    if len(_content_lines(raw)) > 1:
        return False
    if len(re.findall(r"[.!。！](?=\s*\S)", rewritten)) >= 2:
        return False
    if question.strip().endswith(("?", "？")) and not rewritten.endswith(("?", "？")):
        return False
    if _is_chinese(question) and not _is_chinese(rewritten):
        return False
    return True


def condense_question(
    question: str,
    recent: Sequence[Turn],
    *,
    rewrite: Callable[[str], str] | None = None,
) -> str:
    """A standalone version of ``question``, for retrieval.

    A standalone question, or one asked with no conversation before it, comes back
    unchanged. A follow-up is rewritten by ``rewrite`` (an LLM) when given; its output is
    kept only if it looks like a question in the follow-up's language and is not more than
    three times as long as the heuristic version. Otherwise the heuristic appends the
    earlier question, so its key terms reach the retriever:
    ``"And changed files? (following up on: What happens to deleted files on re-ingest?)"``.

    Args:
        question: The user's question as typed.
        recent: The session's recent turns, chronological; the question itself may be last.
        rewrite: Takes a prompt and returns the LLM's text.

    Returns:
        The question to retrieve with.
    """
    if not question or not question.strip() or not _history(recent, question) or not is_follow_up(question):
        return question
    fallback = _heuristic(question, recent)
    if rewrite is None:
        return fallback
    try:
        raw = rewrite(condense_prompt(question, recent)) or ""
    except RagMemoryError as exc:
        log.warning("could not rewrite the follow-up %r with the LLM (%s); using the heuristic", question, exc)
        return fallback
    rewritten = _clean(raw)
    if _usable(rewritten, question, fallback, raw):
        return rewritten
    log.info("the LLM's rewrite of %r was not usable (%r); using the heuristic", question, raw[:200])
    return fallback
