"""Long-term memory: past exchanges and user facts, embedded and recalled by similarity.

All users share one Chroma collection; every record carries its ``user_id`` and every read
filters on it, so one user's memories never reach another user's prompt. Recall ranks by
similarity blended with recency, so of two equally relevant memories the newer one wins.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rag_memory.errors import ConfigError, EmbedderMismatchError, MemoryStoreError
from rag_memory.knowledge_base.embedders import Embedder
from rag_memory.knowledge_base.store import ChromaStore
from rag_memory.memory.facts import extract_facts
from rag_memory.memory.history import as_utc, check_id
from rag_memory.schema import Hit, Memory

log = logging.getLogger(__name__)

__all__ = ["KINDS", "LongTermMemory", "MemoryUnit", "memory_id", "recency"]

# "turn": something said (a user's turn, with the generated answer where there was one);
# "exchange": a question and answer stored before every turn became a unit of its own.
KINDS = ("turn", "exchange", "fact", "summary")
MAX_ANSWER_CHARS = 600
OVERFETCH = 4
_SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class MemoryUnit:
    """One memory to store: what was said or learnt, when, in which session.

    Attributes:
        session_id: The session it came from.
        kind: One of ``KINDS``.
        text: What is remembered (shown in prompts as it is).
        created_at: When it was said (the session's date when a conversation is replayed).
        turn: Provenance ``session:turn`` of a spoken turn, e.g. ``s1:7`` or ``D1:3``.
        context: The neighbouring turn (what it answered), kept for reading it in context.
    """

    session_id: str
    kind: str
    text: str
    created_at: datetime
    turn: str | None = None
    context: str | None = None


def scope(user_id: str) -> str:
    """The keyword index's ``source`` of a user's units: BM25 searches one user's units only."""
    return f"user:{user_id}"


def memory_id(user_id: str, session_id: str, kind: str, text: str, created_at: str) -> str:
    """The content-derived id of a memory: the same memory written twice is stored once."""
    key = "\x1f".join((user_id, session_id, kind, text, created_at))
    return "mem-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def recency(age_days: float, half_life_days: float) -> float:
    """``0.5 ** (age_days / half_life_days)``: 1 for a memory made now, 0.5 at one half-life.

    A memory dated in the future counts as made now.
    """
    return 0.5 ** (max(age_days, 0.0) / half_life_days)


class LongTermMemory:
    """Remember exchanges and facts per user; recall the relevant ones later.

    Args:
        store: The memory collection (not the knowledge base's).
        embedder: Embeds memories and queries; the collection stays bound to the first one used.
        recency_weight: Share of a memory's score that comes from its recency, 0..1.
        half_life_days: Age at which a memory's recency halves.

    A recalled memory's score is ``(1 - recency_weight) * similarity + recency_weight *
    0.5 ** (age_days / half_life_days)``.

    Example:
        >>> memory = LongTermMemory(ChromaStore("memory", path=home / "chroma"), HashingEmbedder())
        >>> _ = memory.remember_exchange("alice", "s1", "My project is about solar panels.", "Noted.")
        >>> memory.recall("alice", "solar panels", k=1)[0].kind
        'fact'
    """

    def __init__(
        self,
        store: ChromaStore,
        embedder: Embedder,
        *,
        recency_weight: float = 0.15,
        half_life_days: float = 30.0,
        keyword=None,
    ) -> None:
        if not 0.0 <= recency_weight <= 1.0:
            raise ConfigError(f"recency_weight must be between 0 and 1, got {recency_weight}")
        if half_life_days <= 0:
            raise ConfigError(f"half_life_days must be above 0, got {half_life_days}")
        self.store = store
        self.embedder = embedder
        self.recency_weight = recency_weight
        self.half_life_days = half_life_days
        self.keyword = keyword  # the units' BM25 index (a BM25Index), kept in step on every write
        self._keyword_synced = False

    def embed_query(self, query: str) -> list[float]:
        """The query's vector (the embedder remembers its last few queries)."""
        return self.embedder.embed_query(query)

    def sync_keyword_index(self) -> None:
        """Bring the keyword index in step with the stored units once per process (units
        stored before the index existed, or a crash between the two writes)."""
        if self._keyword_synced or self.keyword is None:
            return
        self._keyword_synced = True
        if not self.store.exists():
            if self.keyword.count():
                self.keyword.drop()
        elif self.keyword.count() != self.store.count():
            log.info("bringing the memory keyword index in step with %r", self.store.name)
            wanted, have = self.store.ids(), self.keyword.ids()
            self.keyword.delete(have - wanted)
            missing = sorted(wanted - have)
            for start in range(0, len(missing), 1000):
                records = self.store.get_records(ids=missing[start : start + 1000])
                self.keyword.upsert_records(
                    [h.chunk_id for h in records], [h.text for h in records],
                    [{**h.metadata, "source": scope(str(h.metadata.get("user_id", "")))} for h in records],
                )

    # -- writing -------------------------------------------------------------------------
    def _mismatch(self, exc: EmbedderMismatchError) -> MemoryStoreError:
        bound, _ = self.store.bound_embedder()
        return MemoryStoreError(
            f"the long-term memory collection {self.store.name!r} at {self.store.location} was built with"
            f" embedder {bound!r}, but the configured embedder is {self.embedder.model_id!r}. Set embedder"
            f" back to {bound!r}, start the memory afresh with `ragmem memory clear`, or use another"
            " collection (setting memory_collection)."
        )

    def _write(self, records: Sequence[tuple[str, str, str, datetime]], user_id: str) -> list[Memory]:
        """Embed and store (session_id, kind, text, created_at) records of one user."""
        return self.write_units(user_id, [MemoryUnit(sid, kind, text, when) for sid, kind, text, when in records])

    def write_units(self, user_id: str, units: Sequence[MemoryUnit]) -> list[Memory]:
        """Embed and store a batch of one user's units (one embedding call, batched writes)."""
        if not units:
            return []
        memories, metadatas = [], []
        for unit in units:
            iso = unit.created_at.isoformat()
            mid = memory_id(user_id, unit.session_id, unit.kind, unit.text, iso)
            memories.append(Memory(mid, user_id, unit.session_id, unit.text, unit.kind, iso, turn=unit.turn))
            meta: dict[str, Any] = {
                "user_id": user_id, "session_id": unit.session_id, "kind": unit.kind, "created_at": iso,
                "created_ts": unit.created_at.timestamp(), "source": scope(user_id),
            }
            if unit.turn:
                meta["turn"] = unit.turn
            if unit.context:
                meta["context"] = unit.context
            metadatas.append(meta)
        vectors = self.embedder.embed_documents([m.text for m in memories])
        try:
            self.store.upsert_records(
                [m.id for m in memories], [m.text for m in memories], vectors, metadatas,
                embedder_id=self.embedder.model_id,
            )
        except EmbedderMismatchError as exc:
            raise self._mismatch(exc) from exc
        if self.keyword is not None:
            self.keyword.upsert_records([m.id for m in memories], [m.text for m in memories], metadatas)
        return memories

    def remember(
        self,
        user_id: str,
        session_id: str,
        text: str,
        *,
        kind: str = "exchange",
        created_at: datetime | str | None = None,
    ) -> Memory:
        """Store one memory for a user.

        Args:
            user_id: Whose memory it is.
            session_id: The session it came from.
            text: What to remember.
            kind: One of ``KINDS`` (``turn``, ``exchange``, ``fact``, ``summary``).
            created_at: When it happened (default: now).

        Returns:
            The stored memory (writing the same memory again overwrites it).
        """
        check_id("user_id", user_id)
        check_id("session_id", session_id)
        if kind not in KINDS:
            raise ConfigError(f"memory kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"a memory needs some text, got {text!r}")
        return self._write([(session_id, kind, text.strip(), as_utc(created_at))], user_id)[0]

    def remember_exchange(
        self,
        user_id: str,
        session_id: str,
        question: str,
        answer: str,
        *,
        created_at: datetime | str | None = None,
    ) -> list[Memory]:
        """Store a question and its answer, and the facts the user stated in the question.

        The exchange is stored as ``"User: …\\nAssistant: …"`` with the answer clipped to
        ``MAX_ANSWER_CHARS``; each fact from ``extract_facts(question)`` becomes a memory of
        kind ``fact``. One embedding call covers them all.

        Returns:
            The exchange first, then the facts.
        """
        check_id("user_id", user_id)
        check_id("session_id", session_id)
        if not isinstance(question, str) or not question.strip():
            raise ConfigError(f"an exchange needs a question, got {question!r}")
        answer = " ".join((answer or "").split())
        if len(answer) > MAX_ANSWER_CHARS:
            answer = answer[: MAX_ANSWER_CHARS - 1].rstrip() + "…"
        text = f"User: {question.strip()}" + (f"\nAssistant: {answer}" if answer else "")
        when = as_utc(created_at)
        records = [(session_id, "exchange", text, when)]
        records += [(session_id, "fact", fact, when) for fact in extract_facts(question)]
        return self._write(records, user_id)

    def check_embedder(self) -> None:
        """Refuse to read the collection with another embedder than the one it was built with."""
        try:
            self.store.check_embedder(self.embedder.model_id)
        except EmbedderMismatchError as exc:
            raise self._mismatch(exc) from exc

    # -- reading -------------------------------------------------------------------------
    def recall(
        self,
        user_id: str,
        query: str,
        *,
        k: int = 4,
        min_score: float | None = None,
        exclude_session: str | None = None,
        now: datetime | str | None = None,
    ) -> list[Memory]:
        """The user's memories most relevant to ``query``, best first.

        Only ``user_id``'s memories are searched, never another user's. Candidates are
        over-fetched by similarity, re-ranked by the blended score, gated by ``min_score``
        and deduplicated by text.

        Args:
            user_id: Whose memories to search.
            query: What the memories should be about.
            k: At most this many memories.
            min_score: Memories whose blended score is below this are dropped.
            exclude_session: Leave out this session's memories (its turns are in the window).
            now: The moment ages are measured from (default: now).

        Returns:
            Memories with ``similarity`` (cosine) and ``score`` (blended) set.
        """
        check_id("user_id", user_id)
        if k <= 0 or not query or not query.strip() or not self.store.exists():
            return []
        try:
            self.store.check_embedder(self.embedder.model_id)
        except EmbedderMismatchError as exc:
            raise self._mismatch(exc) from exc
        where: dict[str, Any] = {"user_id": user_id}
        if exclude_session is not None:
            where = {"$and": [{"user_id": user_id}, {"session_id": {"$ne": exclude_session}}]}
        vector = self.embedder.embed_query(query)
        hits = self.store.query(vector, k=max(OVERFETCH * k, 16), where=where)
        now_ts = as_utc(now).timestamp()
        w = self.recency_weight
        ranked = []
        for hit in hits:
            meta = hit.metadata
            if meta.get("user_id") != user_id:  # the filter already ensures it; never trust one line
                continue
            age_days = (now_ts - _created_ts(meta)) / _SECONDS_PER_DAY
            score = (1.0 - w) * hit.score + w * recency(age_days, self.half_life_days)
            if min_score is not None and score < min_score:
                continue
            ranked.append(memory_from_hit(hit, score=score, similarity=hit.score))
        ranked.sort(key=lambda m: (m.score, m.created_at), reverse=True)
        out: list[Memory] = []
        seen: set[str] = set()
        for memory in ranked:
            if memory.text not in seen:
                seen.add(memory.text)
                out.append(memory)
            if len(out) == k:
                break
        return out

    def list(self, user_id: str | None = None, session_id: str | None = None) -> list[Memory]:
        """Stored memories (of one user and/or session, when given), newest first."""
        filters: list[dict[str, Any]] = []
        if user_id is not None:
            filters.append({"user_id": user_id})
        if session_id is not None:
            filters.append({"session_id": session_id})
        hits = self.store.get_records(where=_where(filters))
        hits.sort(key=lambda h: (_created_ts(h.metadata), h.chunk_id), reverse=True)
        return [memory_from_hit(h) for h in hits]

    def forget(self, user_id: str, session_id: str | None = None) -> int:
        """Delete a user's memories (one session's, when given); returns how many."""
        return len(self.forget_ids(user_id, session_id=session_id))

    def forget_ids(
        self, user_id: str, *, session_id: str | None = None, memory_id: str | None = None
    ) -> list[str]:
        """Delete a user's memories (one session's, or the one memory, when given); returns their ids.

        A ``memory_id`` of another user deletes nothing.
        """
        check_id("user_id", user_id)
        filters: list[dict[str, Any]] = [{"user_id": user_id}]
        if session_id is not None:
            filters.append({"session_id": session_id})
        if memory_id is not None:
            ids = [h.chunk_id for h in self.store.get_records(ids=[memory_id]) if h.metadata.get("user_id") == user_id]
            if session_id is not None:
                ids = [i for i in ids if i in self.store.ids(_where(filters))]
        else:
            where = _where(filters)
            assert where is not None
            ids = sorted(self.store.ids(where))
        self.store.delete(ids)
        if self.keyword is not None:
            self.keyword.delete(ids)
        return ids

    def clear(self) -> int:
        """Delete every user's memories (the whole collection); returns how many there were."""
        n = self.store.count()
        self.store.drop()
        if self.keyword is not None:
            self.keyword.drop()
        return n

    def export(self, user_id: str) -> list[dict[str, Any]]:
        """A user's memories as JSON-ready dicts, newest first."""
        check_id("user_id", user_id)
        return [
            {"id": m.id, "user_id": m.user_id, "session_id": m.session_id, "kind": m.kind, "text": m.text,
             "created_at": m.created_at}
            for m in self.list(user_id)
        ]


def _where(filters: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    if not filters:
        return None
    if len(filters) == 1:
        return dict(filters[0])
    return {"$and": [dict(f) for f in filters]}


def _created_ts(meta: Mapping[str, Any]) -> float:
    ts = meta.get("created_ts")
    if isinstance(ts, int | float):
        return float(ts)
    try:
        return as_utc(str(meta.get("created_at"))).timestamp()
    except (ConfigError, TypeError, ValueError):
        return 0.0


def memory_from_hit(hit: Hit, *, score: float = 0.0, similarity: float = 0.0) -> Memory:
    """A stored memory unit (a Chroma or keyword-index hit) as a ``Memory``."""
    meta = hit.metadata
    return Memory(
        id=hit.chunk_id,
        user_id=str(meta.get("user_id", "")),
        session_id=str(meta.get("session_id", "")),
        text=hit.text,
        kind=str(meta.get("kind", "exchange")),
        created_at=str(meta.get("created_at", "")),
        score=score,
        similarity=similarity,
        turn=meta.get("turn") or None,
    )
