"""The extractive answerer: no language model, just the retrieved sentences that answer best.

Used when no generator can be loaded (offline, no weights) so ``ragmem ask`` still answers
from the knowledge base, with citations, and says plainly that it did so.

How an answer is put together:

1. Each source is cleaned of Markdown and HTML debris (comments, link definitions, tags, link
   and emphasis syntax) and cut into blocks: paragraphs, list items, fenced code, headings
   and table rows (the last two are never quoted).
2. Paragraphs are split into sentences: English by a rule splitter (a stop, space and a capital
   or digit; not after abbreviations such as "e.g.", "vs.", "Dr.", "p.m." or initials; decimals
   hold no stop-space; Wikipedia's "[citation needed]" and ":12" page marks stay on their
   sentence), with inline code masked first so a ``?`` inside backticks ends nothing; Chinese
   on 。！？； with closing quotes kept on their sentence.
   Sentences that are themselves questions are never quoted.
3. A sentence that introduces code ("run the following command:") carries the code with it;
   one that introduces a list carries the list, so "what are the three rules" gets all three.
4. Sentences of every source are scored by the share of the question's terms they hold (the
   terms BM25 uses, weighted by rarity) plus their source's retrieval score, with a boost for
   what the question asks for: a number for "how many" / 多少, a year or date for "when" /
   什么时候, a name for "who" / 谁, a list for "what are the ..." / 哪些. A question about the
   user ("what is my name", 我叫什么) reads the recalled memories first.
5. The best sentences fill the answer, each with its ``[n]``, up to ``max_words`` (English) or
   ``max_chars`` (Chinese); a Chinese sentence over ``ZH_CLAUSE_CHARS`` is quoted by runs of
   whole clauses. Measured by benchmarks/extractive_eval.py (docs/benchmarks.md).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from rag_memory.schema import Source
from rag_memory.text.language import is_chinese
from rag_memory.text.terms import lexical_terms

__all__ = ["ExtractiveAnswerer", "split_sentences", "split_units"]

MAX_WORDS = 60
MAX_CHARS = 120
MAX_CODE_LINES = 8

# -- cleaning ------------------------------------------------------------------------------

_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
_LINK_DEF = re.compile(r"^\s{0,3}\[[^\]\n]+\]:\s*\S+.*$", re.MULTILINE)
_IMAGE = re.compile(r"!\[([^\]\n]*)\]\([^)\n]*\)")
_LINK = re.compile(r"\[([^\]\n]+)\]\([^)\n]*\)")
_REF_LINK = re.compile(r"\[([^\]\n]+)\]\[[^\]\n]*\]")
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>\n]*)?/?>")
_EMPHASIS = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_FOOTNOTE = re.compile(r"\[\^[^\]\n]+\]")


def _clean(text: str) -> str:
    text = _HTML_COMMENT.sub("", text)
    text = _LINK_DEF.sub("", text)
    text = _IMAGE.sub(lambda m: m.group(1), text)
    text = _LINK.sub(lambda m: m.group(1), text)
    text = _REF_LINK.sub(lambda m: m.group(1), text)
    text = _FOOTNOTE.sub("", text)
    text = _TAG.sub("", text)
    return _EMPHASIS.sub(lambda m: m.group(2), text)


# -- blocks --------------------------------------------------------------------------------

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^#{1,6}\s")
_ITEM = re.compile(r"^(?:[-*+]|\d+[.)]|[（(]?[一二三四五六七八九十\d]+[、.)）])\s+|^[（(]?[一二三四五六七八九十]+[、）)]")
_TABLE = re.compile(r"^\|")
_CJK_CHAR = re.compile(r"[\u3000-\u9fff\uff00-\uffef]")


@dataclass
class _Block:
    kind: str  # "para" | "item" | "code" | "skip"
    text: str
    list_id: int = -1


def _join(lines: list[str]) -> str:
    """Undo hard wrapping: a space between Latin words, nothing between CJK characters."""
    out = lines[0]
    for line in lines[1:]:
        glue = "" if _CJK_CHAR.match(out[-1:]) or _CJK_CHAR.match(line[:1]) else " "
        out += glue + line
    return out


def _blocks(text: str) -> list[_Block]:
    blocks: list[_Block] = []
    current: list[str] = []
    kind = "para"
    lists = 0
    in_list = False

    def flush() -> None:
        nonlocal current
        if current:
            blocks.append(_Block(kind, _join(current), lists if kind == "item" else -1))
        current = []

    lines = _clean(text).splitlines()
    i = 0
    fences = [n for n, line in enumerate(lines) if _FENCE.match(line)]
    if len(fences) % 2 and lines[fences[0]].strip() in ("```", "~~~"):
        # The chunk starts inside a code block: its first fence closes it.
        i = fences[0] + 1
    while i < len(lines):
        raw = lines[i]
        line = raw.strip()
        if _FENCE.match(raw):
            flush()
            code: list[str] = []
            i += 1
            while i < len(lines) and not _FENCE.match(lines[i]):
                code.append(lines[i].rstrip())
                i += 1
            i += 1
            if any(c.strip() for c in code):
                blocks.append(_Block("code", "\n".join(code).strip("\n")))
            in_list = False
            continue
        i += 1
        if not line:
            flush()
            kind = "para"
            continue
        if _HEADING.match(line) or _TABLE.match(line) or re.fullmatch(r"[-=*_:|\s]{3,}", line):
            flush()
            blocks.append(_Block("skip", line))
            kind, in_list = "para", False
            continue
        if _ITEM.match(line):
            flush()
            if not in_list:
                lists += 1
                in_list = True
            kind = "item"
            current = [_ITEM.sub("", line, count=1).strip()]
            continue
        if kind == "para":  # a paragraph ends a list; a wrapped item line continues its item
            in_list = False
        current.append(line)
    flush()
    return blocks


# -- sentences -----------------------------------------------------------------------------

_INLINE_CODE = re.compile(r"`[^`\n]+`")
_ZH_SENTENCE = re.compile(r"[^。！？!?；;\n]*?(?:[。！？!?；;…]+[”’」』）)】\"']*|$)")
_QUESTION_END = re.compile(r"[?？][”’」』）)】\"'\s]*$")


# Words whose period does not end a sentence (lower-cased, without their final period).
_ABBREVIATIONS = frozenset(
    """mr mrs ms mx dr prof sr jr st mt ft rev hon gen col lt capt sgt gov sen rep pres supt insp
    vs etc e.g i.e cf al approx ca fig figs no nos vol vols pp ch chap sec ed eds est dept univ
    inc ltd co corp bros assn jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri
    sat sun a.m p.m u.s u.k u.n e.u d.c o.s n.s b.c a.d b.c.e c.e ph.d m.d b.a m.a op ibid viz""".split()
)
# A sentence end: . ! ? or an ellipsis, closing quotes or brackets, Wikipedia's citation marks
# ("[citation needed]", ":121,154" page numbers), then space.
_EN_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?:\[[^\]\n]{1,40}\]|:\d[\d,\u2013-]*)*(?=\s+)")
_OPENER = re.compile(r"[\"'\u201c\u2018(\[]*[A-Z0-9\u3400-\u9fff]")
_WORD_BEFORE = re.compile(r"(\S+)$")
_INITIALS = re.compile(r"[A-Z]|(?:[A-Za-z]\.)+[A-Za-z]")  # "J. K. Rowling", "H.W. Wembley"


def _split_english(text: str) -> list[str]:
    """English sentences: a stop, then space, then a capital or a digit, unless the stop ends an
    abbreviation ("Dr.", "e.g.", "vs.", "p.m.", "U.S.") or an initial ("J. K. Rowling").
    Decimals and inline code (masked by the caller) hold no stop followed by space."""
    out, start = [], 0
    for m in _EN_END.finditer(text):
        rest = text[m.end():].lstrip()
        if not rest or not _OPENER.match(rest):
            continue
        stop = m.group(0)
        if "..." in stop or "\u2026" in stop:
            continue  # an ellipsis mostly elides inside a quote: "1... 2... 3..."
        if stop[0] == ".":
            before = _WORD_BEFORE.search(text, 0, m.start() + 1)
            word = before.group(1).lstrip("\"'\u201c\u2018([").rstrip(".") if before else ""
            lower = word.lower()
            if lower in ("no", "nos"):  # "No. 5", but "the answer is no. Then ..."
                if rest[:1].isdigit():
                    continue
            elif lower in _ABBREVIATIONS or _INITIALS.fullmatch(word):
                continue
        out.append(text[start:m.end()])
        start = m.end()
    out.append(text[start:])
    return [part.strip() for part in out if part.strip()]


def _mostly_chinese(text: str) -> bool:
    cjk = sum(1 for ch in text if "\u3400" <= ch <= "\u9fff")
    return cjk >= 4 and cjk >= 0.2 * len(text.replace(" ", ""))


ZH_CLAUSE_CHARS = 80  # tuned on the tune part of CMRC 2018 dev (120, 80, 60, 40 tried)
_ZH_CLAUSE = re.compile(r"[^，,：:]*[，,：:]|[^，,：:]+$")


def _clauses(sentence: str) -> list[str]:
    """A Chinese sentence longer than ``ZH_CLAUSE_CHARS`` cut at its commas and colons into runs
    of whole clauses that fit, so the part of a long sentence that answers can be quoted within
    the answer's 120 characters; "…" marks where a run was cut from the rest of its sentence."""
    if len(sentence) <= ZH_CLAUSE_CHARS:
        return [sentence]
    out: list[str] = []
    current = ""
    for clause in _ZH_CLAUSE.findall(sentence):
        if current and len(current) + len(clause) > ZH_CLAUSE_CHARS:
            out.append(current)
            current = ""
        current += clause
    if current:
        out.append(current)
    pieces = [piece[:-1] + "…" if piece[-1] in "，," else piece for piece in out]
    return [pieces[0]] + ["…" + piece for piece in pieces[1:]]


