"""Recall: rank a user's memory units for a question, the way the knowledge base is ranked.

Dense (Chroma) and BM25 (the memory collection's FTS5 index, same terms as the knowledge
base) candidates are fused by ``knowledge_base.hybrid`` (min-max scores, a dense share scaled
by how much of the question the embedder reads, and by each list's separation), then:

- the relevance gate of the knowledge base drops a unit that neither side vouches for
  (BM25 match strength or cosine, ``hybrid.passes_gate``);
- time cues in the question ("last week", "上个月", "when did I") weigh units said in the
  named period, or rank by time;
- entities the question names pull the units that mention them, and one hop through the
  entity graph reaches units about related entities (multi-evidence questions);
- a newer unit that updates an older one about the same thing marks the older as superseded.

Every step is a field of ``RecallStrategy``, so ``ragmem eval memory`` can compare them.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from rag_memory.errors import ConfigError
from rag_memory.memory.long_term import memory_from_hit
from rag_memory.schema import Hit, Memory

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_NAME", "DEFAULT_STRATEGY", "MODES", "STRATEGIES", "RecallStrategy", "recall_units"]

MODES = ("hybrid", "dense", "bm25")


@dataclass(frozen=True)
class RecallStrategy:
    """How memory units are ranked for a question.

    Attributes:
        mode: ``hybrid`` (BM25 and dense fused, the default), ``dense`` or ``bm25``.
        candidates: Candidates each side contributes before fusion.
        gate: Drop units neither side vouches for (``hybrid.passes_gate``).
        recency_weight: Share of the score that comes from recency (0 leaves the order alone).
        time_cues: Weigh units by the period a question names ("last week", "上个月").
        entities: Boost units that mention entities the question names; one hop through the graph.
        neighbours: Also take up to this many turns on each side of a strong hit (same session).
    """

    mode: str = "hybrid"
    candidates: int = 50
    gate: bool = True
    recency_weight: float = 0.0
    time_cues: bool = True
    entities: bool = True
    neighbours: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"memory recall mode {self.mode!r} is not known; use one of {', '.join(MODES)}")
        if self.candidates < 1:
            raise ConfigError(f"memory candidates must be at least 1, got {self.candidates}")
        if not 0.0 <= self.recency_weight <= 1.0:
            raise ConfigError(f"recency_weight must be between 0 and 1, got {self.recency_weight}")
        if self.neighbours < 0:
            raise ConfigError(f"neighbours must be 0 or more, got {self.neighbours}")

    def but(self, **changes: Any) -> RecallStrategy:
        return replace(self, **changes)


_PLAIN = RecallStrategy(gate=False, time_cues=False, entities=False)

# Every strategy ``ragmem eval memory`` and benchmarks/memory_eval.py compare, by name.
STRATEGIES: dict[str, RecallStrategy] = {
    "dense": _PLAIN.but(mode="dense"),
    "dense+recency": _PLAIN.but(mode="dense", recency_weight=0.15),
    "bm25": _PLAIN.but(mode="bm25"),
    "hybrid": _PLAIN,
    "hybrid+time": _PLAIN.but(time_cues=True),
    "hybrid+entities": _PLAIN.but(entities=True),
    "hybrid+time+entities": _PLAIN.but(time_cues=True, entities=True),
    "hybrid+windows": _PLAIN.but(neighbours=1),
    "default": RecallStrategy(),
}
DEFAULT_NAME = "default"
DEFAULT_STRATEGY = STRATEGIES[DEFAULT_NAME]


def recall_units(
    long_term,
    user_id: str,
    query: str,
    strategy: RecallStrategy,
    *,
    exclude_session: str | None = None,
    now: datetime | None = None,
    dense_gate: float = 0.3,
    languages: str = "auto",
    timings: dict[str, float] | None = None,
    graph=None,
) -> list[Memory]:
    """The user's memory units ranked for ``query`` by ``strategy``, best first (ungated
    units dropped when ``strategy.gate``). See the module docstring."""
    from rag_memory.knowledge_base.hybrid import (
        dense_prior,
        fuse,
        fusion_weight,
        passes_gate,
        with_coverage,
    )
    from rag_memory.memory.history import as_utc
    from rag_memory.text.terms import lexical_terms

    timings = timings if timings is not None else {}
    where: dict[str, Any] = {"user_id": user_id}
    if exclude_session is not None:
        where = {"$and": [{"user_id": user_id}, {"session_id": {"$ne": exclude_session}}]}
    pool = strategy.candidates
    embedder = long_term.embedder
    prior = dense_prior(query, embedder.model_id, languages) if strategy.mode == "hybrid" else None
    lexical: list[Hit] = []
    dense: list[Hit] = []
    if strategy.mode in ("hybrid", "bm25") and long_term.keyword is not None:
        t = time.perf_counter()
        long_term.sync_keyword_index()
        from rag_memory.memory.long_term import scope

        lexical = long_term.keyword.search(query, pool * 2 if exclude_session else pool, [scope(user_id)])
        if exclude_session is not None:
            lexical = [h for h in lexical if h.metadata.get("session_id") != exclude_session][:pool]
        timings["bm25"] = time.perf_counter() - t
    if strategy.mode == "dense" or (strategy.mode == "hybrid" and (prior or len(lexical) < pool)):
        t = time.perf_counter()
        dense = long_term.store.query(long_term.embed_query(query), k=pool, where=where)
        timings["dense"] = time.perf_counter() - t
    if strategy.mode == "hybrid":
        weight = fusion_weight(prior or 0.0, [h.score for h in dense], [h.score for h in lexical])
        hits = fuse(dense, lexical, weight)
    elif strategy.mode == "dense":
        hits = [_with(h, dense_score=h.score, bm25_score=None) for h in dense]
    else:
        hits = [_with(h, dense_score=None, bm25_score=h.score) for h in lexical]
    if hits:
        weights = (long_term.keyword.term_weights(query) if long_term.keyword is not None
                   else {t: 1.0 for t in lexical_terms(query)})
        # "What did I say about X": the talk about talking is not what the memory must hold.
        weights = {t: w for t, w in weights.items() if t not in _META_TERMS} or weights
        hits = with_coverage(query, hits, weights)
    hits = [_with(h, dense_prior=prior) for h in hits]
    now_dt = as_utc(now)
    now_ts = now_dt.timestamp()
    cue = None
    if strategy.time_cues:
        from rag_memory.memory.time_cues import time_cue

        cue = time_cue(query, now_dt)
    if strategy.gate:
        # A unit said in the period the question names needs less lexical evidence.
        passed = {
            h.chunk_id for h in hits
            if passes_gate(h, dense_gate, MEMORY_GATE)
            or (cue is not None and cue.periods and cue.covers(_when(h, now_dt))
                and passes_gate(h, dense_gate * PERIOD_GATE_SHARE, PERIOD_GATE))
        }
        # A fact stands or falls with the turn it was taken from.
        passed_turns = {h.metadata.get("turn") for h in hits if h.chunk_id in passed and h.metadata.get("turn")}
        hits = [h for h in hits if h.chunk_id in passed
                or (h.metadata.get("kind") == "fact" and h.metadata.get("turn") in passed_turns)]

    hits = [h for h in hits if h.metadata.get("user_id") == user_id]  # the filter ensures it; never trust one line
    if strategy.entities and graph is not None and hits:
        t = time.perf_counter()
        hits = _entity_boost(hits, graph, user_id, query, now_dt, strategy)
        timings["entities"] = time.perf_counter() - t
    w = strategy.recency_weight
    out = []
    ts = [float(h.metadata.get("created_ts") or 0.0) for h in hits]
    lo, hi = (min(ts), max(ts)) if ts else (0.0, 0.0)
    for h, created in zip(hits, ts, strict=True):
        score = h.score
        if w:
            age_days = (now_ts - created) / 86_400.0
            score = (1 - w) * score + w * 0.5 ** (max(age_days, 0.0) / long_term.half_life_days)
        if cue:
            if cue.periods and cue.covers(datetime.fromtimestamp(created, tz=now_dt.tzinfo)):
                score += PERIOD_BOOST
            if cue.order and hi > lo:
                position = (created - lo) / (hi - lo)
                score += ORDER_BOOST * (position if cue.order == "newest" else 1 - position)
        out.append(_memory(h, score))
    # A fact reads right in a later prompt ("The user's name is …"): it goes just ahead of
    # the turn it was taken from.
    best_turn = {m.turn: m.score for m in out if m.kind == "turn" and m.turn}
    out = [replace(m, score=max(m.score, best_turn[m.turn] + 1e-6)) if m.kind == "fact" and m.turn in best_turn
           else m for m in out]
    out.sort(key=lambda m: (-m.score, m.created_at))
    out = _dedupe(out)
    if strategy.time_cues:
        out = mark_superseded(out)
    return out


# An update says so: "I moved from Leeds to Porto", "now", "no longer", "我换到成都工作了", "改到".
_UPDATE = re.compile(
    r"\b(?:moved|move|switched|switch|changed|change|now|no longer|anymore|any more|instead|new|started|"
    r"quit|left|stopped|became|updated|rescheduled|postponed)\b|换到|换成|改到|改成|改为|搬到|搬去|调到|转到|"
    r"不再|现在|已经|如今|新的|辞职|离开",
    re.IGNORECASE,
)
_LABEL = re.compile(r"^[^:：\n]{1,40}[:：]\s*")
SUPERSEDE_WINDOW = 20


def mark_superseded(memories: Sequence[Memory]) -> list[Memory]:
    """Mark each older unit that a newer one updates (same subject, the newer one says it
    changed, or a fact of the same form with another value), and rank the newer first.

    Only the best ``SUPERSEDE_WINDOW`` units are compared; nothing is deleted: a superseded
    unit is still shown, as earlier, with ``superseded_by`` naming its successor.
    """
    from rag_memory.text.terms import lexical_terms

    head = list(memories[:SUPERSEDE_WINDOW])
    terms = [set(lexical_terms(_LABEL.sub("", m.text))) for m in head]
    marks: dict[int, int] = {}
    for i, old in enumerate(head):
        for j, new in enumerate(head):
            if i == j or new.created_at <= old.created_at or i in marks:
                continue
            if _updates(new, old, terms[j], terms[i]):
                marks[i] = j
    if not marks:
        return list(memories)
    out = list(memories)
    for i, j in marks.items():
        old, new = head[i], head[j]
        score = min(old.score, new.score - 1e-6)
        out[i] = replace(old, superseded_by=new.id, score=score)
    out[: len(head)] = sorted(out[: len(head)], key=lambda m: -m.score)
    return out


def _updates(new: Memory, old: Memory, new_terms: set[str], old_terms: set[str]) -> bool:
    shared = new_terms & old_terms
    if not shared or not old_terms:
        return False
    overlap = len(shared) / len(new_terms | old_terms)
    if new.kind == "fact" and old.kind == "fact" and new.text != old.text:
        # Facts of one form ("The user lives in …", "用户在…工作") about different values.
        return _fact_form(new.text) == _fact_form(old.text) and overlap >= 0.1
    return bool(_UPDATE.search(_LABEL.sub("", new.text))) and overlap >= 0.15 and len(shared) >= 2


def _fact_form(text: str) -> str:
    if re.search(r"[\u4e00-\u9fff]", text):
        return text[:3] + ("…" + text[-3:] if len(text) > 6 else "")
    return " ".join(text.split()[:3])


def _meta_terms() -> frozenset[str]:
    from rag_memory.text.terms import lexical_terms

    # Talk about talking, and time words (the time cues weigh those): neither is what a
    # memory must hold to answer "what did I say I do now?".
    words = ("say said tell told ask asked mention mentioned talk talked remember discussed user "
             "now currently current still latest recently lately today anymore")
    return frozenset(lexical_terms(words)) | {"说", "说过", "提到", "讲", "问", "聊", "聊过", "现在", "目前", "最近"}


_META_TERMS = _meta_terms()


def _when(hit: Hit, now: datetime) -> datetime:
    return datetime.fromtimestamp(float(hit.metadata.get("created_ts") or 0.0), tz=now.tzinfo)


def _gate(**changes: Any):
    from rag_memory.knowledge_base.hybrid import GATE

    return replace(GATE, **changes)


# The memory gate: the knowledge base's (``hybrid.passes_gate``) with thresholds for memory
# units, which are single turns, shorter than chunks (benchmarks/memory_eval.py).
MEMORY_GATE = _gate()
# A unit said in the period a question names ("上个月我换了什么课") needs less evidence.
PERIOD_GATE_SHARE = 0.5
PERIOD_GATE = _gate(coverage_latin=MEMORY_GATE.coverage_latin * PERIOD_GATE_SHARE,
                    coverage_cjk=MEMORY_GATE.coverage_cjk * PERIOD_GATE_SHARE)
ENTITY_BOOST = 0.15
PERIOD_BOOST = 0.3
ORDER_BOOST = 0.1


def _entity_boost(hits: list[Hit], graph, user_id: str, query: str, now: datetime, strategy: RecallStrategy) -> list[Hit]:
    """Raise the units that mention entities the question names, weighted by how rare each
    entity is among the candidates (a name on every unit says nothing)."""
    from rag_memory.text.entities import extract_entities

    keys = [m.key for m in extract_entities(query, when=now) if m.kind != "date"]
    if not keys:
        return hits
    mentioning = graph.mentioning(user_id, keys)
    if not mentioning:
        return hits
    n = len(hits)
    weights = {}
    for key, ids in mentioning.items():
        share = sum(1 for h in hits if h.chunk_id in ids) / n
        weights[key] = 1.0 - share if share < 1.0 else 0.0
    total = sum(weights.values()) or 1.0
    out = []
    for h in hits:
        bonus = sum(w for key, w in weights.items() if h.chunk_id in mentioning[key]) / total
        out.append(Hit(chunk_id=h.chunk_id, text=h.text, score=h.score + ENTITY_BOOST * bonus, source=h.source,
                       page=h.page, title=h.title, metadata={**h.metadata, "entity_bonus": bonus}))
    return out


def _with(hit: Hit, **fields: Any) -> Hit:
    return Hit(chunk_id=hit.chunk_id, text=hit.text, score=hit.score, source=hit.source, page=hit.page,
               title=hit.title, metadata={**hit.metadata, **fields})


def _memory(hit: Hit, score: float) -> Memory:
    dense = hit.metadata.get("dense_score")
    return memory_from_hit(hit, score=float(score), similarity=float(dense) if dense is not None else 0.0)


def _dedupe(memories: Sequence[Memory]) -> list[Memory]:
    seen: set[str] = set()
    out = []
    for m in memories:
        if m.text not in seen:
            seen.add(m.text)
            out.append(m)
    return out
