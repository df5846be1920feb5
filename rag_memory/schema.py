"""Small frozen dataclasses passed between stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Section:
    """A run of text from one document, with the page it came from (PDFs) if any."""

    text: str
    page: int | None = None


@dataclass(frozen=True)
class LoadedDocument:
    """A file turned into text by a loader.

    Attributes:
        source: Absolute path of the file.
        title: A human title (first heading, document title, or the file name).
        sections: The document's text in reading order; one per page for PDFs.
        content_hash: sha256 of the file's bytes.
        encoding: The text encoding detected, for text formats.
        warnings: What the parser warned about while reading it (a damaged PDF's xref ...).
    """

    source: str
    title: str
    sections: tuple[Section, ...]
    content_hash: str
    encoding: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return "\n\n".join(s.text for s in self.sections)


@dataclass(frozen=True)
class Chunk:
    """A piece of a document small enough to embed whole.

    ``start``/``end`` are character offsets into the section's text (``page`` names the
    section for PDFs); ``id`` is derived from source, text and chunk settings.
    """

    id: str
    text: str
    source: str
    title: str
    index: int
    start: int
    end: int
    page: int | None
    content_hash: str
    file_hash: str
    n_tokens: int

    def metadata(self, embedder_id: str) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "source": self.source,
            "title": self.title,
            "chunk_index": self.index,
            "start": self.start,
            "end": self.end,
            "content_hash": self.content_hash,
            "file_hash": self.file_hash,
            "embedder": embedder_id,
            "tokens": self.n_tokens,
        }
        if self.page is not None:
            meta["page"] = self.page
        return meta


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its cosine similarity to the query (1 = same direction)."""

    chunk_id: str
    text: str
    score: float
    source: str
    page: int | None = None
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class FileFailure:
    path: str
    reason: str


