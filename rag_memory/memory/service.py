"""One way in to conversation memory: what the CLI, the pipeline and the server call.

``MemoryService`` hides how memory is stored: the chat history (SQLite, every turn), the
long-term units (a Chroma collection of embedded turns, facts and summaries, with their BM25
rows) and the per-user entity graph. Callers remember turns, recall what is relevant to a
question within a token budget, list, search, export and forget; nothing outside
``rag_memory.memory`` builds a store or an embedder for memory.

Example:
    >>> memory = Components(Settings.load()).memory  # doctest: +SKIP
    >>> memory.remember_turn("alice", "s1", "The backup job runs every Sunday at 2 am.")  # doctest: +SKIP
    >>> [m.text for m in memory.recall("alice", "When does the backup run?", exclude_session="s2")]  # doctest: +SKIP
    ['User: The backup job runs every Sunday at 2 am.']
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from rag_memory.errors import ConfigError
from rag_memory.faults import checkpoint
from rag_memory.memory.facts import extract_facts
from rag_memory.memory.graph import EntityGraph
from rag_memory.memory.history import ChatHistory, SessionInfo, as_utc, check_id
from rag_memory.memory.long_term import LongTermMemory, MemoryUnit
from rag_memory.memory.recall import DEFAULT_STRATEGY, RecallStrategy, recall_units
from rag_memory.schema import Entity, Memory, Turn

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_BUDGET_TOKENS", "MemoryService", "SpokenTurn", "strip_citations"]

DEFAULT_BUDGET_TOKENS = 1000
MAX_ANSWER_CHARS = 600
MAX_CONTEXT_CHARS = 300

_CITATION = re.compile(r"\s?\[\d+(?:\s*[,，]\s*\d+)*\]")


def strip_citations(text: str) -> str:
    """An answer without its ``[n]`` citation markers (they point into one prompt only).

    Example:
        >>> strip_citations("Deleted files lose their chunks [1][2].")
        'Deleted files lose their chunks.'
    """
    return _CITATION.sub("", text).strip()


@dataclass(frozen=True)
class SpokenTurn:
    """A turn to remember.

    Attributes:
        text: What was said.
        speaker: Who said it, as the memory should name them (``Caroline``); ``None`` for the
            user of ``ask``/``chat`` (shown as ``User``).
        answer: The assistant's reply, stored in the history; kept in the memory unit only when
            ``answer_is_memory`` (a language model wrote it; an extract only quotes the
            knowledge base and is no memory).
        answer_is_memory: Whether ``answer`` belongs in long-term memory.
        created_at: When it was said (default: now).
        ref: Provenance of the turn within its session (default: its history turn id).
    """

    text: str
    speaker: str | None = None
    answer: str | None = None
    answer_is_memory: bool = True
    created_at: datetime | str | None = None
    ref: str | None = None


class MemoryService:
    """Conversation memory behind one facade.

    Args:
        history: The chat history (every turn of every session).
        long_term: The long-term memory units (and, through it, their keyword index).
        graph: The per-user entity graph (none: no entity memory).
        budget_tokens: Default memory budget per question, in tokens.
        count_tokens: Counts a text's tokens for the budget (default: an estimate that counts
            each CJK character as a token and four other characters as one).
        top_k: Most memories a recall returns, whatever the budget.
        min_score: The relevance gate's cosine: a unit passes when its cosine similarity is at
            least this (where the embedder reads the question's language) or its BM25 match
            is strong enough (``hybrid.passes_gate``).
        strategy: How units are ranked (``RecallStrategy``; the default is what ``ask`` uses).
        languages: Which scripts the embedder reads (the ``embedder_languages`` setting).
    """

    def __init__(
        self,
        history: ChatHistory,
        long_term: LongTermMemory,
        *,
        graph: EntityGraph | None = None,
        budget_tokens: int = DEFAULT_BUDGET_TOKENS,
        count_tokens: Callable[[str], int] | None = None,
        top_k: int = 50,
        min_score: float = 0.3,
        strategy: RecallStrategy = DEFAULT_STRATEGY,
        languages: str = "auto",
    ) -> None:
        if budget_tokens < 0:
            raise ConfigError(f"memory budget must be 0 tokens or more, got {budget_tokens}")
        if top_k < 0:
            raise ConfigError(f"memory top_k must be 0 or more, got {top_k}")
        self.history_store = history
        self.long_term = long_term
        self.graph = graph
        self.budget_tokens = budget_tokens
        self.top_k = top_k
        self.min_score = min_score
        self.strategy = strategy
        self.languages = languages
        self.last_timings: dict[str, float] = {}
        self._speakers: dict[str, set[str]] = {}  # user -> the names their turns were stored under
        if count_tokens is None:
            from rag_memory.generation.openai_compatible import approximate_tokens

            count_tokens = approximate_tokens
        # Packing counts the same stored units for question after question.
        self.count_tokens = lru_cache(maxsize=20_000)(count_tokens)

    # -- remembering ---------------------------------------------------------------------
    def remember_turn(
        self,
        user_id: str,
        session_id: str,
        text: str,
        *,
        answer: str | None = None,
        answer_is_memory: bool = True,
        speaker: str | None = None,
        created_at: datetime | str | None = None,
    ) -> list[Memory]:
        """Store one turn (and the assistant's answer) in the history and in long-term memory.

        The turn becomes a memory unit whatever its form, with its session, time and the
        turn before it as context; facts the user stated about themselves become extra units.

        Returns:
            The stored memory units: the turn first, then its facts.
        """
        turn = SpokenTurn(text, speaker=speaker, answer=answer, answer_is_memory=answer_is_memory,
                          created_at=created_at)
        return self.remember_turns(user_id, session_id, [turn])

    def remember_turns(self, user_id: str, session_id: str, turns: Sequence[SpokenTurn]) -> list[Memory]:
        """Store several turns of one session at once: one history transaction, one embedding
        batch, one keyword-index write. What ``remember_turn`` does, for a whole session."""
        check_id("user_id", user_id)
        check_id("session_id", session_id)
        for t in turns:
            if not isinstance(t.text, str) or not t.text.strip():
                raise ConfigError(f"a turn needs some text, got {t.text!r}")
        if not turns:
            return []
        previous = self.history_store.turns(user_id, session_id, limit=1)
        before = previous[-1].content if previous else None
        rows: list[tuple[str, str, datetime | str | None, dict[str, Any] | None]] = []
        whens = []
        for t in turns:
            when = as_utc(t.created_at)
            whens.append(when)
            meta = {"speaker": t.speaker} if t.speaker else None
            rows.append(("user", t.text.strip(), when, meta))
            if t.answer is not None:
                rows.append(("assistant", t.answer.strip(), when, None))
        stored = self.history_store.add_many(user_id, session_id, rows)
        self._speakers.pop(user_id, None)
        checkpoint("history")
        user_turns = [s for s in stored if s.role == "user"]
        units: list[MemoryUnit] = []
        for t, when, row in zip(turns, whens, user_turns, strict=True):
            text = t.text.strip()
            label = t.speaker or "User"
            body = f"{label}: {text}"
            if t.answer and t.answer_is_memory:
                reply = _clip(strip_citations(t.answer), MAX_ANSWER_CHARS)
                if reply:
                    body += f"\nAssistant: {reply}"
            ref = f"{session_id}:{t.ref or row.id}"
            units.append(MemoryUnit(session_id, "turn", body, when, turn=ref,
                                    context=_clip(before, MAX_CONTEXT_CHARS) if before else None))
            if t.speaker is None:
                units.extend(MemoryUnit(session_id, "fact", fact, when, turn=ref) for fact in extract_facts(text))
            before = f"{label}: {text}"
            if t.answer:
                before = f"Assistant: {t.answer.strip()}"
        stored_units = self.long_term.write_units(user_id, units)
        self._index_entities(user_id, stored_units, speakers={t.speaker for t in turns if t.speaker})
        return stored_units

    def _index_entities(self, user_id: str, memories: Sequence[Memory], *, speakers: set[str] = frozenset()) -> None:
        if self.graph is None:
            return
        from rag_memory.memory.graph import UnitMentions
        from rag_memory.text.entities import extract_entities

        units = [
            UnitMentions(m.id, m.session_id, m.turn, m.created_at,
                         tuple(extract_entities(m.text, when=as_utc(m.created_at), speakers=speakers)))
            for m in memories
        ]
        self.graph.add(user_id, units)

    def remember(
        self, user_id: str, session_id: str, text: str, *, kind: str = "fact", created_at: datetime | str | None = None
    ) -> Memory:
        """Store one memory unit directly (a fact or a summary), without a history turn."""
        memory = self.long_term.remember(user_id, session_id, text, kind=kind, created_at=created_at)
        self._index_entities(user_id, [memory])
        return memory

    # -- recalling -----------------------------------------------------------------------
    def recall(
        self,
        user_id: str,
        query: str,
        *,
        exclude_session: str | None = None,
        budget_tokens: int | None = None,
        now: datetime | str | None = None,
    ) -> list[Memory]:
        """What memory would inject for ``query``: the user's relevant memories, best first,
        packed into the token budget (whole units; the first one cut only if nothing fits).

        Args:
            user_id: Whose memories; never another user's.
            query: The (standalone) question.
            exclude_session: Leave out this session (its turns are in the recent window).
            budget_tokens: Tokens the memories may use together (default: the service's).
            now: The moment ages and time cues are measured from (default: now).
        """
        budget = self.budget_tokens if budget_tokens is None else budget_tokens
        if budget <= 0 or self.top_k == 0:
            return []
        ranked = self.rank(user_id, query, exclude_session=exclude_session, now=now)
        return self.pack(ranked, budget)[: self.top_k]

    def rank(
        self, user_id: str, query: str, *, exclude_session: str | None = None, now: datetime | str | None = None
    ) -> list[Memory]:
        """Every gated candidate for ``query``, best first, before the budget (``recall`` packs these)."""
        return self._rank(user_id, query, self.strategy, exclude_session=exclude_session, now=now)

    def _rank(
        self, user_id: str, query: str, strategy: RecallStrategy, *, exclude_session: str | None = None,
        now: datetime | str | None = None,
    ) -> list[Memory]:
        check_id("user_id", user_id)
        if not isinstance(query, str) or not query.strip() or not self.long_term.store.exists():
            return []
        self.long_term.check_embedder()
        timings: dict[str, float] = {}
        ranked = recall_units(
            self.long_term, user_id, query, strategy, exclude_session=exclude_session,
            now=as_utc(now), dense_gate=self.min_score, languages=self.languages, timings=timings,
            graph=self.graph, speakers=self.speakers(user_id) if strategy.speakers else (),
        )
        self.last_timings = timings
        return ranked

    def speakers(self, user_id: str) -> set[str]:
        """The names the user's turns were stored under (a replayed conversation's people)."""
        if user_id not in self._speakers:
            self._speakers[user_id] = self.history_store.speakers(user_id)
        return self._speakers[user_id]

    def with_strategy(self, strategy: RecallStrategy) -> MemoryService:
        """The same memory, recalled by another strategy (for comparisons such as ``ragmem eval memory``)."""
        other = copy.copy(self)
        other.strategy = strategy
        return other

    def pack(self, memories: Sequence[Memory], budget_tokens: int) -> list[Memory]:
        """The best memories that fit ``budget_tokens`` together, in rank order; a unit that
        does not fit is skipped for a smaller one after it, so whole units win over cut ones."""
        out, used = [], 0
        for m in memories:
            cost = self.count_tokens(m.text)
            if used + cost <= budget_tokens:
                out.append(m)
                used += cost
        return out

    def search(self, user_id: str, query: str, k: int = 10, *, session_id: str | None = None) -> list[Memory]:
        """The user's memories ranked for ``query`` (no gate, no budget), best first."""
        if k <= 0:
            raise ConfigError(f"k must be at least 1, got {k}")
        hits = self._rank(user_id, query, self.strategy.but(gate=False))
        if session_id is not None:
            hits = [m for m in hits if m.session_id == session_id]
        return hits[:k]

    def find_turns(
        self, text: str, *, user_id: str | None = None, session_id: str | None = None, limit: int = 50
    ) -> list[Turn]:
        """History turns containing ``text`` (case-insensitive), newest first."""
        return self.history_store.search(text, user_id=user_id, session_id=session_id, limit=limit)

    # -- inspecting ----------------------------------------------------------------------
    def list(self, user_id: str | None, session_id: str | None = None) -> list[Memory]:
        """Stored long-term memories (of one user and/or session, when given), newest first."""
        return self.long_term.list(user_id, session_id)

    def sessions(self, user_id: str | None = None) -> list[SessionInfo]:
        """Stored conversations (of one user, when given), most recently active first."""
        return self.history_store.sessions(user_id)

    def history(self, user_id: str, session_id: str, *, limit: int | None = None) -> list[Turn]:
        """A session's turns in order (the last ``limit`` when given)."""
        return self.history_store.turns(user_id, session_id, limit=limit)

    def owners(self, session_id: str) -> list[str]:
        """The users who have a session with this id."""
        return sorted({s.user_id for s in self.history_store.sessions() if s.session_id == session_id})

    def summary(self, user_id: str, session_id: str) -> tuple[str, int] | None:
        """The session's running summary and the last turn id it covers, if any."""
        return self.history_store.summary(user_id, session_id)

    def set_summary(self, user_id: str, session_id: str, summary: str, upto_turn_id: int) -> None:
        """Store the session's running summary, covering turns up to ``upto_turn_id``."""
        self.history_store.set_summary(user_id, session_id, summary, upto_turn_id)

    def entities(self, user_id: str) -> list[Entity]:
        """The people, places, things and dates the user's memories mention, most mentioned first."""
        check_id("user_id", user_id)
        return self.graph.entities(user_id) if self.graph is not None else []

    def about(self, user_id: str, query: str, *, now: datetime | str | None = None, limit: int = 3) -> list[str]:
        """"What I know about X": one line per entity the question names that the user's
        graph knows (kind, how often and when mentioned, what it is mentioned with)."""
        if self.graph is None or not query.strip():
            return []
        from rag_memory.text.entities import extract_entities

        keys = [m.key for m in extract_entities(query, when=as_utc(now)) if m.kind != "date"]
        lines = []
        for e in sorted(self.graph.lookup(user_id, keys), key=lambda e: -e.mentions)[:limit]:
            with_ = ", ".join(name for name, _ in e.related[:4])
            lines.append(
                f"{e.name} ({e.kind}): in {e.mentions} memories, {e.first_seen[:10]} to {e.last_seen[:10]}"
                + (f"; often with {with_}" if with_ else "")
            )
        return lines

    def export(self, user_id: str | None, session_id: str | None = None) -> dict[str, Any]:
        """Turns, summaries, long-term memories and entities (of one user / session) as JSON-ready data."""
        sessions = [s for s in self.sessions(user_id) if session_id is None or s.session_id == session_id]
        turns = [t for s in reversed(sessions) for t in self.history_store.turns(s.user_id, s.session_id)]
        summaries = [
            s for s in self.history_store.summaries(user_id) if session_id is None or s["session_id"] == session_id
        ]
        data: dict[str, Any] = {
            "exported_at": datetime.now(UTC).isoformat(),
            "user": user_id,
            "session": session_id,
            "turns": [dataclasses.asdict(t) for t in turns],
            "summaries": summaries,
            "memories": [memory_json(m) for m in self.list(user_id, session_id)],
        }
        if user_id is not None and session_id is None:
            data["entities"] = [dataclasses.asdict(e) for e in self.entities(user_id)]
        return data

    # -- forgetting ----------------------------------------------------------------------
    def forget(
        self, user_id: str, *, session_id: str | None = None, memory_id: str | None = None, history: bool = True
    ) -> int:
        """Delete a user's memory: everything, one session's, or one memory unit.

        Removes the units' vectors, keyword rows and entity mentions (an entity no memory
        mentions any more goes too), and, with ``history`` and no ``memory_id``, the history
        turns and summaries of the same scope.

        Returns:
            How many memory units were deleted.
        """
        check_id("user_id", user_id)
        self._speakers.pop(user_id, None)
        ids = self.long_term.forget_ids(user_id, session_id=session_id, memory_id=memory_id)
        if self.graph is not None:
            if session_id is None and memory_id is None:
                self.graph.forget_user(user_id)
            else:
                self.graph.remove(user_id, ids)
        if history and memory_id is None:
            self.history_store.delete(user_id, session_id)
        return len(ids)

    def clear(self) -> int:
        """Delete every user's history, memories and entities; returns the memory units deleted."""
        self.history_store.clear()
        self._speakers.clear()
        if self.graph is not None:
            self.graph.clear()
        return self.long_term.clear()

    def close(self) -> None:
        self.history_store.close()
        if self.graph is not None:
            self.graph.close()


def memory_json(memory: Memory, *, scored: bool = False) -> dict[str, Any]:
    """A memory as JSON-ready data (with its scores when ``scored``)."""
    data = dataclasses.asdict(memory)
    if scored:
        data["score"] = round(memory.score, 6)
        data["similarity"] = round(memory.similarity, 6)
    else:
        data.pop("score")
        data.pop("similarity")
    return data


def _clip(text: str | None, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