@lru_cache(maxsize=4096)
def _sentences_of(block: str) -> tuple[str, ...]:
    """Sentences of one paragraph, inline code masked while splitting."""
    codes: list[str] = []

    def mask(m: re.Match[str]) -> str:
        codes.append(m.group(0))
        return f"QXCODE{len(codes) - 1}QX"

    masked = _INLINE_CODE.sub(mask, block)
    if _mostly_chinese(masked):
        parts = [c for m in _ZH_SENTENCE.finditer(masked) if m.group(0).strip() for c in _clauses(m.group(0))]
    else:
        parts = _split_english(masked)
    out = []
    for part in parts:
        part = re.sub(r"QXCODE(\d+)QX", lambda m: codes[int(m.group(1))], part).strip()
        if part:
            out.append(part)
    return tuple(out)


_JSON_FIELD = re.compile(r'^\s*"[^"\n]{1,40}"\s*:')


def _is_prose(sentence: str) -> bool:
    """Whether a sentence reads as prose, not a command, a table row or a code fragment."""
    if sentence.startswith(("$", "|", "{", "<", ".venv/", ">>>")):
        return False
    if sentence.startswith(("(", "（")):
        return False  # a parenthetical split off its sentence: quoted alone it starts mid-thought
    if _JSON_FIELD.match(sentence) or "\\n" in sentence:
        return False  # a JSON line or an escaped string: code whose fence the chunk cut off
    cjk = sum(1 for ch in sentence if "\u3400" <= ch <= "\u9fff")
    if cjk >= 4:
        return True
    words = sentence.split()
    plain = sum(ch.isalnum() or ch.isspace() or ch in ",.;:'\"()-–—%$/&’“”" for ch in sentence)
    return len(words) >= 3 and plain >= 0.8 * len(sentence)