@dataclass
class IngestReport:
    """What an ingest run did (or, with ``dry_run``, would do)."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[FileFailure] = field(default_factory=list)
    skipped: list[FileFailure] = field(default_factory=list)  # passed over by discovery (type, link)
    warnings: list[FileFailure] = field(default_factory=list)  # ingested, but the parser warned
    chunks_added: int = 0
    chunks_removed: int = 0
    # Chunks an interrupted run had already written, kept instead of embedded again.
    chunks_resumed: int = 0
    repaired: int = 0
    seconds: float = 0.0
    write_seconds: float = 0.0
    # Time inside the embedder and the tokens it read (for tokens/s).
    embed_seconds: float = 0.0
    tokens_embedded: int = 0
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)  # for the user, e.g. the embedder cannot read the corpus

    @property
    def chunks_per_second(self) -> float | None:
        """Chunks added per second of loading, chunking, embedding and writing (model load excluded)."""
        if not self.chunks_added or self.write_seconds <= 0:
            return None
        return self.chunks_added / self.write_seconds

    @property
    def found_nothing(self) -> bool:
        """The inputs held no file ingest could read, and nothing was stored from them before."""
        return not (self.added or self.updated or self.removed or self.unchanged or self.failed)

    def as_json(self) -> dict[str, Any]:
        return {
            "added": len(self.added),
            "updated": len(self.updated),
            "removed": len(self.removed),
            "unchanged": len(self.unchanged),
            "chunks_added": self.chunks_added,
            "chunks_removed": self.chunks_removed,
            "chunks_resumed": self.chunks_resumed,
            "failed": [{"path": f.path, "reason": f.reason} for f in self.failed],
            "skipped": [{"path": f.path, "reason": f.reason} for f in self.skipped],
            "warnings": [{"path": f.path, "warning": f.reason} for f in self.warnings],
            "repaired": self.repaired,
            "seconds": round(self.seconds, 3),
            "chunks_per_second": None if self.chunks_per_second is None else round(self.chunks_per_second, 1),
            "dry_run": self.dry_run,
            "notes": self.notes,
            "files": {
                "added": self.added,
                "updated": self.updated,
                "removed": self.removed,
            },
        }


@dataclass(frozen=True)
class StoreStatus:
    collection: str
    embedder: str | None
    dimension: int | None
    documents: int
    chunks: int
    store_path: str
    last_ingest: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "embedder": self.embedder,
            "dimension": self.dimension,
            "documents": self.documents,
            "chunks": self.chunks,
            "store_path": self.store_path,
            "last_ingest": self.last_ingest,
        }


@dataclass(frozen=True)
class Turn:
    """One message of a conversation, as stored in the chat history."""

    role: str  # "user" | "assistant" | "system"
    content: str
    user_id: str
    session_id: str
    created_at: str  # ISO 8601, UTC
    id: int | None = None


@dataclass(frozen=True)
class Memory:
    """A long-term memory recalled for a user.

    ``similarity`` is the cosine similarity to the query; ``score`` blends it with recency
    and is what memories are ranked and gated by.
    """

    id: str
    user_id: str
    session_id: str
    text: str
    kind: str  # "exchange" | "fact" | "summary"
    created_at: str
    score: float = 0.0
    similarity: float = 0.0
    turn: str | None = None  # provenance "session:turn" of a spoken turn
    superseded_by: str | None = None  # id of a newer memory that updates this one


@dataclass(frozen=True)
class Entity:
    """A person, place, thing or date a user's memories mention (the per-user entity graph).

    Attributes:
        name: The entity as first written (``Caroline``, ``成都``, ``2023-05-07``).
        kind: ``person``, ``place``, ``organisation``, ``thing``, ``date`` or ``quantity``.
        mentions: How many memory units mention it.
        first_seen: When it was first mentioned (ISO 8601).
        last_seen: When it was last mentioned (ISO 8601).
        sessions: The sessions that mention it, in the order first seen.
        related: Entities mentioned together with it, most often first, as ``(name, count)``.
    """

    name: str
    kind: str
    mentions: int
    first_seen: str
    last_seen: str
    sessions: tuple[str, ...] = ()
    related: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Source:
    """Something injected into the prompt, numbered for citation."""

    n: int
    kind: str  # "document" | "memory"
    source: str
    page: int | None
    score: float
    text: str
    cut: bool = False
    chunk_id: str | None = None
    created_at: str | None = None
    memory_kind: str | None = None  # for memories: "turn", "exchange", "fact" or "summary"
    superseded: bool = False  # for memories: a newer memory updates this one

    def as_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "kind": self.kind,
            "source": self.source,
            "page": self.page,
            "score": round(self.score, 6),
            "text": self.text,
            "cut": self.cut,
        }


@dataclass
class Answer:
    """What ``ask`` returns: the answer, what it was built from, and what it cost.

    Attributes:
        answer: The answer text, with ``[n]`` citations into ``sources``.
        question: The question as asked.
        standalone_question: The question used for retrieval (a follow-up rewritten).
        sources: Everything injected into the prompt, numbered as cited.
        generator: ``{"backend": ..., "model": ...}``.
        abstained: True when nothing relevant was found and no answer was generated.
        tokens: ``prompt``, ``max_new_tokens``, ``context_length``, ``completion``.
        timings: Seconds per stage.
        notes: Things the user should know (e.g. why the answer is extractive).
        explain: Candidates, gate, budgets; filled when asked for.
    """

    answer: str
    question: str
    standalone_question: str
    user_id: str
    session_id: str
    sources: list[Source] = field(default_factory=list)
    generator: dict[str, str] = field(default_factory=dict)
    abstained: bool = False
    tokens: dict[str, int | None] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    explain: dict[str, Any] | None = None

    @property
    def cited(self) -> list[int]:
        """Source numbers the answer cites that exist, in order of first citation."""
        import re

        valid = {s.n for s in self.sources}
        out: list[int] = []
        for m in re.finditer(r"\[(\d+)\]", self.answer):
            n = int(m.group(1))
            if n in valid and n not in out:
                out.append(n)
        return out

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "answer": self.answer,
            "question": self.question,
            "standalone_question": self.standalone_question,
            "user": self.user_id,
            "session": self.session_id,
            "generator": self.generator,
            "abstained": self.abstained,
            "sources": [s.as_json() for s in self.sources],
            "cited": self.cited,
            "tokens": self.tokens,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "notes": self.notes,
        }
        if self.explain is not None:
            data["explain"] = self.explain
        return data
