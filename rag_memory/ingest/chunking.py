"""Token-aware chunking that respects paragraphs and sentences, in English and Chinese.

Lengths are counted with the embedder's own tokenizer, so no chunk is ever longer than the
embedder reads: nothing is silently truncated at embedding time.

The splitter is LangChain's recursive character splitter (same separators, same merge and
overlap rules, same output), re-done on character spans of the text so that counting is the
only cost, and counting is cheap:

* with an embedder whose tokenizer works word by word (WordPiece after BERT's pre-tokenizer,
  as the default MiniLM: ``Embedder.token_spans`` says so), the text is tokenised once, with
  offsets, and a piece's count is the number of tokens inside it whenever the piece starts and
  ends between words (true of every cut at a separator but the character-level one), which is
  exactly what tokenising the piece alone gives; any other piece is counted by the tokenizer;
* otherwise every distinct piece is counted once, a whole level of pieces per tokenizer call.

Chunks come out as they are cut (``iter_chunks``), so ingest embeds the first chunks of a big
file while the rest is still being cut. ``benchmarks/chunking_speed.py`` measures it.
"""

from __future__ import annotations

import hashlib
import re
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain

from rag_memory.errors import ConfigError
from rag_memory.schema import Chunk, LoadedDocument

# Paragraphs, then lines, then sentences (CJK full-width punctuation and Latin), then
# clauses, then words, then characters.
SEPARATORS = [
    "\n\n",
    "\n",
    "。",
    "！",
    "？",
    "；",
    ". ",
    "! ",
    "? ",
    "; ",
    "，",
    ", ",
    "、",
    " ",
    "",
]


# A Markdown heading starts a new segment, so it opens the chunk of its section instead of
# trailing at the end of the previous one.
_HEADING = re.compile(r"(?m)^(?=#{1,6}[ \t])")


@dataclass(frozen=True)
class ChunkSettings:
    """How documents are cut; part of every chunk id, so a change re-chunks everything.

    ``max_tokens`` is the size asked for; the chunker lowers it to the embedder's window when
    that is smaller (the key stays the same, since the embedder id is part of it).
    """

    max_tokens: int
    overlap: int
    embedder_id: str

    def __post_init__(self) -> None:
        if self.max_tokens < 8:
            raise ConfigError(f"chunk size must be at least 8 tokens, got {self.max_tokens}")
        if not 0 <= self.overlap <= self.max_tokens // 2:
            raise ConfigError(
                f"chunk overlap must be between 0 and {self.max_tokens // 2} tokens, got {self.overlap}"
            )

    @property
    def key(self) -> str:
        return f"v1|{self.embedder_id}|{self.max_tokens}|{self.overlap}"


# A word-level tokenizer's offsets for each text: the (start, end) of every token, in
# characters, and the index of the word it was cut from (see ``Embedder.token_spans``).
TokenSpans = tuple[Sequence[tuple[int, int]], Sequence[int | None]]

_BATCH = 256  # pieces counted per call while a level is walked (bounds the work ahead of output)
_BLOCK = 8192  # characters per text handed to the tokenizer when a segment is tokenised