def _is_question(sentence: str) -> bool:
    return bool(_QUESTION_END.search(sentence))


@dataclass
class Unit:
    """A quotable piece of a source: a sentence, a sentence with the code it introduces, or a
    sentence with the list it introduces."""

    text: str
    kind: str  # "sentence" | "code" | "list"
    pos: int


def split_units(text: str) -> list[Unit]:
    """The quotable units of a source's text, in order (see the module docstring)."""
    units: list[Unit] = []
    blocks = _blocks(text)
    pos = 0
    i = 0
    while i < len(blocks):
        block = blocks[i]
        if block.kind in ("skip", "code"):
            i += 1
            continue
        sentences = [s for s in _sentences_of(block.text) if not _is_question(s)]
        sentences = [s for s in sentences if len(s) > 3 and _is_prose(s)]
        nxt = blocks[i + 1] if i + 1 < len(blocks) else None
        for j, sentence in enumerate(sentences):
            last = j == len(sentences) - 1
            units.append(Unit(sentence, "sentence", pos))
            if last and sentence.endswith((":", "：")) and nxt is not None and block.kind == "para":
                if nxt.kind == "code":
                    code = "\n".join(nxt.text.splitlines()[:MAX_CODE_LINES])
                    units[-1] = Unit(f"{sentence}\n\n    " + code.replace("\n", "\n    ") + "\n\n", "code", pos)
                elif nxt.kind == "item":
                    items = [b.text for b in blocks[i + 1 :] if b.kind == "item" and b.list_id == nxt.list_id]
                    items = [it for it in items if it]
                    if items:
                        units[-1] = Unit(sentence + "\n" + "\n".join(f"- {it}" for it in items) + "\n", "list", pos)
            pos += 1
        i += 1
    return units


