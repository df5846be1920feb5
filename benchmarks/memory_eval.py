"""Long-term memory on LoCoMo: every recall strategy side by side, tuned part and held-out part.

Replays all ten LoCoMo conversations once (through ``MemoryService.remember_turns``, as
``ragmem eval memory`` does), then asks each strategy what it would inject for every question
of categories 1-4 within the token budget, and how often it injects nothing for category 5
(adversarial: never mentioned). Conversations 0-4 are the part the defaults were tuned on;
5-9 are held out.

    nice -n 10 .venv/bin/python benchmarks/memory_eval.py --threads 1
    nice -n 10 .venv/bin/python benchmarks/memory_eval.py --conversations 0-1 --strategies bm25,default

Writes benchmarks/results/memory_eval.json (figures plus settings, machine and timings) and
prints a table per part.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TUNE = [0, 1, 2, 3, 4]
HELD_OUT = [5, 6, 7, 8, 9]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="folder holding locomo/ (default: as `ragmem eval`)")
    parser.add_argument("--conversations", default="0-9", help="which conversations, e.g. 0-9 or 0-4")
    parser.add_argument("--strategies", default="all", help="'all' or names from rag_memory.memory.recall.STRATEGIES")
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--budgets", default="250,500,1000,2000", help="budgets for the recall-by-budget curve")
    parser.add_argument("--embedder", default="all-MiniLM-L6-v2")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a shared machine)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "memory_eval.json")
    parser.add_argument("--plot", type=Path, help="also draw recall against the budget (PNG)")
    parser.add_argument("--home", type=Path, help="build the memory here (kept) instead of a temporary folder")
    parser.add_argument("--replayed", action="store_true", help="--home already holds these conversations")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from rag_memory.config import Settings
    from rag_memory.eval.memory import (
        LOCOMO,
        evaluate_memory,
        load_locomo,
        parse_selection,
        plot_budgets,
        strategy_set,
    )
    from rag_memory.eval.retrieval import data_file

    picked = parse_selection(args.conversations)
    data = load_locomo(data_file(LOCOMO, args.data_dir), conversations=picked)
    ids = {i: c.id for i, c in zip(picked, data.conversations, strict=True)}
    parts = {"tuned (0-4)": [ids[i] for i in TUNE if i in ids], "held out (5-9)": [ids[i] for i in HELD_OUT if i in ids]}
    parts = {k: v for k, v in parts.items() if v}
    settings = Settings.load({"embedder": args.embedder})
    started = time.perf_counter()

    shown = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if done == total or now - shown[0] >= 15:  # a line every 15 s, whatever the batch sizes
            shown[0] = now
            print(f"  {stage}: {done}/{total} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)

    result = evaluate_memory(
        data, settings, budget=args.budget, strategies=strategy_set(args.strategies), progress=progress,
        budgets=[int(b) for b in args.budgets.split(",") if b], parts=parts, home=args.home,
        replayed=args.replayed,
    )
    out = result.as_json()
    out["settings"].update(
        conversations=picked, parts={k: v for k, v in parts.items()}, threads=torch.get_num_threads(),
        embedder=args.embedder, machine=f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
        seconds=round(time.perf_counter() - started, 1), replayed_earlier=args.replayed,
        load_average=[round(x, 2) for x in os.getloadavg()],
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.plot:
        plot_budgets(result, args.plot)

    cols = ("recall", "any", "all", "session_hit@1", "mrr")
    for part in ["all", *parts]:
        print(f"\n{part}: budget {args.budget} tokens, embedder {result.embedder}")
        print(f"{'strategy':24s} " + " ".join(f"{c:>13s}" for c in cols) + f" {'tokens':>7s} {'p50 ms':>7s}"
              f" {'p95 ms':>7s} {'cat5 empty':>10s}")
        for name, m in result.results.items():
            m = m if part == "all" else m["parts"][part]
            adv = m["by_category"].get("adversarial", {}).get("nothing_injected")
            print(f"{name:24s} " + " ".join(f"{m[c]:13.3f}" for c in cols)
                  + f" {m['tokens_per_question']:7.0f} {m['p50_ms']:7.1f} {m['p95_ms']:7.1f}"
                  + (f" {adv:10.2f}" if adv is not None else f" {'-':>10s}"))
    print(f"\nreplay {result.replay_seconds:.0f} s for {result.turns} turns; wrote {args.out}")


if __name__ == "__main__":
    main()
