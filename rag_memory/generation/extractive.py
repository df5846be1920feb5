"""The extractive answerer: no language model, just the most relevant retrieved sentences.

Used when no generator can be loaded (offline, no weights) so ``ragmem ask`` still answers
from the knowledge base, with citations, and says plainly that it did so.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from rag_memory.lang import is_chinese, is_cjk_token, lexical_tokens
from rag_memory.schema import Source

_SENTENCE = re.compile(r"[^。！？；!?\n]+(?:[。！？；!?]+|\.(?=\s|$)|$)|[^\n]+", re.UNICODE)
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


def split_sentences(text: str) -> list[str]:
    """Sentences of English or Chinese text (on 。！？；!? and '. ')."""
    out = []
    for line in text.splitlines():
        line = line.strip().lstrip("#>*- ").strip()
        if not line:
            continue
        for match in _SENTENCE.finditer(line):
            sentence = match.group(0).strip()
            if len(sentence) > 3:
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
        sentences = [(s, i, sent) for s in sources for i, sent in enumerate(split_sentences(s.text))]
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
        picked = sorted(candidates, reverse=True)[: self.max_sentences]
        joiner = "" if is_chinese(question) else " "
        return joiner.join(f"{sent} [{n}]" for _, n, _, sent in picked)
