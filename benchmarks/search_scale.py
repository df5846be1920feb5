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
the query embedding alone, and the keyword index alone, per language, with each stage of the
hybrid. Beside the wall-clock times, ``cpu_p50_ms`` is the process's CPU time per call (all its
threads): on a shared machine it stays close to what an idle machine takes while the wall
clock grows with the load. The keyword index is also asked in one FTS5 query per search
(``bm25_one_step``), side by side, and the two rankings compared.

With --home the store is kept; a later run with the same settings reuses it and only searches,
in a fresh process, so ``peak_rss_mb_search_process`` is then a search process's own peak and
``first_query_s`` the time to load the collection's index and answer once.

Usage:
    nice -n 10 .venv/bin/python benchmarks/search_scale.py [--chunks 100000] [--queries 60]
        [--real 1000] [--threads 1] [--repeats 1] [--home DIR] [--chroma-server]
        [--out benchmarks/results/search_scale.json]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import resource
import subprocess
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
    parser.add_argument("--threads", type=int, default=1,
                        help="ONNX Runtime intra-op threads for the embedder (0: one per core, the library's default)")
    parser.add_argument("--chroma-server", action="store_true",
                        help="Keep the vectors in a local `chroma run` server (HTTP) instead of embedded Chroma")
    parser.add_argument("--repeats", type=int, default=1, help="Passes over the queries (each one times every query).")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/search_scale.json")
    parser.add_argument(
        "--home", type=Path, default=None,
        help="Keep the built store in this folder (a temporary one by default); a later run with the same"
             " --home, --chunks, --real and --noise reuses it and only searches.",
    )
    args = parser.parse_args()

    from bench_machine import machine_info

    from rag_memory.config import Settings
    from rag_memory.knowledge_base.keyword_index import BM25Index
    from rag_memory.pipelines.components import Components

    started = machine_info()
    en, zh, qen, qzh = sentences_and_questions()
    with contextlib.ExitStack() as stack:
        if args.home is None:
            home = stack.enter_context(tempfile.TemporaryDirectory())
        else:
            args.home.mkdir(parents=True, exist_ok=True)
            home = str(args.home.resolve())
        options = {"home": home}
        if args.chroma_server:
            from tests.helpers.chroma_server import chroma_server

            options["chroma_url"] = stack.enter_context(chroma_server(Path(home) / "chroma-server"))
        settings = Settings.load(options)
        # A first use exports the ONNX graph (torch loaded); do that in another process, so this
        # one's peak RSS is the search process's own.
        code = ("from rag_memory.pipelines.components import Components; from rag_memory.config import Settings;"
                f" Components(Settings.load({{'home': {home!r}}})).embedder.warm_up()")
        subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        parts = Components(settings)
        embedder = parts.embedder
        if args.threads and hasattr(embedder, "threads"):
            embedder.threads = args.threads
        t0 = time.perf_counter()
        embedder.warm_up()
        warm_up_s = time.perf_counter() - t0
        rss_after_warm_up = rss_mb()

        wanted = {"chunks": args.chunks, "real": args.real, "noise": args.noise, "embedder": embedder.model_id,
                  "chroma": "server" if args.chroma_server else "embedded"}
        marker = Path(home) / "search_scale_build.json"
        previous = json.loads(marker.read_text(encoding="utf-8")) if marker.exists() else None
        if previous is not None and previous["settings"] == wanted:
            build = {**previous["build"], "reused": True}
            print(f"reusing the store built in {home} ({build['build_s']} s)", flush=True)
        else:
            if previous is not None or parts.store.exists():
                parser.error(f"{home} holds another build; give an empty --home or the same settings")
            build = build_store(parts, embedder, en, zh, args)
            marker.write_text(json.dumps({"settings": wanted, "build": build}, indent=2) + "\n", encoding="utf-8")
        store_mb = sum(f.stat().st_size for f in Path(home).rglob("*") if f.is_file()) / 1e6

        before_search = machine_info()
        rss_before_search = rss_mb()
        retriever = parts.retriever
        # The same keyword index answered in one FTS5 query (never two steps), for comparison.
        one_step = BM25Index(settings.lexical_path, settings.collection, prune_above=10**12)
        results: dict[str, dict] = {}
        t0 = time.perf_counter()
        retriever.retrieve(qen[0])  # loads the collection's vector index and opens the keyword index
        first_query_s = time.perf_counter() - t0
        for lang, questions in (("english", qen[: args.queries]), ("chinese", qzh[: args.queries])):
            timings: dict[str, list[float]] = {
                "hybrid": [], "dense": [], "embed_query": [], "bm25": [], "bm25_one_step": []
            }
            agree = {"top1": 0, "overlap10": 0.0, "overlap50": 0.0, "identical50": 0}
            cpu: dict[str, list[float]] = {m: [] for m in timings}
            stages: dict[str, list[float]] = {}
            for _ in range(args.repeats):
                for q in questions:
                    for mode in timings:
                        embedder.__dict__.pop("_query_cache", None)  # every call embeds for real
                        c0, t0 = time.process_time(), time.perf_counter()
                        if mode == "hybrid":
                            retriever.retrieve(q)
                            for stage, sec in retriever.last_timings.items():
                                stages.setdefault(stage, []).append(sec)
                        elif mode == "dense":
                            parts.dense_retriever.retrieve(q, top_k=settings.hybrid_candidates)
                        elif mode == "embed_query":
                            embedder.embed_query(q)
                        elif mode == "bm25":
                            got = parts.lexical.search(q, settings.hybrid_candidates)
                        else:
                            exact = one_step.search(q, settings.hybrid_candidates)
                        timings[mode].append(time.perf_counter() - t0)
                        cpu[mode].append(time.process_time() - c0)
                    a, b = [h.chunk_id for h in exact], [h.chunk_id for h in got]
                    agree["top1"] += a[:1] == b[:1]
                    agree["identical50"] += a == b
                    agree["overlap10"] += len(set(a[:10]) & set(b[:10])) / max(1, len(a[:10]))
                    agree["overlap50"] += len(set(a) & set(b)) / max(1, len(a))
            results[lang] = {
                m: {"p50_ms": pct(v, 0.5), "p95_ms": pct(v, 0.95), "cpu_p50_ms": pct(cpu[m], 0.5)}
                for m, v in timings.items()
            }
            results[lang]["hybrid_stages_p50_ms"] = {s: pct(v, 0.5) for s, v in stages.items()}
            n = len(questions) * args.repeats
            results[lang]["bm25_two_step_vs_one_step"] = {
                "top1_same": round(agree["top1"] / n, 3), "top50_identical": round(agree["identical50"] / n, 3),
                "overlap_at_10": round(agree["overlap10"] / n, 3), "overlap_at_50": round(agree["overlap50"] / n, 3),
            }
            print(lang, results[lang], flush=True)

    summary = {
        "chunks": args.chunks,
        "build_s": build["build_s"],
        "store_mb_on_disk": round(store_mb, 1),
        "peak_rss_mb_build": build["checkpoints"][-1]["peak_rss_mb"],
        "peak_rss_mb_search_process": round(rss_mb(), 1),
        "first_query_s": round(first_query_s, 2),
        "hybrid_p50_ms": {lang: r["hybrid"]["p50_ms"] for lang, r in results.items()},
        "bm25_p50_ms": {lang: r["bm25"]["p50_ms"] for lang, r in results.items()},
        "bm25_one_step_p50_ms": {lang: r["bm25_one_step"]["p50_ms"] for lang, r in results.items()},
        "load_average_during_search": [before_search["load_average_1_5_15"], machine_info()["load_average_1_5_15"]],
    }
    print(json.dumps(summary, indent=2))
    result = {
        "benchmark": "search_scale",
        "command": " ".join(["benchmarks/search_scale.py", *sys.argv[1:]]),
        "settings": {"chunks": args.chunks, "queries_per_language": args.queries, "repeats": args.repeats,
                     "chroma": "server (chroma run on loopback)" if args.chroma_server else "embedded",
                     "real_vectors": args.real, "noise_sigma": args.noise,
                     "embedder": type(embedder).__name__ + " " + embedder.model_id,
                     "embedder_threads": getattr(embedder, "threads", None) or "default (one per core)",
                     "top_k": settings.top_k, "candidates": settings.hybrid_candidates,
                     "vectors": f"{args.real} sentences embedded for real; every chunk gets its sentence's vector"
                                f" (or a real one, by position) plus N(0, {args.noise}) noise, renormalised;"
                                " queries are embedded for real on every call"},
        "machine": started,
        "machine_before_search": before_search,
        "machine_after": machine_info(),
        "warm_up_s": round(warm_up_s, 2),
        "peak_rss_mb_after_warm_up": round(rss_after_warm_up, 1),
        "peak_rss_mb_before_search": round(rss_before_search, 1),
        "build": build,
        "summary": summary,
        "latency": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


def build_store(parts, embedder, en: list[str], zh: list[str], args) -> dict:
    """Write ``args.chunks`` chunks through the store and the keyword index; build time and
    peak RSS at each quarter."""
    import numpy as np

    from rag_memory.schema import Chunk

    # 3 English sentences to 1 Chinese, cycled.
    pool = [s for i in range(max(len(en), 3 * len(zh))) for s in ([en[i % len(en)]] + ([zh[(i // 3) % len(zh)]] if i % 3 == 0 else []))]
    distinct = list(dict.fromkeys(pool))
    real = distinct[: args.real]
    rng = np.random.default_rng(0)
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
        if done % max(args.chunks // 4, 1) == 0 or done == args.chunks:
            checkpoints.append({"chunks": done, "build_s": round(time.perf_counter() - t_build, 1),
                                "peak_rss_mb": round(rss_mb(), 1), "load_average_1": round(os.getloadavg()[0], 2)})
            print(checkpoints[-1], flush=True)
    return {"build_s": round(time.perf_counter() - t_build, 1), "real_embed_s": round(real_embed_s, 1),
            "checkpoints": checkpoints}


if __name__ == "__main__":
    main()
