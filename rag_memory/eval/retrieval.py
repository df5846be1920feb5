"""Retrieval evaluation: ingest a dataset's passages the normal way, ask its questions, and
score dense, BM25 and hybrid retrieval side by side.

Passages are written one file each (named by a safe form of the passage id) into a temporary
folder and ingested by ``Components(settings).ingestor()`` into a fresh collection under a
temporary home, so chunking, embedding and the keyword index are exactly what ``ragmem
ingest`` does. A passage may become several chunks; a ranking of chunks is turned into a
ranking of passages by keeping each passage's best-ranked chunk.

Datasets:
- ``squad``: SQuAD v1.1 dev (English), ``cmrc``: CMRC 2018 dev (Chinese), read from
  ``../shared/data`` beside the project (or an explicit path). A question's relevant passage
  is the paragraph it was asked about (not located by ``answer_start``).
- Your own: passages JSONL ``{"id", "text", "title"?}`` and questions JSONL
  ``{"question", "relevant": [passage ids]}``. Titles are kept but not indexed.

``limit`` keeps that many questions, spread evenly over the file, and every passage of the
articles they come from (all of a JSONL file's passages). A limited run has fewer distractor
passages than the full one, so its scores are higher: use it for smoke runs, not for reporting.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag_memory.errors import ConfigError, IngestError

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"
DATASETS = {
    "squad": Path("squad-v1.1") / "dev-v1.1.json",
    "cmrc": Path("cmrc2018") / "cmrc2018_dev.json",
}
MODES = ("dense", "bm25", "hybrid")
CUTOFFS = (1, 5, 10)
CURVE_DEPTH = 10  # hit@k is plotted for k = 1..CURVE_DEPTH
# Chunks retrieved per question: enough to find 10 distinct passages when passages are
# split into several chunks.
CHUNK_DEPTH = 40

Progress = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)``; stages: ``ingest``, ``dense``, ``bm25``, ``hybrid``."""


# -- data --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Passage:
    id: str
    text: str
    title: str | None = None


@dataclass(frozen=True)
class Question:
    question: str
    relevant: tuple[str, ...]


@dataclass(frozen=True)
class RetrievalDataset:
    name: str
    passages: tuple[Passage, ...]
    questions: tuple[Question, ...]


def dataset_path(name: str, data_dir: Path | None = None) -> Path:
    """Where a named dataset lives: ``data_dir``; else ``$RAGMEM_DATA_DIR``; else a
    ``shared/data`` folder in or above the working folder; else ``../shared/data`` beside a
    source checkout (an installed ragmem has no checkout, so the working folder comes first)."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)} or --passages/--questions")
    return data_file(DATASETS[name], data_dir)


def data_file(relative: str, data_dir: Path | None = None) -> Path:
    """A file of the shared evaluation data (``relative`` to the data folder), found as
    ``dataset_path`` says; the memory eval reads LoCoMo through it too."""
    import os

    if data_dir is not None:
        return Path(data_dir).expanduser() / relative
    if os.environ.get("RAGMEM_DATA_DIR"):
        return Path(os.environ["RAGMEM_DATA_DIR"]).expanduser() / relative
    here = Path.cwd().resolve()
    candidates = [folder / "shared" / "data" / relative for folder in (here, *here.parents)]
    candidates.append(DATA_DIR / relative)
    return next((c for c in candidates if c.is_file()), candidates[0])


def _spread(n_total: int, limit: int | None) -> list[int]:
    """``limit`` indices spread evenly over ``range(n_total)`` (all of them without a limit)."""
    if limit is None or limit >= n_total:
        return list(range(n_total))
    if limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    return sorted({int(i * n_total / limit) for i in range(limit)})


def load_squad_format(path: Path, *, name: str | None = None, limit: int | None = None) -> RetrievalDataset:
    """A SQuAD-format file (SQuAD, CMRC 2018): each paragraph a passage, each question
    relevant to the paragraph it was asked about.

    Args:
        path: The JSON file.
        name: The dataset's name in reports (default: the file's stem).
        limit: Keep this many questions (spread over the file) and their articles' passages.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    except FileNotFoundError as exc:
        raise ConfigError(
            f"dataset file {path} not found; pass --data-dir FOLDER (the folder holding squad-v1.1/ and"
            " cmrc2018/), set RAGMEM_DATA_DIR, or run from a folder with shared/data in or above it"
        ) from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a SQuAD-format JSON file ({{'data': [...]}}): {exc}") from exc
    articles: list[list[Passage]] = []
    questions: list[tuple[int, Question]] = []
    for ai, article in enumerate(data):
        title = article.get("title")
        passages = []
        for pi, para in enumerate(article.get("paragraphs", [])):
            pid = str(para.get("id") or f"a{ai:03d}p{pi:03d}")
            passages.append(Passage(pid, para["context"], title))
            for qa in para.get("qas", []):
                questions.append((ai, Question(qa["question"], (pid,))))
        articles.append(passages)
    keep = [questions[i] for i in _spread(len(questions), limit)]
    used = sorted({ai for ai, _ in keep})
    return RetrievalDataset(
        name or Path(path).stem,
        tuple(p for ai in used for p in articles[ai]),
        tuple(q for _, q in keep),
    )