def split_sentences(text: str) -> list[str]:
    """The prose sentences of English or Chinese text, as an extractive answer may quote them.

    Hard-wrapped lines are joined first. Headings, fenced code, shell lines, table rows,
    Markdown/HTML debris and the source's own questions are left out.
    """
    return [u.text for u in split_units(text) if u.kind == "sentence"]


# -- what the question asks for ------------------------------------------------------------

_EN_COUNT = re.compile(r"\bhow (?:many|much|long|far|old|big|large|tall|high)\b|\bwhat (?:percentage|number|amount)\b", re.I)
_EN_WHEN = re.compile(r"\bwhen\b|\bwhat (?:year|month|day|date|time|century|decade)\b|\bwhich (?:year|month|century)\b|\bhow long ago\b", re.I)
_EN_LIST = re.compile(r"\bwhat are (?:the )?(?:\w+ )?(?:two|three|four|five|six|seven|\d+)\b|\b(?:list|name) (?:the|all)\b|\bwhat are the\b", re.I)
_EN_WHO = re.compile(r"^\s*(?:who|whom|whose)\b", re.I)
_ZH_COUNT = re.compile(r"多少|几[个种条项年次位名人天岁倍]|多[大长高远久重]")
_ZH_WHEN = re.compile(r"什么时候|何时|哪一?年|哪个?月|哪一?天|几月|几年|什么年代|哪个朝代|多久")
_ZH_LIST = re.compile(r"哪[些几][个种条项]?|有哪|哪[二三四五六七八九十两]")
_ZH_WHO = re.compile(r"谁")
_NUMBER = re.compile(r"\d|[一二三四五六七八九十百千万亿两]+[个种条项年次位名人天岁倍%％]")
_DATE = re.compile(r"\b1\d{3}\b|\b20\d{2}\b|\b\d{1,2}(?:st|nd|rd|th)? (?:century|centuries)\b|"
                   r"\b(?:January|February|March|April|May|June|July|August|September|October|November|December)\b|"
                   r"\d+年|\d+月|\d+日|世纪|朝|年代")
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+")
_ABOUT_USER = re.compile(r"\b(?:i|my|me|mine|myself|i'm|i’m)\b|我", re.I)
# Sentence scoring (tuned by benchmarks/extractive_eval.py on the tune part of SQuAD v1.1 dev and
# CMRC 2018 dev): the share of the question's term weight a sentence holds, plus the retrieval
# score of its source, plus the embedder's cosine between question and sentence where the
# embedder reads the question's language; a sentence holding what the question asks for (a
# number, a date, a name, a list) is boosted.
_BOOST = 1.5
SOURCE_WEIGHT = 1.0
COSINE_WEIGHT = 1.0
COSINE_CANDIDATES = 8  # only the best sentences by terms are embedded: each costs a model pass


