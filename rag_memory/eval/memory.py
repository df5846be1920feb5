"""``ragmem eval memory``: replay conversations into memory, ask what it would inject, score it.

Each conversation is replayed session by session into a fresh user's memory through the code
that stores a turn for ``ask``/``chat`` (``MemoryService.remember_turns``; both speakers' turns
stored as spoken turns with the speaker's name, image captions kept as text, the session's
date as the memory clock). Then, for every question, the memory layer is asked what it would
inject within a token budget, and that is scored against the question's evidence turns:

- ``recall``: mean share of a question's evidence turns injected;
- ``any`` / ``all``: share of questions with at least one / every evidence turn injected;
- ``session_hit@1``: share whose first injected memory comes from an evidence session;
- ``mrr``: mean reciprocal rank of the first injected memory holding an evidence turn;
- ``tokens_per_question``: memory tokens injected, against ``conversation_tokens``;
- ``p50_ms`` / ``p95_ms``: recall latency per question.

Questions of an "adversarial" category (LoCoMo's 5: never mentioned; LongMemEval's
abstention questions) are scored apart, as the share for which nothing was injected.

Data sets: LoCoMo (``locomo10.json``), the LongMemEval format, and ragmem's own JSONL (one
conversation per line; see docs/benchmarks.md).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rag_memory.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = [
    "ADVERSARIAL",
    "Conversation",
    "MemoryDataset",
    "MemoryEvalResult",
    "MemoryQuestion",
    "ReplaySession",
    "ReplayTurn",
    "evaluate_memory",
    "load_locomo",
    "load_longmemeval",
    "load_memory_dataset",
    "load_memory_jsonl",
    "replay",
    "score_question",
]

LOCOMO = "locomo/locomo10.json"
ADVERSARIAL = frozenset({"5", "adversarial", "abstention"})
LOCOMO_CATEGORIES = {"1": "multi-hop", "2": "temporal", "3": "open-domain", "4": "single-hop", "5": "adversarial"}


# -- the data ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplayTurn:
    """One spoken turn: its id (unique in the conversation), who said it, what was said."""

    id: str
    speaker: str
    text: str


@dataclass(frozen=True)
class ReplaySession:
    id: str
    date: datetime | None
    turns: tuple[ReplayTurn, ...]


@dataclass(frozen=True)
class MemoryQuestion:
    """A question about a conversation and the turns that hold its answer."""

    question: str
    evidence: tuple[str, ...]
    category: str
    answer: str | None = None
    asked_at: datetime | None = None


@dataclass(frozen=True)
class Conversation:
    id: str
    sessions: tuple[ReplaySession, ...]
    questions: tuple[MemoryQuestion, ...]

    @property
    def turn_ids(self) -> set[str]:
        return {t.id for s in self.sessions for t in s.turns}

    @property
    def last_date(self) -> datetime | None:
        dates = [s.date for s in self.sessions if s.date is not None]
        return max(dates) if dates else None


@dataclass
class MemoryDataset:
    name: str
    conversations: list[Conversation]
    dropped_evidence: int = 0  # evidence ids that were malformed or named no turn
    normalised_evidence: int = 0  # evidence ids rewritten to a turn that exists

    @property
    def turns(self) -> int:
        return sum(len(s.turns) for c in self.conversations for s in c.sessions)

    @property
    def questions(self) -> int:
        return sum(len(c.questions) for c in self.conversations)


# -- loaders -----------------------------------------------------------------------------------
def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} file {path} not found; check the path (or --data-dir)") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} file {path}: {exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"{what} file {path} is not valid JSON: {exc}") from exc


_LOCOMO_DATE = ("%I:%M %p on %d %B, %Y", "%I:%M %p on %d %b, %Y", "%I:%M %p on %B %d, %Y")


def parse_date(text: Any, where: str) -> datetime | None:
    """A LoCoMo (``1:56 pm on 8 May, 2023``), LongMemEval (``2023/05/20 (Sat) 02:21``) or ISO 8601 date."""
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        raise ConfigError(f"{where}: a date must be text, got {text!r}")
    raw = " ".join(text.split())
    for fmt in _LOCOMO_DATE:
        try:
            return datetime.strptime(raw.upper().replace(" ON ", " on "), fmt).replace(tzinfo=UTC)
        except ValueError:
            pass
    m = re.fullmatch(r"(\d{4})/(\d{2})/(\d{2})(?: \(\w+\))?(?: (\d{1,2}):(\d{2}))?", raw)
    if m:
        y, mo, d, h, mi = m.groups()
        return datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), tzinfo=UTC)
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(
            f"{where}: date {text!r} is not understood; use ISO 8601 (2024-05-01T09:30:00+00:00)"
        ) from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


_DIA = re.compile(r"D(\d+):(\d+)")


def _locomo_evidence(raw: Iterable[Any], turn_ids: set[str], counts: list[int]) -> tuple[str, ...]:
    """Evidence ids as turns that exist: ``"D8:6; D9:17"`` split, ``"D30:05"`` read as D30:5;
    ``"D"`` and ids naming no turn dropped (counted in ``counts[0]``, rewrites in ``counts[1]``)."""
    out: list[str] = []
    for item in raw:
        pieces = [p.strip() for p in re.split(r"[;,\s]+", str(item)) if p.strip()]
        if not pieces:
            counts[0] += 1
            continue
        if len(pieces) > 1:
            counts[1] += 1
        for piece in pieces:
            m = _DIA.fullmatch(piece)
            if not m:
                counts[0] += 1
                continue
            ref = f"D{int(m[1])}:{int(m[2])}"
            if ref not in turn_ids:
                counts[0] += 1
                continue
            if ref != piece and len(pieces) == 1:
                counts[1] += 1
            if ref not in out:
                out.append(ref)
    return tuple(out)


def load_locomo(path: Path, *, limit: int | None = None, conversations: Sequence[int] | None = None) -> MemoryDataset:
    """LoCoMo: 10 conversations, each turn one replayed turn, questions with evidence turns.

    Args:
        path: ``locomo10.json``.
        limit: Only the first N conversations.
        conversations: Only these conversations (0-based indices), e.g. ``range(5)``.
    """
    data = _read_json(path, "LoCoMo")
    if not isinstance(data, list):
        raise ConfigError(f"{path}: LoCoMo is a JSON list of conversations")
    counts = [0, 0]
    out = []
    picked = list(conversations) if conversations is not None else list(range(len(data)))
    if limit is not None:
        picked = picked[:limit]
    for index in picked:
        if not 0 <= index < len(data):
            raise ConfigError(f"{path}: there is no conversation {index} (it has {len(data)})")
        item = data[index]
        conv = item["conversation"]
        keys = sorted(
            (k for k in conv if re.fullmatch(r"session_\d+", k) and isinstance(conv[k], list)),
            key=lambda k: int(k.split("_")[1]),
        )
        sessions = []
        for key in keys:
            turns = []
            for t in conv[key]:
                text = str(t.get("text", "")).strip()
                if t.get("blip_caption"):
                    text += f" [shares a photo of {str(t['blip_caption']).strip()}]"
                if text:
                    turns.append(ReplayTurn(str(t["dia_id"]), str(t["speaker"]), text))
            date = parse_date(conv.get(f"{key}_date_time"), f"{path} {item.get('sample_id')} {key}")
            sessions.append(ReplaySession(key, date, tuple(turns)))
        conversation = Conversation(str(item.get("sample_id", index)), tuple(sessions), ())
        ids = conversation.turn_ids
        questions = tuple(
            MemoryQuestion(
                str(q["question"]), _locomo_evidence(q.get("evidence", []), ids, counts), str(q["category"]),
                None if q.get("answer") is None else str(q["answer"]), conversation.last_date,
            )
            for q in item.get("qa", [])
        )
        out.append(Conversation(conversation.id, conversation.sessions, questions))
    return MemoryDataset("locomo", out, dropped_evidence=counts[0], normalised_evidence=counts[1])


def load_longmemeval(path: Path, *, limit: int | None = None) -> MemoryDataset:
    """The LongMemEval format: a JSON list of instances, each one question over its own
    haystack of sessions (``haystack_session_ids``, ``haystack_dates``, ``haystack_sessions``
    of ``{role, content, has_answer?}`` turns). Evidence: the turns marked ``has_answer``, or
    every turn of the ``answer_session_ids`` when none is marked. Question ids ending in
    ``_abs`` are abstention questions (scored like LoCoMo's category 5)."""
    data = _read_json(path, "LongMemEval")
    if not isinstance(data, list):
        raise ConfigError(f"{path}: the LongMemEval format is a JSON list of question instances")
    out = []
    for n, item in enumerate(data[:limit] if limit else data):
        where = f"{path} instance {n}"
        try:
            ids, dates, hay = item["haystack_session_ids"], item["haystack_dates"], item["haystack_sessions"]
            qid, question = str(item["question_id"]), str(item["question"])
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{where}: missing field {exc}; see the LongMemEval format") from exc
        if not len(ids) == len(dates) == len(hay):
            raise ConfigError(f"{where}: haystack_session_ids, haystack_dates and haystack_sessions differ in length")
        sessions, marked, by_session = [], [], {}
        for sid, date, turns in zip(ids, dates, hay, strict=True):
            replayed = []
            for i, t in enumerate(turns):
                ref = f"{sid}#{i}"
                role = str(t.get("role", "user"))
                replayed.append(ReplayTurn(ref, "User" if role == "user" else "Assistant", str(t.get("content", ""))))
                if t.get("has_answer"):
                    marked.append(ref)
            by_session[str(sid)] = [t.id for t in replayed]
            sessions.append(ReplaySession(str(sid), parse_date(date, where), tuple(replayed)))
        evidence = marked or [r for sid in item.get("answer_session_ids", []) for r in by_session.get(str(sid), [])]
        category = "abstention" if qid.endswith("_abs") else str(item.get("question_type", "longmemeval"))
        q = MemoryQuestion(question, tuple(evidence), category, None if item.get("answer") is None else
                           str(item["answer"]), parse_date(item.get("question_date"), where))
        out.append(Conversation(qid, tuple(sessions), (q,)))
    return MemoryDataset("longmemeval", out)


def load_memory_jsonl(path: Path, *, limit: int | None = None) -> MemoryDataset:
    """ragmem's memory-eval JSONL: one conversation per line,

    ``{"id", "sessions": [{"id", "date", "turns": [{"id", "speaker", "text"}]}],
    "questions": [{"question", "evidence": [turn ids], "category"?, "answer"?, "date"?}]}``.
    Turn ids are unique within a conversation; dates are ISO 8601.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise ConfigError(f"conversations file {path} not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read conversations file {path}: {exc}") from exc
    out, dropped = [], 0
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{where}: not valid JSON ({exc})") from exc
        if not isinstance(obj, Mapping) or not isinstance(obj.get("sessions"), list):
            raise ConfigError(f'{where}: each line is a conversation object with "sessions" and "questions"')
        sessions = []
        for si, s in enumerate(obj["sessions"]):
            try:
                turns = tuple(ReplayTurn(str(t["id"]), str(t.get("speaker") or "User"), str(t["text"]))
                              for t in s["turns"])
            except (KeyError, TypeError) as exc:
                raise ConfigError(f'{where}: session {si}: each turn needs "id" and "text" (missing {exc})') from exc
            sessions.append(ReplaySession(str(s.get("id", f"s{si + 1}")), parse_date(s.get("date"), where), turns))
        conv = Conversation(str(obj.get("id", n)), tuple(sessions), ())
        ids = conv.turn_ids
        questions = []
        for qi, q in enumerate(obj.get("questions", [])):
            if not isinstance(q, Mapping) or not str(q.get("question", "")).strip():
                raise ConfigError(f'{where}: question {qi} needs a "question" text')
            evidence = tuple(str(e) for e in q.get("evidence", []) if str(e) in ids)
            dropped += len(q.get("evidence", [])) - len(evidence)
            questions.append(MemoryQuestion(
                str(q["question"]), evidence, str(q.get("category", "single")),
                None if q.get("answer") is None else str(q["answer"]),
                parse_date(q.get("date"), where) or conv.last_date,
            ))
        out.append(Conversation(conv.id, conv.sessions, tuple(questions)))
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise ConfigError(f"conversations file {path} is empty")
    return MemoryDataset(Path(path).stem, out, dropped_evidence=dropped)


def load_memory_dataset(
    name: str, *, data_dir: Path | None = None, limit: int | None = None, conversations: Sequence[int] | None = None
) -> MemoryDataset:
    """A named data set (``locomo``) from ``data_dir``, else ``$RAGMEM_DATA_DIR``, else a
    ``shared/data`` folder in or above the working folder (as ``ragmem eval retrieval``)."""
    if name != "locomo":
        raise ConfigError(f"unknown memory dataset {name!r}; use locomo, or --conversations FILE.jsonl"
                          " / --longmemeval FILE.json")
    from rag_memory.eval.retrieval import data_file

    return load_locomo(data_file(LOCOMO, data_dir), limit=limit, conversations=conversations)


# -- replay --------------------------------------------------------------------------------------
def replay(memory, dataset: MemoryDataset, *, progress: Callable[[str, int, int], None] | None = None) -> None:
    """Store every conversation session by session into its own user's memory (user id = the
    conversation's id), one batch per session."""
    total = dataset.turns
    done = 0
    for conv in dataset.conversations:
        for session in conv.sessions:
            if not session.turns:
                continue
            from rag_memory.memory.service import SpokenTurn

            memory.remember_turns(
                conv.id, session.id,
                [SpokenTurn(t.text, speaker=t.speaker, created_at=session.date, ref=t.id) for t in session.turns],
            )
            done += len(session.turns)
            if progress:
                progress("replay", done, total)


# -- scoring -------------------------------------------------------------------------------------
def unit_turns(memory) -> list[str]:
    """The conversation turn ids a recalled unit holds (``turns`` metadata, else its ``turn``)."""
    refs = list(getattr(memory, "turns", None) or ())
    if not refs and memory.turn:
        refs = [memory.turn]
    prefix = f"{memory.session_id}:"
    return [r[len(prefix):] if r.startswith(prefix) else r for r in refs]


def score_question(injected: Sequence[Any], evidence: Sequence[str], turn_session: Mapping[str, str]) -> dict[str, float]:
    """One question's figures from the injected memories (best first) and its evidence turns."""
    gold = set(evidence)
    gold_sessions = {turn_session[e] for e in gold if e in turn_session}
    covered: set[str] = set()
    first = 0.0
    for rank, m in enumerate(injected, 1):
        turns = set(unit_turns(m))
        if not first and turns & gold:
            first = 1.0 / rank
        covered |= turns
    found = len(covered & gold)
    return {
        "recall": found / len(gold) if gold else 0.0,
        "any": float(found > 0),
        "all": float(bool(gold) and found == len(gold)),
        "session_hit@1": float(bool(injected) and injected[0].session_id in gold_sessions),
        "mrr": first,
    }


METRICS = ("recall", "any", "all", "session_hit@1", "mrr")


@dataclass
class StrategyResult:
    per_question: list[dict[str, Any]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        answerable = [q for q in self.per_question if q["category"] not in ADVERSARIAL and q["evidence"]]
        adversarial = [q for q in self.per_question if q["category"] in ADVERSARIAL]
        out: dict[str, Any] = _mean_metrics(answerable)
        out["questions"] = len(answerable)
        out["tokens_per_question"] = _mean([q["tokens"] for q in answerable])
        lat = sorted(self.latencies)
        out["p50_ms"] = round(_percentile(lat, 50) * 1000, 2)
        out["p95_ms"] = round(_percentile(lat, 95) * 1000, 2)
        by_cat: dict[str, Any] = {}
        for cat in sorted({q["category"] for q in answerable}, key=_cat_key):
            qs = [q for q in answerable if q["category"] == cat]
            by_cat[cat] = {**_mean_metrics(qs), "questions": len(qs),
                           "tokens_per_question": _mean([q["tokens"] for q in qs])}
        if adversarial:
            by_cat["adversarial"] = {
                "questions": len(adversarial),
                "nothing_injected": _mean([float(q["injected"] == 0) for q in adversarial]),
                "tokens_per_question": _mean([q["tokens"] for q in adversarial]),
            }
        out["by_category"] = by_cat
        return out


def _cat_key(cat: str) -> tuple[int, str]:
    return (int(cat), "") if cat.isdigit() else (99, cat)


def _mean(values: Sequence[float]) -> float:
    return round(statistics.fmean(values), 4) if values else 0.0


def _mean_metrics(qs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    return {m: _mean([q[m] for q in qs]) for m in METRICS}


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[i]


@dataclass
class MemoryEvalResult:
    dataset: str
    conversations: int
    turns: int
    budget: int
    default: str
    embedder: str
    results: dict[str, dict[str, Any]]
    conversation_tokens: float
    dropped_evidence: int
    normalised_evidence: int
    replay_seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def questions(self) -> int:
        return self.results[self.default]["questions"] if self.results else 0

    def as_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "questions": self.questions,
            "budget": self.budget,
            "default": self.default,
            "results": self.results,
            "conversations": self.conversations,
            "turns": self.turns,
            "conversation_tokens": self.conversation_tokens,
            "embedder": self.embedder,
            "dropped_evidence": self.dropped_evidence,
            "normalised_evidence": self.normalised_evidence,
            "replay_seconds": round(self.replay_seconds, 2),
            "settings": self.settings,
        }


def parse_selection(text: str) -> list[int]:
    """``"0-4"`` or ``"5,7,9"`` (or both, ``"0-2,7"``) as conversation indices."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ConfigError(f"conversation selection {text!r} is not valid; use e.g. 0-4 or 5,7,9")
        lo, hi = int(m[1]), int(m[2] or m[1])
        if hi < lo:
            raise ConfigError(f"conversation range {part!r} runs backwards")
        out.extend(range(lo, hi + 1))
    return out


def strategy_set(names: str | None) -> dict[str, Any]:
    """The named strategies to compare (``all``, or a comma-separated list of
    ``rag_memory.memory.recall.STRATEGIES`` names); ``None``: the default one."""
    from rag_memory.memory.recall import DEFAULT_NAME, STRATEGIES

    if not names:
        return {DEFAULT_NAME: STRATEGIES[DEFAULT_NAME]}
    if names.strip() == "all":
        return dict(STRATEGIES)
    out = {}
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name not in STRATEGIES:
            raise ConfigError(f"unknown memory strategy {name!r}; use all or some of {', '.join(STRATEGIES)}")
        out[name] = STRATEGIES[name]
    return out


def plot_budgets(result: MemoryEvalResult, path: Path) -> None:
    """Draw evidence recall against the token budget, one line per strategy (PNG)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError("--plot needs matplotlib: pip install matplotlib") from exc
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, m in result.results.items():
        curve = m.get("recall_by_budget") or {}
        if curve:
            xs = sorted(int(b) for b in curve)
            ax.plot(xs, [curve[str(x)] for x in xs], marker="o", label=name)
    ax.set_xlabel("memory budget (tokens per question)")
    ax.set_ylabel("evidence recall")
    ax.set_title(f"{result.dataset}: evidence recall by budget ({result.embedder})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    except OSError as exc:
        raise ConfigError(f"cannot write the plot to {path}: {exc}") from exc
    finally:
        plt.close(fig)


def evaluate_memory(
    dataset: MemoryDataset,
    settings,
    *,
    budget: int = 1000,
    strategies: Mapping[str, Any] | None = None,
    embedder=None,
    progress: Callable[[str, int, int], None] | None = None,
    home: Path | None = None,
    budgets: Sequence[int] | None = None,
    parts: Mapping[str, Sequence[str]] | None = None,
    replayed: bool = False,
) -> MemoryEvalResult:
    """Replay ``dataset`` into a fresh memory under a temporary home and score each strategy.

    Args:
        dataset: The conversations and questions.
        settings: Effective settings (embedder, memory settings); the home is replaced.
        budget: Memory tokens per question.
        strategies: ``{name: RecallStrategy}`` to compare (default: only the default strategy).
        embedder: An embedder to use instead of building the configured one (tests pass fakes).
        progress: Called as ``progress(stage, done, total)``.
        home: Where to build the memory (default: a temporary folder, removed afterwards).
        budgets: Also report evidence recall at these budgets (``recall_by_budget``).
        parts: Also report each strategy on these subsets of conversations (``{name: [ids]}``),
            e.g. the conversations a default was tuned on and the held-out ones.
        replayed: ``home`` already holds this data set, replayed by an earlier run: skip the
            replay (for comparing recall strategies without re-embedding).

    Returns:
        Figures per strategy; ``default`` names the strategy ``ask`` uses.
    """
    from rag_memory.memory.recall import DEFAULT_NAME, STRATEGIES
    from rag_memory.pipelines.components import Components

    if budget < 1:
        raise ConfigError(f"the memory budget must be at least 1 token, got {budget}")
    strategies = dict(strategies or {DEFAULT_NAME: STRATEGIES[DEFAULT_NAME]})
    default = next((n for n, s in strategies.items() if s == STRATEGIES[DEFAULT_NAME]), next(iter(strategies)))
    with tempfile.TemporaryDirectory(prefix="ragmem-memeval-") as tmp:
        root = Path(home) if home is not None else Path(tmp)
        comps = Components(settings.replace(home=root), embedder=embedder)
        service = comps.memory
        started = time.perf_counter()
        if not replayed:
            replay(service, dataset, progress=progress)
        replay_seconds = time.perf_counter() - started
        conv_tokens = [
            sum(service.count_tokens(f"{t.speaker}: {t.text}") for s in c.sessions for t in s.turns)
            for c in dataset.conversations
        ]
        questions = [(c, q) for c in dataset.conversations for q in c.questions]
        recallers = {name: service.with_strategy(st) for name, st in strategies.items()}
        per: dict[str, StrategyResult] = {name: StrategyResult() for name in strategies}
        for i, (conv, q) in enumerate(questions):
            turn_session = {t.id: s.id for s in conv.sessions for t in s.turns}
            # The question is embedded once and the vector reused by every strategy (the
            # embedder caches it); each strategy that reads vectors is charged its time.
            t0 = time.perf_counter()
            service.long_term.embed_query(q.question)
            embed_s = time.perf_counter() - t0
            for name, recaller in recallers.items():
                t0 = time.perf_counter()
                ranked = recaller.rank(conv.id, q.question, now=q.asked_at)
                injected = recaller.pack(ranked, budget)
                spent = time.perf_counter() - t0
                per[name].latencies.append(spent + (embed_s if strategies[name].mode != "bm25" else 0.0))
                row = score_question(injected, q.evidence, turn_session)
                for b in budgets or ():
                    row[f"recall@{b}"] = score_question(recaller.pack(ranked, b), q.evidence, turn_session)["recall"]
                row.update(category=q.category, evidence=len(q.evidence), injected=len(injected),
                           tokens=sum(service.count_tokens(m.text) for m in injected), conversation=conv.id)
                per[name].per_question.append(row)
            if progress and (i % 20 == 0 or i == len(questions) - 1):
                progress("recall", i + 1, len(questions))
        results: dict[str, dict[str, Any]] = {}
        for name, res in per.items():
            results[name] = res.summary()
            for part, ids in (parts or {}).items():
                chosen = [i for i, q in enumerate(res.per_question) if q["conversation"] in set(ids)]
                sub = StrategyResult([res.per_question[i] for i in chosen], [res.latencies[i] for i in chosen])
                results[name].setdefault("parts", {})[part] = sub.summary()
            if budgets:
                answerable = [q for q in res.per_question if q["category"] not in ADVERSARIAL and q["evidence"]]
                results[name]["recall_by_budget"] = {str(b): _mean([q[f"recall@{b}"] for q in answerable])
                                                     for b in budgets}
        service.close()
    return MemoryEvalResult(
        dataset=dataset.name, conversations=len(dataset.conversations), turns=dataset.turns, budget=budget,
        default=default, embedder=comps.embedder.model_id, results=results,
        conversation_tokens=round(statistics.fmean(conv_tokens), 1) if conv_tokens else 0.0,
        dropped_evidence=dataset.dropped_evidence, normalised_evidence=dataset.normalised_evidence,
        replay_seconds=replay_seconds,
        settings={"memory_min_score": settings.memory_min_score, "memory_top_k": settings.memory_top_k,
                  "strategies": {n: dataclasses.asdict(st) for n, st in strategies.items()}},
    )