def load_dataset(name: str, *, data_dir: Path | None = None, limit: int | None = None) -> RetrievalDataset:
    """``squad`` or ``cmrc`` from the shared data folder."""
    return load_squad_format(dataset_path(name, data_dir), name=name, limit=limit)


def _read_jsonl(path: Path, what: str) -> list[tuple[int, dict[str, Any]]]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} file {path} not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} file {path}: {exc}") from exc
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{path}:{n}: not valid JSON ({exc})") from exc
        if not isinstance(obj, dict):
            raise ConfigError(f"{path}:{n}: each line must be a JSON object")
        out.append((n, obj))
    if not out:
        raise ConfigError(f"{what} file {path} is empty")
    return out


def load_jsonl(
    passages: Path, questions: Path, *, name: str | None = None, limit: int | None = None
) -> RetrievalDataset:
    """Your own data: passages ``{"id", "text", "title"?}`` and questions
    ``{"question", "relevant": [ids]}``, one JSON object per line.

    Raises:
        ConfigError: A line is malformed, an id repeats, or a question names an unknown passage.
    """
    plist: list[Passage] = []
    seen: set[str] = set()
    for n, obj in _read_jsonl(passages, "passages"):
        pid, text = obj.get("id"), obj.get("text")
        if pid is None or not isinstance(text, str):
            raise ConfigError(f'{passages}:{n}: a passage needs "id" and "text", e.g. {{"id": "p1", "text": "..."}}')
        pid = str(pid)
        if pid in seen:
            raise ConfigError(f"{passages}:{n}: passage id {pid!r} appears twice")
        seen.add(pid)
        title = obj.get("title")
        plist.append(Passage(pid, text, str(title) if title is not None else None))
    qlist: list[Question] = []
    for n, obj in _read_jsonl(questions, "questions"):
        q, rel = obj.get("question"), obj.get("relevant")
        if not isinstance(q, str) or not q.strip() or not isinstance(rel, list) or not rel:
            raise ConfigError(
                f'{questions}:{n}: a question needs "question" and a non-empty "relevant" list of passage ids,'
                ' e.g. {"question": "...", "relevant": ["p1"]}'
            )
        rel_ids = tuple(str(r) for r in rel)
        unknown = [r for r in rel_ids if r not in seen]
        if unknown:
            raise ConfigError(f"{questions}:{n}: relevant passage id(s) {unknown} are not in {passages}")
        qlist.append(Question(q, rel_ids))
    keep = [qlist[i] for i in _spread(len(qlist), limit)]
    return RetrievalDataset(name or Path(passages).stem, tuple(plist), tuple(keep))


# -- metrics -----------------------------------------------------------------------------------


def first_relevant_rank(ranking: Sequence[str], relevant: Sequence[str] | set[str]) -> int | None:
    """1-based rank of the first relevant id, or None."""
    rel = set(relevant)
    for i, pid in enumerate(ranking):
        if pid in rel:
            return i + 1
    return None


def hit_at(ranking: Sequence[str], relevant, k: int) -> float:
    rank = first_relevant_rank(ranking[:k], relevant)
    return 1.0 if rank is not None else 0.0


def reciprocal_rank(ranking: Sequence[str], relevant, k: int = 10) -> float:
    rank = first_relevant_rank(ranking[:k], relevant)
    return 1.0 / rank if rank is not None else 0.0


