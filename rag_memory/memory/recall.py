"""Recall: rank a user's memory units for a question, the way the knowledge base is ranked.

Dense (Chroma) and BM25 (the memory collection's FTS5 index, same terms as the knowledge
base) candidates are fused by ``knowledge_base.hybrid`` (min-max scores, a dense share scaled
by how much of the question the embedder reads, and by each list's separation), then:

- a question that names one of a conversation's speakers ("What did Caroline research?") is
  matched on its content without the name, and that speaker's own turns are raised;
- the relevance gate of the knowledge base (BM25 match strength or cosine,
  ``hybrid.passes_gate``) decides whether the question is about anything remembered at all:
  when no unit passes, nothing is recalled; when the question names a speaker and only others'
  first-person statements match it (``said_by_another``), nothing either;
- time cues in the question ("last week", "上个月", "when did I") weigh units said in the
  named period, or rank by time;
- entities the question names pull the units that mention them;
- the first unit comes from the session the best units agree on;
- a newer unit that updates an older one about the same thing marks the older as superseded.

Every step is a field of ``RecallStrategy``, so ``ragmem eval memory`` can compare them.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
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
        speakers: Speaker-aware: a question that names one of the conversation's speakers
            ("What did Caroline research?") is matched on its content without the name, and
            the units that speaker said are raised (``SPEAKER_BOOST``).
        gate_each: Drop each unit the relevance gate does not pass; without it the gate only
            decides whether anything is recalled at all (nothing passes: nothing recalled).
        lead_session: The first unit comes from the session the best units agree on
            (``lead_with_best_session``).
    """

    mode: str = "hybrid"
    candidates: int = 50
    gate: bool = True
    recency_weight: float = 0.0
    time_cues: bool = True
    entities: bool = True
    speakers: bool = True
    gate_each: bool = False
    lead_session: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"memory recall mode {self.mode!r} is not known; use one of {', '.join(MODES)}")
        if self.candidates < 1:
            raise ConfigError(f"memory candidates must be at least 1, got {self.candidates}")
        if not 0.0 <= self.recency_weight <= 1.0:
            raise ConfigError(f"recency_weight must be between 0 and 1, got {self.recency_weight}")

    def but(self, **changes: Any) -> RecallStrategy:
        return replace(self, **changes)


_PLAIN = RecallStrategy(gate=False, time_cues=False, entities=False, speakers=False, lead_session=False)

