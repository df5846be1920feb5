"""Cold start: `ragmem search` as a fresh process, first result, with the default embedder.

Builds a temporary home holding docs/ (ingested with the default embedder, which also makes
the one-time ONNX export), then runs `python -m rag_memory.cli search QUERY` as new processes,
English and Chinese queries in turn, and records per run the wall time to exit (the results
are printed just before) and the CPU time (user + system) the process used, which the load of
a shared machine does not inflate. One extra run with `-X importtime` lists what the imports
cost and whether torch, transformers or chromadb were imported at all.

Usage:
    nice -n 10 .venv/bin/python benchmarks/cold_start.py [--repeats 6] [--out benchmarks/results/cold_start.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

QUERIES = ["how do I configure the embedder", "如何删除记忆"]
HEAVY = ("torch", "transformers", "sentence_transformers", "chromadb", "onnxruntime", "tokenizers", "typer", "rich")


def search(env: dict, query: str, *extra: str) -> tuple[float, float, subprocess.CompletedProcess]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *extra, "-m", "rag_memory.cli", "search", query],
                          env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"search failed: {proc.stderr[-2000:]}")
    return wall, cpu, proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/cold_start.json")
    args = parser.parse_args()
    from bench_machine import machine_info

    started = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        docs = Path(tmp) / "docs"
        shutil.copytree(ROOT / "docs", docs)
        env = {**os.environ, "RAGMEM_HOME": str(home), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
               "DO_NOT_TRACK": "1", "ANONYMIZED_TELEMETRY": "False"}
        subprocess.run([sys.executable, "-m", "rag_memory.cli", "ingest", str(docs)], env=env, check=True,
                       capture_output=True, timeout=3600)
        search(env, QUERIES[0])  # page cache warm: every later run is a fresh process on warm files
        runs = []
        for i in range(args.repeats):
            query = QUERIES[i % len(QUERIES)]
            wall, cpu, proc = search(env, query)
            runs.append({"query": query, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                         "hits": proc.stdout.count("\n") > 0})
            print(f"{query!r}: {wall:.2f}s wall, {cpu:.2f}s cpu", flush=True)
        _, _, traced = search(env, QUERIES[0], "-X", "importtime")
    imports: dict[str, float] = {}
    for line in traced.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line[len("import time:"):].split("|"))
        if name.isidentifier() or name in HEAVY:  # top-level modules only
            imports[name] = int(cumulative) / 1e6
    top = dict(sorted(imports.items(), key=lambda kv: -kv[1])[:12])
    summary = {
        "wall_s_p50": round(statistics.median(r["wall_s"] for r in runs), 3),
        "cpu_s_p50": round(statistics.median(r["cpu_s"] for r in runs), 3),
        "imported": {m: m in imports for m in HEAVY},
        "import_s_top_level": {k: round(v, 3) for k, v in top.items()},
    }
    print(json.dumps(summary, indent=2))
    result = {"benchmark": "cold_start", "settings": {"repeats": args.repeats, "queries": QUERIES,
              "embedder": "default (all-MiniLM-L6-v2)", "corpus": "docs/"},
              "machine": started, "machine_after": machine_info(), "summary": summary, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