def ndcg_at(ranking: Sequence[str], relevant, k: int = 10) -> float:
    """nDCG@k with binary relevance: DCG / the DCG of a perfect ranking."""
    rel = set(relevant)
    if not rel:
        return 0.0
    dcg = sum(1.0 / math.log2(i + 2) for i, pid in enumerate(ranking[:k]) if pid in rel)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(rel), k)))
    return dcg / ideal


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between the closest ranks."""
    if not values:
        return 0.0
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def dedupe(passage_ids: Sequence[str]) -> list[str]:
    """A ranking of chunks' passages as a ranking of passages: each at its best rank."""
    return list(dict.fromkeys(p for p in passage_ids if p is not None))


@dataclass
class ModeMetrics:
    """Scores of one retrieval mode over a question set."""

    hits: dict[int, float]
    mrr10: float
    ndcg10: float
    p50_ms: float
    p95_ms: float
    curve: dict[int, float] = field(default_factory=dict)  # hit@k for k = 1..10, for plots
    latencies_ms: list[float] = field(default_factory=list, repr=False)  # one per question, for plots

    def as_json(self) -> dict[str, float]:
        out = {f"hit@{k}": round(v, 4) for k, v in sorted(self.hits.items())}
        out.update(
            {"mrr@10": round(self.mrr10, 4), "ndcg@10": round(self.ndcg10, 4),
             "p50_ms": round(self.p50_ms, 2), "p95_ms": round(self.p95_ms, 2)}
        )
        return out


def score_rankings(
    rankings: Sequence[Sequence[str]], relevant: Sequence[Sequence[str]], latencies_s: Sequence[float]
) -> ModeMetrics:
    """Mean hit@1/5/10, MRR@10, nDCG@10 and latency percentiles over questions."""
    n = len(rankings)
    if n == 0:
        return ModeMetrics({k: 0.0 for k in CUTOFFS}, 0.0, 0.0, 0.0, 0.0)
    ms = [1000.0 * s for s in latencies_s]
    return ModeMetrics(
        hits={k: sum(hit_at(r, rel, k) for r, rel in zip(rankings, relevant, strict=True)) / n for k in CUTOFFS},
        mrr10=sum(reciprocal_rank(r, rel) for r, rel in zip(rankings, relevant, strict=True)) / n,
        ndcg10=sum(ndcg_at(r, rel) for r, rel in zip(rankings, relevant, strict=True)) / n,
        p50_ms=percentile(ms, 50),
        p95_ms=percentile(ms, 95),
        curve={k: sum(hit_at(r, rel, k) for r, rel in zip(rankings, relevant, strict=True)) / n
               for k in range(1, CURVE_DEPTH + 1)},
        latencies_ms=ms,
    )


@dataclass
class RetrievalEvalResult:
    """What ``evaluate_retrieval`` measured."""

    dataset: str
    questions: int
    passages: int
    results: dict[str, ModeMetrics]
    chunks: int = 0
    embedder: str = ""
    ingest_seconds: float = 0.0
    failed_passages: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "questions": self.questions,
            "passages": self.passages,
            "results": {mode: m.as_json() for mode, m in self.results.items()},
        }


# -- running -----------------------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_file_name(passage_id: str) -> str:
    """A file name for a passage id: safe characters kept, a short hash when anything changed."""
    safe = _UNSAFE.sub("_", passage_id).strip("._-")[:80]
    if safe != passage_id or not safe:
        safe = f"{safe or 'passage'}-{hashlib.sha1(passage_id.encode('utf-8')).hexdigest()[:10]}"
    return safe + ".txt"


def write_passages(passages: Sequence[Passage], folder: Path) -> dict[str, str]:
    """One UTF-8 text file per passage; returns {absolute path: passage id}."""
    folder.mkdir(parents=True, exist_ok=True)
    mapping: dict[str, str] = {}
    for p in passages:
        path = (folder / safe_file_name(p.id)).resolve()
        path.write_text(p.text, encoding="utf-8")
        mapping[str(path)] = p.id
    return mapping


def _hybrid_options(settings) -> dict[str, Any]:
    """HybridRetriever options from settings (the defaults where a setting does not exist)."""
    from rag_memory.knowledge_base import hybrid

    return {
        "candidates": settings.hybrid_candidates,
        "dense_weight": hybrid.DEFAULT_DENSE_WEIGHT,
        "languages": settings.embedder_languages,
    }