# Every strategy ``ragmem eval memory`` and benchmarks/memory_eval.py compare, by name.
STRATEGIES: dict[str, RecallStrategy] = {
    "dense": _PLAIN.but(mode="dense"),
    "dense+recency": _PLAIN.but(mode="dense", recency_weight=0.15),
    "bm25": _PLAIN.but(mode="bm25"),
    "hybrid": _PLAIN,
    "hybrid+time": _PLAIN.but(time_cues=True),
    "hybrid+entities": _PLAIN.but(entities=True),
    "hybrid+time+entities": _PLAIN.but(time_cues=True, entities=True),
    "hybrid+time+entities+speakers": _PLAIN.but(time_cues=True, entities=True, speakers=True),
    "default+gate-each": RecallStrategy(gate_each=True),
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
    speakers: Collection[str] = (),
) -> list[Memory]:
    """The user's memory units ranked for ``query`` by ``strategy``, best first (nothing when
    the gate finds no unit relevant; ungated units dropped when ``strategy.gate_each``).
    ``speakers``: the names the user's turns were stored under. See the module docstring."""
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
    named = named_speakers(query, speakers) if strategy.speakers and speakers else []
    asked = query
    if named:
        # "What did Caroline research?": both speakers' turns carry their names, so the name
        # says nothing about content; who said it is weighed apart (``SPEAKER_BOOST``).
        query = without_names(query, named)
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
    def weighted(question: str) -> dict[str, float]:
        weights = (long_term.keyword.term_weights(question) if long_term.keyword is not None
                   else {t: 1.0 for t in lexical_terms(question)})
        # "What did I say about X": the talk about talking is not what the memory must hold.
        return {t: w for t, w in weights.items() if t not in _META_TERMS} or weights

    if hits:
        hits = with_coverage(query, hits, weighted(query))
    hits = [_with(h, dense_prior=prior) for h in hits]
    now_dt = as_utc(now)
    now_ts = now_dt.timestamp()
    cue = None
    if strategy.time_cues:
        from rag_memory.memory.time_cues import time_cue

        cue = time_cue(asked, now_dt)
    passed: set[str] = set()
    if strategy.gate:
        # Whether the question is about anything remembered at all is read on the whole
        # question: a named speaker's own turns carry the name (who said it is weighed apart).
        judged = with_coverage(asked, hits, weighted(asked)) if named and hits else hits
        # A unit said in the period the question names needs less lexical evidence.
        passed = {
            h.chunk_id for h in judged
            if passes_gate(h, dense_gate, MEMORY_GATE)
            or (cue is not None and cue.periods and cue.covers(_when(h, now_dt))
                and passes_gate(h, dense_gate * PERIOD_GATE_SHARE, PERIOD_GATE))
        }
        if not passed:
            return []  # nothing the question is about: nothing recalled
        if strategy.gate_each:
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
    if len(named) == 1:
        if strategy.gate and said_by_another(out, named[0], {h.chunk_id: h.metadata.get("coverage") for h in hits}):
            return []
        out = [replace(m, score=m.score + SPEAKER_BOOST) if speaker_of(m.text) == named[0] else m for m in out]
        out.sort(key=lambda m: (-m.score, m.created_at))
    if strategy.lead_session and not (cue and cue.periods):  # a named period already picks the session
        out = lead_with_best_session(out)
    if strategy.time_cues:
        # Only a unit the gate vouches for may update another ("a new cat tree" does not
        # update the cat's name).
        out = mark_superseded(out, relevant=passed if strategy.gate else None)
    return out


def lead_with_best_session(memories: Sequence[Memory]) -> list[Memory]:
    """The best unit of the best session first: sessions are scored by their two best units
    among the first ``SESSION_WINDOW`` (the second at half weight), so a session several good
    units agree on leads over one lone match."""
    head = memories[:SESSION_WINDOW]
    if len(head) < 2:
        return list(memories)
    scores: dict[str, list[float]] = {}
    said: set[str] = set()
    for m in head:
        if m.turn and m.turn in said:
            continue  # a fact and the turn it was taken from are one piece of evidence
        said.add(m.turn or m.id)
        scores.setdefault(m.session_id, []).append(m.score)
    value = {sid: sum(s * 0.5**i for i, s in enumerate(sorted(v, reverse=True)[:2])) for sid, v in scores.items()}
    best = max(value, key=lambda sid: value[sid])
    i = next(i for i, m in enumerate(memories) if m.session_id == best)
    if i == 0:
        return list(memories)
    return [replace(memories[i], score=memories[0].score + 1e-6), *memories[:i], *memories[i + 1:]]


# An update says so: "I moved from Leeds to Porto", "now", "no longer", "我换到成都工作了", "改到".
_UPDATE = re.compile(
    r"\b(?:moved|move|switched|switch|changed|change|now|no longer|anymore|any more|instead|new|started|"
    r"quit|left|stopped|became|updated|rescheduled|postponed)\b|换到|换成|改到|改成|改为|搬到|搬去|调到|转到|"
    r"不再|现在|已经|如今|新的|辞职|离开",
    re.IGNORECASE,
)
_LABEL = re.compile(r"^[^:：\n]{1,40}[:：]\s*")
SUPERSEDE_WINDOW = 20
SESSION_WINDOW = 20


