"""The extractive answerer: no language model, just the most relevant retrieved sentences.

Used when no generator can be loaded (offline, no weights) so ``ragmem ask`` still answers
from the knowledge base, with citations, and says plainly that it did so.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from rag_memory.schema import Source
from rag_memory.text.language import is_chinese, is_cjk_token, lexical_tokens

_SENTENCE = re.compile(r"[^。！？；!?\n]+?(?:[。！？；!?]+|\.(?=\s|$)|$)", re.UNICODE)
_STOP = frozenset(
    "a an the is are was were be been of to in on for and or but with by as at it its this that these those "
    "what which who whom how why when where does do did can could should would will i you he she we they my "
    "your our their me us them about from into if then than so not no yes please tell explain 的 了 是 吗 呢 "
    "什么 怎么 如何 为什么 哪 哪些 在 和 与 吧 啊 我 你 他 她 它".split()
)


def _terms(text: str) -> list[str]:
    toks = [t for t in lexical_tokens(text) if t not in _STOP]
    cjk = [t for t in toks if is_cjk_token(t)]
    return toks + [a + b for a, b in zip(cjk, cjk[1:], strict=False)]


_FENCE = re.compile(r"```.*?(?:```|$)", re.DOTALL)


def _is_prose(sentence: str) -> bool:
    """Whether a sentence reads as prose, not a command, a table row or a code fragment."""
    if sentence.startswith(("$", "|", "{", "<", ".venv/")):
        return False
    cjk = sum(1 for ch in sentence if "\u3400" <= ch <= "\u9fff")
    if cjk >= 6:
        return True
    words = sentence.split()
    letters = sum(ch.isalpha() or ch.isspace() for ch in sentence)
    return len(words) >= 4 and letters >= 0.75 * len(sentence)


_BLOCK_START = re.compile(r"(#{1,6}\s|[-*+]\s|\d+[.)]\s|\|)")
_CJK_CHAR = re.compile(r"[\u3000-\u9fff\uff00-\uffef]")


def _join(lines: list[str]) -> str:
    """Undo hard wrapping: a space between Latin words, nothing between CJK characters."""
    out = lines[0]
    for line in lines[1:]:
        glue = "" if _CJK_CHAR.match(out[-1:]) or _CJK_CHAR.match(line[:1]) else " "
        out += glue + line
    return out


def _blocks(text: str) -> list[str]:
    """Paragraphs and list items, hard-wrapped lines joined; headings and code left out."""
    blocks: list[str] = []
    for para in re.split(r"\n\s*\n", _FENCE.sub("\n\n", text)):
        current: list[str] = []
        for line in (raw.strip() for raw in para.splitlines()):
            if not line:
                continue
            if _BLOCK_START.match(line) and current:
                blocks.append(_join(current))
                current = []
            current.append(line)
        if current:
            blocks.append(_join(current))
    return [
        re.sub(r"^([-*+>]|\d+[.)])\s+", "", b).strip()
        for b in blocks
        if not b.startswith("#")
    ]


def split_sentences(text: str) -> list[str]:
    """The prose sentences of English or Chinese text (on 。！？；!? and '. ').

    Hard-wrapped lines are joined first. Headings, fenced code, shell lines and table rows are
    left out: quoted in an answer they read as noise, even when they share the question's words.
    """
    out = []
    for block in _blocks(text):
        for match in _SENTENCE.finditer(block):
            sentence = match.group(0).strip()
            if len(sentence) > 3 and _is_prose(sentence):
                out.append(sentence)
    return out


class ExtractiveAnswerer:
    """Answer with the retrieved sentences that share the most (rare) terms with the question.

    Args:
        max_sentences: Sentences in the answer.
    """

    backend = "extractive"
    model_id = "extractive"

    def __init__(self, *, max_sentences: int = 3) -> None:
        self.max_sentences = max_sentences

    def answer(self, question: str, sources: Sequence[Source]) -> str:
        """Sentences from ``sources`` with their ``[n]`` citations, best-matching first."""
        q_terms = set(_terms(question))
        candidates: list[tuple[float, int, int, str]] = []
        # A past exchange is a transcript of an earlier answer: quoting it would only repeat
        # that answer. Documents and stated facts are what an extract can stand on.
        usable = [s for s in sources if s.memory_kind != "exchange"]
        sentences = [(s, i, sent) for s in usable for i, sent in enumerate(split_sentences(s.text))]
        df = Counter(t for _, _, sent in sentences for t in set(_terms(sent)))
        n = max(len(sentences), 1)
        for source, pos, sent in sentences:
            terms = set(_terms(sent))
            overlap = sum(math.log(1 + n / df[t]) for t in terms & q_terms)
            if overlap <= 0:
                continue
            # Prefer better-ranked sources and earlier sentences when overlap ties.
            score = overlap * (1 + max(source.score, 0)) - 0.01 * pos
            candidates.append((score, source.n, pos, sent))
        if not candidates:
            # Nothing shares a term (e.g. a paraphrase): give the top source's opening.
            best = [s for s in sources if s.kind == "document"][:1] or list(sources[:1])
            candidates = [(0.0, s.n, 0, sent) for s in best for sent in split_sentences(s.text)[:2]]
        picked = []
        seen: set[str] = set()
        for cand in sorted(candidates, key=lambda c: (-c[0], c[1], c[2])):  # ties: better-ranked source
            # The same sentence can come from two chunks (overlap) or two files (a quote).
            key = re.sub(r"(\\n|\W)+", " ", cand[3]).strip().lower()
            if key in seen:
                continue
            seen.add(key)
            picked.append(cand)
            if len(picked) == self.max_sentences:
                break
        joiner = "" if is_chinese(question) else " "
        return joiner.join(f"{sent} [{n}]" for _, n, _, sent in picked)
