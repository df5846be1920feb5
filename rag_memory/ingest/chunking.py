"""Token-aware chunking that respects paragraphs and sentences, in English and Chinese.

Lengths are counted with the embedder's own tokenizer, so no chunk is ever longer than the
embedder reads: nothing is silently truncated at embedding time.

The splitter is LangChain's recursive character splitter (same separators, same merge and
overlap rules, same output), re-done so that every piece of one level is counted in one
batch call of the tokenizer and no piece is counted twice: a 20 MB text took 85 s with a
per-piece counter and chunks at several MB/s this way (``benchmarks/ingest_throughput.py``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


class TokenChunker:
    """Split documents into chunks of at most ``settings.max_tokens`` tokens.

    Args:
        count_tokens: The embedder's token counter (special tokens excluded).
        settings: Size, overlap and the embedder id.
        limit: The embedder's window; chunks never exceed it, whatever ``settings`` asks.
        count_batch: Counts many texts in one call (the embedder's ``count_tokens_batch``);
            much faster than ``count_tokens`` one piece at a time.
    """

    def __init__(
        self,
        count_tokens: Callable[[str], int],
        settings: ChunkSettings,
        *,
        limit: int | None = None,
        count_batch: Callable[[list[str]], list[int]] | None = None,
    ) -> None:
        self.count_tokens = count_tokens
        self.count_batch = count_batch or (lambda texts: [count_tokens(t) for t in texts])
        self.settings = settings
        self.max_tokens = min(settings.max_tokens, limit) if limit else settings.max_tokens
        self.overlap = min(settings.overlap, self.max_tokens // 2)
        self._lengths: dict[str, int] = {}

    # -- counting, each distinct piece once ------------------------------------------------
    def _count_all(self, texts: Sequence[str]) -> list[int]:
        lengths = self._lengths
        missing = list({t for t in texts if t not in lengths})
        if missing:
            lengths.update(zip(missing, self.count_batch(missing), strict=True))
        return [lengths[t] for t in texts]

    def _length(self, text: str) -> int:
        n = self._lengths.get(text)
        if n is None:
            n = self._lengths[text] = self.count_batch([text])[0]
        return n

    # -- LangChain's RecursiveCharacterTextSplitter (keep_separator="end", strip) -------------
    def _split(self, text: str, separators: list[str], size: int, overlap: int) -> list[str]:
        separator, rest = separators[-1], []
        for i, sep in enumerate(separators):
            if not sep:
                separator = sep
                break
            if sep in text:
                separator, rest = sep, separators[i + 1 :]
                break
        if separator:
            parts = text.split(separator)
            splits = [p + separator for p in parts[:-1]] + [parts[-1]]
        else:
            splits = list(text)
        splits = [p for p in splits if p]
        lengths = self._count_all(splits)
        out: list[str] = []
        good: list[str] = []
        for piece, n in zip(splits, lengths, strict=True):
            if n < size:
                good.append(piece)
                continue
            if good:
                out.extend(self._merge(good, size, overlap))
                good = []
            if rest:
                out.extend(self._split(piece, rest, size, overlap))
            else:
                out.append(piece)
        if good:
            out.extend(self._merge(good, size, overlap))
        return out

    def _merge(self, splits: list[str], size: int, overlap: int) -> list[str]:
        docs: list[str] = []
        current: list[str] = []
        total = 0
        for piece in splits:
            n = self._length(piece)
            if total + n > size:
                if current:
                    joined = "".join(current).strip()
                    if joined:
                        docs.append(joined)
                    while total > overlap or (total + n > size and total > 0):
                        total -= self._length(current[0])
                        current = current[1:]
            current.append(piece)
            total += n
        joined = "".join(current).strip()
        if joined:
            docs.append(joined)
        return docs

    def split_text(self, text: str) -> list[tuple[str, int, int]]:
        """(chunk text, start, end) with character offsets into ``text``."""
        out: list[tuple[str, int, int]] = []
        bounds = [m.start() for m in _HEADING.finditer(text)]
        starts = [0] + [b for b in bounds if b > 0]
        for seg_start, seg_end in zip(starts, starts[1:] + [len(text)], strict=True):
            segment = text[seg_start:seg_end]
            cursor = 0
            prev_end = 0
            for piece in self._fit(segment, self.max_tokens):
                # Chunks move forward: overlapping ones start before the previous one ends, but
                # each ends after it (so repeated text is not matched at an earlier place).
                start = segment.find(piece, cursor)
                while start >= 0 and start + len(piece) <= prev_end:
                    start = segment.find(piece, start + 1)
                if start < 0:  # the splitter only strips and cuts, so this does not happen
                    start = segment.find(piece, cursor)
                out.append((piece, seg_start + start, seg_start + start + len(piece)))
                cursor = start + 1
                prev_end = start + len(piece)
        return out

    def _fit(self, text: str, size: int) -> list[str]:
        """Split, then re-split any piece the merge left over the limit.

        Token counts are not additive (merging two pieces can tokenise differently), so a
        merged chunk can come out a token or two long; those are split again, smaller.
        """
        result: list[str] = []
        pieces = [p for p in self._split(text, SEPARATORS, size, min(self.overlap, size // 2)) if p.strip()]
        for piece, n in zip(pieces, self._count_all(pieces), strict=True):
            if n <= self.max_tokens:
                result.append(piece)
            elif size > 8:
                result.extend(self._fit(piece, max(8, size - max(2, size // 10))))
            else:  # a single unsplittable run longer than the window: keep it, never loop
                result.append(piece)
        return result

    def chunk(self, doc: LoadedDocument) -> list[Chunk]:
        """Every chunk of a document, in order, with ids derived from content and settings."""
        chunks: list[Chunk] = []
        seen: dict[str, int] = {}
        index = 0
        for section in doc.sections:
            pieces = self.split_text(section.text)
            counts = self._count_all([p[0] for p in pieces])
            self._lengths.clear()  # the cache serves one section; a big file must not keep it all
            for (text, start, end), n_tokens in zip(pieces, counts, strict=True):
                text_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()
                # The same text twice in one file gets its occurrence number, so ids stay
                # unique within a file and stable when unrelated parts of the file change.
                occurrence = seen.get(text_hash, 0)
                seen[text_hash] = occurrence + 1
                chunk_id = chunk_id_for(doc.source, self.settings.key, section.page, text_hash, occurrence)
                chunks.append(
                    Chunk(
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
                )
                index += 1
        return chunks


def chunk_id_for(source: str, settings_key: str, page: int | None, text_hash: str, occurrence: int) -> str:
    raw = f"{source}\x1f{settings_key}\x1f{page}\x1f{text_hash}\x1f{occurrence}"
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]