def _wants(question: str) -> set[str]:
    wants = set()
    if _EN_COUNT.search(question) or _ZH_COUNT.search(question):
        wants.add("number")
    if _EN_WHEN.search(question) or _ZH_WHEN.search(question):
        wants.add("date")
    if _EN_LIST.search(question) or _ZH_LIST.search(question):
        wants.add("list")
    if _EN_WHO.search(question) or _ZH_WHO.search(question):
        wants.add("name")
    return wants


def _fits(unit: Unit, wants: set[str]) -> bool:
    text = unit.text
    return (
        ("number" in wants and bool(_NUMBER.search(text)))
        or ("date" in wants and bool(_DATE.search(text)))
        or ("list" in wants and unit.kind == "list")
        or ("name" in wants and (bool(_NAME.search(text)) or _mostly_chinese(text)))
    )


# -- the answerer --------------------------------------------------------------------------


def _length(text: str, chinese: bool) -> int:
    """Words (English) or characters (Chinese) of answer text; code blocks are not counted."""
    prose = re.sub(r"\n\n    .*?(?:\n\n|$)", " ", text, flags=re.DOTALL)
    if chinese:
        return len(re.sub(r"\s+", "", prose))
    return len(prose.split())


def _clip(text: str, q_terms: set[str], budget: int, chinese: bool) -> str:
    """The ``budget``-long window of ``text`` holding the most question terms, with an ellipsis."""
    if chinese:
        units = list(text)
        size = budget - 1
        glue = ""
    else:
        units = text.split()
        size = budget
        glue = " "
    if len(units) <= budget:
        return text
    best, best_at = -1.0, 0
    for start in range(0, len(units) - size + 1, max(1, size // 8)):
        window = glue.join(units[start : start + size])
        score = len(set(lexical_terms(window)) & q_terms)
        if score > best:
            best, best_at = score, start
    piece = glue.join(units[best_at : best_at + size - (0 if chinese else 1)])
    return ("…" if best_at else "") + piece + "…"


_TURN_LABEL = re.compile(r"^(?:User|用户)\s*[:：]\s*")


def _quotable(source: Source) -> str:
    """The part of a source an extract may quote: a stored turn without its label and without
    the assistant's reply (that is an earlier answer, not something the user said)."""
    if source.memory_kind != "turn":
        return source.text
    said = source.text.split("\nAssistant:", 1)[0]
    return _TURN_LABEL.sub("", said.strip())


class ExtractiveAnswerer:
    """Answer with the retrieved sentences that best answer the question.

    Args:
        max_sentences: Sentences (or code/list units) in the answer at most; None fills the
            length limit.
        max_words: Length limit of an English answer, in words (code blocks not counted).
        max_chars: Length limit of a Chinese answer, in characters.
        embedder: The knowledge base's embedder: where it reads the question's language, its
            cosine between the question and each of the best candidate sentences counts in the
            choice. Off by default (``ragmem ask`` passes none): on SQuAD it lifts gold answers
            in the answer by under 2 points but makes an answer about 100 times slower on a CPU
            (benchmarks/extractive_eval.py, docs/benchmarks.md).
        embedder_languages: What the embedder reads (the ``embedder_languages`` setting).
    """

    backend = "extractive"
    model_id = "extractive"

    def __init__(
        self,
        *,
        max_sentences: int | None = None,
        max_words: int = MAX_WORDS,
        max_chars: int = MAX_CHARS,
        embedder=None,
        embedder_languages: str = "auto",
    ) -> None:
        self.max_sentences = max_sentences
        self.max_words = max_words
        self.max_chars = max_chars
        self.embedder = embedder
        self.embedder_languages = embedder_languages

    def _reads(self, question: str) -> bool:
        if self.embedder is None:
            return False
        from rag_memory.knowledge_base.hybrid import dense_prior

        return dense_prior(question, self.embedder.model_id, self.embedder_languages, 1.0) >= 0.5

    def _cosines(self, question: str, texts: list[str]) -> list[float]:
        query = self.embedder.embed_query(question)
        vectors = self.embedder.embed_documents(texts)
        return [sum(a * b for a, b in zip(query, v, strict=True)) for v in vectors]

    def answer(self, question: str, sources: Sequence[Source]) -> str:
        """Sentences from ``sources`` with their ``[n]`` citations, best first."""
        chinese = is_chinese(question)
        budget = self.max_chars if chinese else self.max_words
        q_terms = set(lexical_terms(question))
        wants = _wants(question)
        about_user = bool(_ABOUT_USER.search(question))
        # A past exchange is a transcript of an earlier answer: quoting it would only repeat
        # that answer. Documents and stated facts are what an extract can stand on.
        usable = [s for s in sources if s.memory_kind != "exchange"]
        if any(s.memory_kind == "fact" for s in usable):
            # A stored turn and the fact taken from it say the same; the fact reads better.
            usable = [s for s in usable if s.memory_kind != "turn"]
        units = [(s, u, set(lexical_terms(u.text))) for s in usable for u in split_units(_quotable(s))]
        df = Counter(t for _, _, terms in units for t in terms)
        n = max(len(units), 1)
        weight = {t: math.log(1 + n / df[t]) if df[t] else math.log(1 + 2 * n) for t in q_terms}
        total = sum(weight.values()) or 1.0
        scored: list[list] = []
        for source, unit, terms in units:
            share = sum(weight[t] for t in terms & q_terms) / total
            if share <= 0:
                continue
            if share <= 0:
                continue
            score = share + SOURCE_WEIGHT * max(source.score, 0) - 0.001 * unit.pos
            if wants and _fits(unit, wants):
                score *= _BOOST
            if about_user and source.kind == "memory":
                score += 1000.0  # what the user told us answers a question about them first
            scored.append([score, source.n, unit.pos, unit])
        if scored and COSINE_WEIGHT and self._reads(question):
            scored.sort(key=lambda c: -c[0])
            head = scored[:COSINE_CANDIDATES]
            for row, cos in zip(head, self._cosines(question, [c[3].text for c in head]), strict=True):
                row[0] += COSINE_WEIGHT * cos
        candidates = [tuple(c) for c in scored]
        if not candidates:
            # Nothing shares a term (e.g. a paraphrase): give the top source's opening.
            best = [s for s in usable if s.kind == "document"][:1] or list(usable[:1])
            candidates = [(0.0, s.n, u.pos, u) for s in best for u in split_units(_quotable(s))[:2]]
        picked: list[tuple[int, str]] = []
        seen: set[str] = set()
        used = 0
        for _, n_source, _, unit in sorted(candidates, key=lambda c: (-c[0], c[1], c[2])):
            # The same sentence can come from two chunks (overlap) or two files (a quote).
            key = re.sub(r"\W+", " ", unit.text).strip().lower()
            if key in seen or any(key in s for s in seen):
                continue
            length = _length(unit.text, chinese)
            text = unit.text.strip("\n")
            if used + length > budget:
                if picked:
                    continue
                text = _clip(text, q_terms, budget, chinese)
                length = _length(text, chinese)
            seen.add(key)
            picked.append((n_source, text))
            used += length
            if len(picked) == self.max_sentences or used >= budget:
                break
        parts = []
        for n_source, text in picked:
            if "\n" in text:  # a list or code: the citation goes after its opening sentence
                head, _, rest = text.partition("\n")
                parts.append(f"{head} [{n_source}]\n{rest}")
            else:
                parts.append(f"{text} [{n_source}]")
        joiner = "" if chinese else " "
        out = ""
        for part in parts:
            out += (joiner if out and not out.endswith("\n") else "") + part
        return out.strip()
