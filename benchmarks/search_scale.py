"""Search at scale: build a 100k-chunk store, then time warm searches (hybrid, dense, BM25).

Building: chunk texts are real sentences, from SQuAD v1.1 dev (English) and CMRC 2018 dev
(Chinese) contexts, cycled with a copy number until there are --chunks of them (3 English
to 1 Chinese). Embedding 100k chunks is too slow on this machine, so only the first --real
distinct sentences are embedded for real (the default embedder); every chunk's vector is the
real vector of its sentence plus small Gaussian noise (sigma --noise per coordinate), renormalised.
The chunks are written through ragmem's own store and keyword index (ChromaStore.upsert,
BM25Index.upsert) in batches of 5,000; build time and the peak RSS are recorded at 25%, 50%,
75% and 100%, so growth with corpus size is visible.

Searching: each query is a SQuAD or CMRC dev question (not in the store), embedded for real
on every call (the query cache is bypassed), through the same HybridRetriever `ragmem search`
uses; p50/p95 of hybrid (default mode, embedding included), dense only (embedding included),
the query embedding alone, and the keyword index alone, per language.

Usage:
    nice -n 10 .venv/bin/python benchmarks/search_scale.py [--chunks 100000] [--queries 60]
        [--real 1000] [--out benchmarks/results/search_scale.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def sentences_and_questions() -> tuple[list[str], list[str], list[str], list[str]]:
    from rag_memory.eval.retrieval import data_file

    squad = json.loads(data_file("squad-v1.1/dev-v1.1.json").read_text(encoding="utf-8"))["data"]
    cmrc = json.loads(data_file("cmrc2018/cmrc2018_dev.json").read_text(encoding="utf-8"))["data"]
    en, zh, qen, qzh = [], [], [], []
    for article in squad:
        for p in article["paragraphs"]:
            en += [s for s in re.split(r"(?<=[.!?])\s+", p["context"]) if len(s) > 30]
            qen += [q["question"] for q in p["qas"][:1]]
    for article in cmrc:
        for p in article["paragraphs"]:
            zh += [s + "。" for s in p["context"].split("。") if len(s) > 15]
            qzh += [q["question"] for q in p["qas"][:1]]
    return en, zh, qen, qzh


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=60, help="Per language.")
    parser.add_argument("--real", type=int, default=1000, help="Distinct sentences embedded for real.")
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/search_scale.json")
    args = parser.parse_args()

    import numpy as np
    from bench_machine import machine_info

    from rag_memory.config import Settings
    from rag_memory.pipelines.components import Components
    from rag_memory.schema import Chunk

    started = machine_info()
    en, zh, qen, qzh = sentences_and_questions()
    # 3 English sentences to 1 Chinese, cycled.
    pool = [s for i in range(max(len(en), 3 * len(zh))) for s in ([en[i % len(en)]] + ([zh[(i // 3) % len(zh)]] if i % 3 == 0 else []))]
    distinct = list(dict.fromkeys(pool))
    real = distinct[: args.real]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as home:
        settings = Settings.load({"home": home})
        # A first use exports the ONNX graph (torch loaded); do that in another process, so this
        # one's peak RSS is the search process's own.
        code = ("from rag_memory.pipelines.components import Components; from rag_memory.config import Settings;"
                f" Components(Settings.load({{'home': {home!r}}})).embedder.warm_up()")
        import subprocess

        subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        parts = Components(settings)
        embedder = parts.embedder
        t0 = time.perf_counter()
        embedder.warm_up()
        warm_up_s = time.perf_counter() - t0
        rss_after_warm_up = rss_mb()
        t0 = time.perf_counter()
        base = np.asarray(embedder.embed_documents(real), dtype=np.float32)
        real_embed_s = time.perf_counter() - t0
        print(f"embedded {len(real)} real sentences in {real_embed_s:.1f}s", flush=True)
        index_of = {s: i for i, s in enumerate(real)}

        checkpoints = []
        t_build = time.perf_counter()
        batch = 5000
        for start in range(0, args.chunks, batch):
            chunks, vectors = [], []
            for n in range(start, min(args.chunks, start + batch)):
                sentence = pool[n % len(pool)]
                text = f"{sentence} ({n // len(pool) + 1})"
                digest = hashlib.sha256(f"{n}\x1f{text}".encode()).hexdigest()
                chunks.append(Chunk(id=digest[:32], text=text, source=f"/bench/file{n // 50:05d}.txt", title="bench",
                                    index=n % 50, start=0, end=len(text), page=None, content_hash=digest,
                                    file_hash="bench", n_tokens=0))
                v = base[index_of.get(sentence, n % len(real))] + rng.normal(0, args.noise, base.shape[1])
                vectors.append((v / np.linalg.norm(v)).tolist())
            parts.store.upsert(chunks, vectors, embedder_id=embedder.model_id)
            parts.lexical.upsert(chunks, embedder_id=embedder.model_id)
            done = start + len(chunks)
            if done % (args.chunks // 4) == 0 or done == args.chunks:
                checkpoints.append({"chunks": done, "build_s": round(time.perf_counter() - t_build, 1),
                                    "peak_rss_mb": round(rss_mb(), 1)})
                print(checkpoints[-1], flush=True)
        build_s = time.perf_counter() - t_build
        store_mb = sum(f.stat().st_size for f in Path(home).rglob("*") if f.is_file()) / 1e6

        retriever = parts.retriever
        results: dict[str, dict] = {}
        for lang, questions in (("english", qen[: args.queries]), ("chinese", qzh[: args.queries])):
            timings: dict[str, list[float]] = {"hybrid": [], "dense": [], "embed_query": [], "bm25": []}
            retriever.retrieve(questions[0])  # first call opens the collection and the index
            for q in questions:
                for mode in ("hybrid", "dense", "embed_query", "bm25"):
                    embedder.__dict__.pop("_query_cache", None)  # every call embeds for real
                    t0 = time.perf_counter()
                    if mode == "hybrid":
                        retriever.retrieve(q)
                    elif mode == "dense":
                        parts.dense_retriever.retrieve(q, top_k=settings.hybrid_candidates)
                    elif mode == "embed_query":
                        embedder.embed_query(q)
                    else:
                        parts.lexical.search(q, settings.hybrid_candidates)
                    timings[mode].append(time.perf_counter() - t0)
            results[lang] = {m: {"p50_ms": pct(v, 0.5), "p95_ms": pct(v, 0.95)} for m, v in timings.items()}
            print(lang, results[lang], flush=True)

    summary = {
        "chunks": args.chunks,
        "build_s": round(build_s, 1),
        "store_mb_on_disk": round(store_mb, 1),
        "peak_rss_mb": round(rss_mb(), 1),
        "hybrid_p50_ms": {lang: r["hybrid"]["p50_ms"] for lang, r in results.items()},
        "bm25_p50_ms": {lang: r["bm25"]["p50_ms"] for lang, r in results.items()},
    }
    print(json.dumps(summary, indent=2))
    result = {
        "benchmark": "search_scale",
        "settings": {"chunks": args.chunks, "queries_per_language": args.queries, "real_vectors": len(real),
                     "noise_sigma": args.noise, "embedder": type(embedder).__name__ + " " + embedder.model_id,
                     "top_k": settings.top_k, "candidates": settings.hybrid_candidates,
                     "vectors": f"{len(real)} sentences embedded for real; every chunk gets its sentence's vector"
                                f" (or a real one, by position) plus N(0, {args.noise}) noise, renormalised;"
                                " queries are embedded for real on every call"},
        "machine": started,
        "machine_after": machine_info(),
        "warm_up_s": round(warm_up_s, 2),
        "peak_rss_mb_after_warm_up": round(rss_after_warm_up, 1),
        "checkpoints": checkpoints,
        "summary": summary,
        "latency": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