def mark_superseded(memories: Sequence[Memory], *, relevant: Collection[str] | None = None) -> list[Memory]:
    """Mark each older unit that a newer one updates (same subject, the newer one says it
    changed, or a fact of the same form with another value), and rank the newer first.

    Only the best ``SUPERSEDE_WINDOW`` units are compared, and only those whose ids are in
    ``relevant`` (when given) may update another; nothing is deleted: a superseded unit is still shown, as
    earlier, with ``superseded_by`` naming its successor.
    """
    from rag_memory.text.terms import term_set

    head = list(memories[:SUPERSEDE_WINDOW])
    terms = [term_set(_LABEL.sub("", m.text)) for m in head]
    marks: dict[int, int] = {}
    for i, old in enumerate(head):
        for j, new in enumerate(head):
            if i == j or new.created_at <= old.created_at or i in marks:
                continue
            if relevant is not None and new.id not in relevant:
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


# -- speakers ------------------------------------------------------------------------------
# Names a unit is never said under in a conversation between named people.
_PLAIN_LABELS = frozenset({"User", "Assistant"})
_CJK_CHAR = re.compile(r"[\u3400-\u9fff]")


def speaker_of(text: str) -> str | None:
    """Who said a unit (its ``Name: `` label), if it has one."""
    m = _LABEL.match(text)
    return m.group().rstrip(": ：") if m else None


def named_speakers(query: str, speakers: Collection[str]) -> list[str]:
    """The speakers a question names (whole words; a Chinese name anywhere), longest first."""
    out = []
    for name in sorted(set(speakers) - _PLAIN_LABELS, key=len, reverse=True):
        if _CJK_CHAR.search(name):
            if name in query:
                out.append(name)
        elif re.search(rf"(?<!\w){re.escape(name)}(?!\w)", query, re.IGNORECASE):
            out.append(name)
    return out


def without_names(query: str, names: Sequence[str]) -> str:
    """The question without these names (and their possessive), or as it was when nothing
    else would be left ("Who is Caroline?")."""
    from rag_memory.text.terms import lexical_terms

    out = query
    for name in names:
        if _CJK_CHAR.search(name):
            out = re.sub(rf"{re.escape(name)}的?", "", out)
        else:
            out = re.sub(rf"(?<!\w){re.escape(name)}(?:['’]s)?(?!\w)\s*", "", out, flags=re.IGNORECASE)
    return out if lexical_terms(out) else query


# A first-person statement: the speaker says it of themselves (not "what did you use?").
_FIRST_PERSON = re.compile(r"(?<!\w)(?:I|I'm|I've|I'd|I'll|me|my|mine|myself|we|our|us)(?!\w)|我|咱")
_SENTENCE = re.compile(r"(?<=[.!?。！？])\s*")


@lru_cache(maxsize=20_000)
def _own_statement(text: str) -> bool:
    body = _LABEL.sub("", text)
    said = " ".join(s for s in _SENTENCE.split(body) if not s.rstrip().endswith(("?", "？")) and "吗" not in s)
    return bool(_FIRST_PERSON.search(said))


def said_by_another(memories: Sequence[Memory], name: str, coverage: Mapping[str, float | None]) -> bool:
    """Whether a question about ``name`` is answered only by what someone else said of
    themselves: the best first-person statements by others outscore ``name``'s own (score
    plus term coverage) by more than ``SPEAKER_GATE``. LoCoMo's adversarial questions swap
    the speaker ("What did Caroline realise after her charity race?" when Melanie ran it)."""
    def best(mine: bool) -> tuple[float, float]:
        picked = [m for m in memories if (speaker_of(m.text) == name) == mine and _own_statement(m.text)]
        return (max((m.score for m in picked), default=0.0),
                max((coverage.get(m.id) or 0.0 for m in picked), default=0.0))

    (own_score, own_cov), (other_score, other_cov) = best(True), best(False)
    return (other_score - own_score) + (other_cov - own_cov) > SPEAKER_GATE


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
# Speakers (benchmarks/memory_eval.py, LoCoMo conversations 0-4): the units the named speaker
# said are raised by this much; a question is answered by nobody when others' statements
# outscore the speaker's own by more than SPEAKER_GATE (score + coverage, see said_by_another).
SPEAKER_BOOST = 0.3
SPEAKER_GATE = 1.0
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