def evaluate_retrieval(
    dataset: RetrievalDataset,
    settings,
    *,
    modes: Sequence[str] = MODES,
    progress: Progress | None = None,
    embedder=None,
) -> RetrievalEvalResult:
    """Ingest the passages into a fresh collection, run every question, score each mode.

    Args:
        dataset: Passages and questions.
        settings: The effective settings (embedder, chunking, hybrid options); the home and
            collection are replaced by temporary ones, and embedded Chroma is used.
        modes: Which of ``dense``, ``bm25``, ``hybrid`` to run.
        progress: Called as ``progress(stage, done, total)``.
        embedder: An embedder to use instead of the one the settings name (tests pass fakes).

    Returns:
        Hit@1/5/10, MRR@10, nDCG@10 and query latency p50/p95 per mode.
    """
    from rag_memory.ingest.run import IngestProgress
    from rag_memory.knowledge_base.hybrid import HybridRetriever
    from rag_memory.knowledge_base.retrievers import DenseRetriever
    from rag_memory.pipelines.components import Components

    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ConfigError(f"unknown retrieval mode(s) {bad}; use {', '.join(MODES)}")
    if not dataset.passages or not dataset.questions:
        raise ConfigError(f"dataset {dataset.name!r} has no passages or no questions")
    report = progress or (lambda stage, done, total: None)

    class _Bridge(IngestProgress):
        done = 0

        def planned(self, files: int) -> None:
            report("ingest", 0, files)
            self.total = files

        def file_done(self, path: str) -> None:
            self.done += 1
            if self.done % 50 == 0 or self.done == getattr(self, "total", 0):
                report("ingest", self.done, self.total)

    with tempfile.TemporaryDirectory(prefix="ragmem-eval-", ignore_cleanup_errors=True) as tmp:
        root = Path(tmp).resolve()
        folder = root / "passages"
        mapping = write_passages(dataset.passages, folder)
        run_settings = settings.replace(home=root / "home", collection="eval-retrieval", chroma_url=None)
        parts = Components(run_settings, embedder=embedder) if embedder is not None else Components(run_settings)
        lexical = parts.lexical  # filled by the ingest below, as ragmem ingest fills it
        parts.embedder.warm_up()
        started = time.perf_counter()
        ingest = parts.ingestor().run([folder], progress=_Bridge())
        ingest_s = time.perf_counter() - started
        if not ingest.added:
            raise IngestError(f"no passage of {dataset.name!r} could be ingested: {ingest.failed[:3]}")
        failed = [mapping.get(f.path, f.path) for f in ingest.failed]
        if failed:
            log.warning("%d passages could not be ingested (e.g. %s)", len(failed), failed[:3])

        dense = DenseRetriever(parts.store, parts.embedder, top_k=CHUNK_DEPTH, sources=parts.manifest.sources)
        options = _hybrid_options(run_settings)
        retrievers = {mode: HybridRetriever(dense, lexical, mode=mode, **options) for mode in modes}
        relevant = [q.relevant for q in dataset.questions]
        results: dict[str, ModeMetrics] = {}
        for mode, retriever in retrievers.items():
            retriever.retrieve(dataset.questions[0].question, top_k=CHUNK_DEPTH)  # open connections, load
            rankings: list[list[str]] = []
            latencies: list[float] = []
            total = len(dataset.questions)
            for i, q in enumerate(dataset.questions):
                t = time.perf_counter()
                hits = retriever.retrieve(q.question, top_k=CHUNK_DEPTH)
                latencies.append(time.perf_counter() - t)
                rankings.append(dedupe([mapping.get(h.source) for h in hits]))
                if (i + 1) % 100 == 0 or i + 1 == total:
                    report(mode, i + 1, total)
            results[mode] = score_rankings(rankings, relevant, latencies)
        chunks = parts.store.count()
        embedder_id = parts.embedder.model_id
        lexical.close()
    return RetrievalEvalResult(
        dataset=dataset.name,
        questions=len(dataset.questions),
        passages=len(dataset.passages),
        results=results,
        chunks=chunks,
        embedder=embedder_id,
        ingest_seconds=ingest_s,
        failed_passages=failed,
    )
