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


def _heuristic(question: str, recent: Sequence[Turn]) -> str:
    previous = _previous_questions(recent, question)
    if not previous:
        # No earlier question: the last thing said is the best context there is.
        said = [t.content for t in _history(recent, question) if t.content.strip()]
        if not said:
            return question
        previous = [said[-1]]
    context = _clip(" ".join(previous), _MAX_PREVIOUS_CHARS)
    q = question.strip()
    if _is_chinese(q):
        return f"{q}（接上一个问题：{context}）"
    return f"{q} (following up on: {context})"


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