class TokenChunker:
    """Split documents into chunks of at most ``settings.max_tokens`` tokens.

    Args:
        count_tokens: The embedder's token counter (special tokens excluded).
        settings: Size, overlap and the embedder id.
        limit: The embedder's window; chunks never exceed it, whatever ``settings`` asks.
        count_batch: Counts many texts in one call (the embedder's ``count_tokens_batch``);
            much faster than ``count_tokens`` one piece at a time.
        token_spans: The embedder's ``token_spans``: the offsets of the tokens of many texts in
            one call, or None where counting by offsets would not be exact. With it a text is
            tokenised once instead of piece by piece.
    """

    def __init__(
        self,
        count_tokens: Callable[[str], int],
        settings: ChunkSettings,
        *,
        limit: int | None = None,
        count_batch: Callable[[list[str]], list[int]] | None = None,
        token_spans: Callable[[list[str]], list[TokenSpans] | None] | None = None,
    ) -> None:
        self.count_tokens = count_tokens
        self.count_batch = count_batch or (lambda texts: [count_tokens(t) for t in texts])
        self.token_spans = token_spans
        self.settings = settings
        self.max_tokens = min(settings.max_tokens, limit) if limit else settings.max_tokens
        self.overlap = min(settings.overlap, self.max_tokens // 2)
        self._lengths: dict[str, int] = {}

    # -- LangChain's RecursiveCharacterTextSplitter (keep_separator="end", strip), on spans ----
    def _split_spans(
        self, start: int, end: int, separators: list[str], size: int, overlap: int, counts: _Counts
    ) -> Iterator[tuple[int, int]]:
        text = counts.text
        window = text[start:end]
        separator, rest = separators[-1], []
        for i, sep in enumerate(separators):
            if not sep:
                separator = sep
                break
            if sep in window:
                separator, rest = sep, separators[i + 1 :]
                break
        spans: list[tuple[int, int]] = []
        if separator:
            pos, step = start, len(separator)
            parts = window.split(separator)
            for part in parts[:-1]:
                spans.append((pos, pos + len(part) + step))
                pos += len(part) + step
            if parts[-1]:
                spans.append((pos, end))
        else:
            spans = [(i, i + 1) for i in range(start, end)]
        merge = _Merge(text, size, overlap)
        for at in range(0, len(spans), _BATCH):
            batch = spans[at : at + _BATCH]
            for (s, e), n in zip(batch, counts.counts(batch), strict=True):
                if n < size:
                    yield from merge.push(s, e, n)
                    continue
                yield from merge.flush()
                if rest:
                    yield from self._split_spans(s, e, rest, size, overlap, counts)
                else:
                    yield (s, e)
        yield from merge.flush()

    def _split(self, text: str, separators: list[str], size: int, overlap: int) -> list[str]:
        """The splitter's pieces of ``text`` as strings (what LangChain's ``split_text`` returns)."""
        counts = _Counts(text, self)
        return [text[s:e] for s, e in self._split_spans(0, len(text), separators, size, overlap, counts)]

    def _fit(self, start: int, end: int, size: int, counts: _Counts) -> Iterator[tuple[int, int, int]]:
        """Split, then re-split any piece the merge left over the limit: (start, end, tokens).

        Token counts are not additive (merging two pieces can tokenise differently), so a
        merged chunk can come out a token or two long; those are split again, smaller.
        """
        text = counts.text
        pending: list[tuple[int, int]] = []
        for s, e in self._split_spans(start, end, SEPARATORS, size, min(self.overlap, size // 2), counts):
            if text[s:e].isspace():
                continue
            pending.append((s, e))
            if len(pending) >= 64:
                yield from self._check(pending, size, counts)
                pending = []
        yield from self._check(pending, size, counts)

    def _check(self, spans: list[tuple[int, int]], size: int, counts: _Counts) -> Iterator[tuple[int, int, int]]:
        for (s, e), n in zip(spans, counts.counts(spans), strict=True):
            if n <= self.max_tokens:
                yield s, e, n
            elif size > 8:
                yield from self._fit(s, e, max(8, size - max(2, size // 10)), counts)
            else:  # a single unsplittable run longer than the window: keep it, never loop
                yield s, e, n

    def iter_spans(self, text: str) -> Iterator[tuple[str, int, int, int]]:
        """(chunk text, start, end, tokens) with character offsets into ``text``, in order."""
        bounds = [m.start() for m in _HEADING.finditer(text)]
        starts = [0] + [b for b in bounds if b > 0]
        for seg_start, seg_end in zip(starts, starts[1:] + [len(text)], strict=True):
            segment = text[seg_start:seg_end]
            counts = _Counts(segment, self)
            for s, e, n in self._fit(0, len(segment), self.max_tokens, counts):
                yield segment[s:e], seg_start + s, seg_start + e, n

    def split_text(self, text: str) -> list[tuple[str, int, int]]:
        """(chunk text, start, end) with character offsets into ``text``."""
        return [(t, s, e) for t, s, e, _ in self.iter_spans(text)]

    def iter_chunks(self, doc: LoadedDocument) -> Iterator[Chunk]:
        """Every chunk of a document, in order, as it is cut, with ids derived from content
        and settings."""
        seen: dict[str, int] = {}
        index = 0
        for section in doc.sections:
            try:
                for text, start, end, n_tokens in self.iter_spans(section.text):
                    text_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()
                    # The same text twice in one file gets its occurrence number, so ids stay
                    # unique within a file and stable when unrelated parts of the file change.
                    occurrence = seen.get(text_hash, 0)
                    seen[text_hash] = occurrence + 1
                    chunk_id = chunk_id_for(doc.source, self.settings.key, section.page, text_hash, occurrence)
                    yield Chunk(
                        id=chunk_id,
                        text=text,
                        source=doc.source,
                        title=doc.title,
                        index=index,
                        start=start,
                        end=end,
                        page=section.page,
                        content_hash=text_hash,
                        file_hash=doc.content_hash,
                        n_tokens=n_tokens,
                    )
                    index += 1
            finally:
                self._lengths.clear()  # the cache serves one section; a big file must not keep it all

    def chunk(self, doc: LoadedDocument) -> list[Chunk]:
        """Every chunk of a document, in order, with ids derived from content and settings."""
        return list(self.iter_chunks(doc))


class _Merge:
    """LangChain's ``_merge_splits`` over consecutive spans, fed one span at a time."""

    def __init__(self, text: str, size: int, overlap: int) -> None:
        self.text, self.size, self.overlap = text, size, overlap
        self.current: deque[tuple[int, int, int]] = deque()
        self.total = 0

    def _joined(self) -> list[tuple[int, int]]:
        s, e = self.current[0][0], self.current[-1][1]
        text = self.text
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        return [(s, e)] if s < e else []

    def push(self, s: int, e: int, n: int) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        if self.total + n > self.size:
            if self.current:
                out = self._joined()
                while self.total > self.overlap or (self.total + n > self.size and self.total > 0):
                    self.total -= self.current.popleft()[2]
        self.current.append((s, e, n))
        self.total += n
        return out

    def flush(self) -> list[tuple[int, int]]:
        out = self._joined() if self.current else []
        self.current.clear()
        self.total = 0
        return out


class _Counts:
    """Token counts of spans of one text: from the text's token offsets where they are exact,
    else by the tokenizer, each distinct piece once (cached in the chunker per section)."""

    def __init__(self, text: str, chunker: TokenChunker) -> None:
        self.text = text
        self._chunker = chunker
        self._index = _TokenIndex(text, chunker.token_spans) if chunker.token_spans is not None else None

    def counts(self, spans: Sequence[tuple[int, int]]) -> list[int]:
        if not spans:
            return []
        values: list[int | None] = [None] * len(spans)
        if self._index is not None:
            values = self._index.counts(spans)
            if self._index.unusable:
                self._index = None
        missing = [i for i, v in enumerate(values) if v is None]
        if missing:
            lengths = self._chunker._lengths
            texts = [self.text[spans[i][0] : spans[i][1]] for i in missing]
            new = list({t for t in texts if t not in lengths})
            if new:
                lengths.update(zip(new, self._chunker.count_batch(new), strict=True))
            for i, t in zip(missing, texts, strict=True):
                values[i] = lengths[t]
        return values  # type: ignore[return-value]


class _TokenIndex:
    """One text's tokens (start offsets, end offsets, word numbers), tokenised in order as
    far as the spans asked about reach, in blocks cut between words (after a newline, a space
    or CJK sentence punctuation), so every block tokenises as it does inside the text."""

    def __init__(self, text: str, token_spans: Callable[[list[str]], list[TokenSpans] | None]) -> None:
        import numpy as np

        self._np = np
        self.text = text
        self._token_spans = token_spans
        self.unusable = False
        self._covered = 0  # text[:covered] is tokenised
        self._parts: list[tuple] = []
        self._words = 0
        empty = np.zeros(0, dtype=np.int64)
        self.starts, self.ends, self.word = empty, empty, empty

    def _cut_after(self, pos: int) -> int:
        """The first position at or after ``pos`` that lies between words (or the end)."""
        text, n = self.text, len(self.text)
        while pos < n:
            for mark in ("\n", " ", "。", "！", "？", "；"):
                found = text.find(mark, pos, pos + 4 * _BLOCK)
                if found >= 0:
                    return found + 1
            pos += 4 * _BLOCK
        return n

    def _extend(self, until: int) -> None:
        np = self._np
        end = self._cut_after(max(until, self._covered + 16 * _BLOCK))
        blocks: list[tuple[int, int]] = []
        pos = self._covered
        while pos < end:
            cut = min(end, self._cut_after(pos + _BLOCK))
            blocks.append((pos, cut))
            pos = cut
        result = self._token_spans([self.text[s:e] for s, e in blocks])
        if result is None:
            self.unusable = True
            return
        starts, ends, words = [], [], []
        for (block_start, _), (offsets, word_ids) in zip(blocks, result, strict=True):
            if not offsets:
                continue
            pairs = np.fromiter(chain.from_iterable(offsets), dtype=np.int64, count=2 * len(offsets))
            pairs = pairs.reshape(-1, 2) + block_start
            try:
                ids = np.fromiter(word_ids, dtype=np.int64, count=len(word_ids))
            except TypeError:  # a token from no word (none without special tokens, but be safe)
                ids = np.fromiter((-1 if w is None else w for w in word_ids), dtype=np.int64, count=len(word_ids))
            starts.append(pairs[:, 0])
            ends.append(pairs[:, 1])
            words.append(ids + self._words)
            self._words += int(ids.max()) + 1
        if starts:
            self.starts = np.concatenate([self.starts, *starts])
            self.ends = np.concatenate([self.ends, *ends])
            self.word = np.concatenate([self.word, *words])
        self._covered = end

    def _between_words(self, pos):
        """Whether each position lies between two words (not inside a token or a word)."""
        np = self._np
        n = len(self.starts)
        i = np.searchsorted(self.starts, pos, side="left")
        if n == 0:
            return np.ones(len(pos), dtype=bool)
        prev = np.maximum(i - 1, 0)
        nxt = np.minimum(i, n - 1)
        inside_token = self.ends[prev] > pos
        same_word = (i < n) & (self.word[prev] == self.word[nxt])
        return (i == 0) | ~(inside_token | same_word)

    def counts(self, spans: Sequence[tuple[int, int]]) -> list[int | None]:
        np = self._np
        s = np.fromiter((a for a, _ in spans), dtype=np.int64, count=len(spans))
        e = np.fromiter((b for _, b in spans), dtype=np.int64, count=len(spans))
        furthest = int(e.max())
        if furthest > self._covered:
            self._extend(furthest)
            if self.unusable:
                return [None] * len(spans)
        n = np.searchsorted(self.starts, e, side="left") - np.searchsorted(self.starts, s, side="left")
        exact = self._between_words(s) & self._between_words(e)
        return [int(c) if ok else None for c, ok in zip(n.tolist(), exact.tolist(), strict=True)]


def chunk_id_for(source: str, settings_key: str, page: int | None, text_hash: str, occurrence: int) -> str:
    raw = f"{source}\x1f{settings_key}\x1f{page}\x1f{text_hash}\x1f{occurrence}"
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]
