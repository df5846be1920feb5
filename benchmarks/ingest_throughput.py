"""Ingest throughput: chunks/s of `ragmem ingest` on docs/ and on SQuAD v1.1 dev paragraphs.

For each corpus, in one process and one run:
  - a full ingest through the normal path (discover, load, chunk, embed, upsert, manifest),
  - a second, no-op ingest of the unchanged tree,
  - the bare embedder on the same chunk texts (the ceiling: what embedding alone costs),
so the overhead of everything around the model is a ratio measured side by side.

Usage:
    .venv/bin/python benchmarks/ingest_throughput.py [--squad ../shared/data/squad-v1.1/dev-v1.1.json]
        [--embedder all-MiniLM-L6-v2] [--out benchmarks/results/ingest_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent


def squad_tree(squad: Path, dest: Path) -> tuple[int, int]:
    """One text file per SQuAD article, paragraphs separated by blank lines."""
    data = json.loads(squad.read_text(encoding="utf-8"))["data"]
    paragraphs = 0
    for i, article in enumerate(data):
        texts = [p["context"].strip() for p in article["paragraphs"]]
        paragraphs += len(texts)
        (dest / f"{i:02d}-{article['title'][:40].replace('/', '_')}.txt").write_text(
            "\n\n".join(texts), encoding="utf-8"
        )
    return len(data), paragraphs


def run_corpus(name: str, tree: Path, embedder_name: str) -> dict:
    from rag_memory.config import Settings
    from rag_memory.pipelines.components import Components

    with tempfile.TemporaryDirectory() as home:
        settings = Settings.load({"home": home, "embedder": embedder_name})
        parts = Components(settings)
        parts.embedder.warm_up()  # model load is not ingest throughput
        t0 = time.perf_counter()
        report = parts.ingestor().run([tree])
        full = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = parts.ingestor().run([tree])
        noop = time.perf_counter() - t0
        texts = [h.text for h in parts.store.get_records()]
        t0 = time.perf_counter()
        parts.embedder.embed_documents(texts)
        bare = time.perf_counter() - t0
    assert again.chunks_added == 0 and not again.added and not again.updated, again.as_json()
    return {
        "corpus": name,
        "files": len(report.added),
        "failed": len(report.failed),
        "chunks": report.chunks_added,
        "ingest_s": round(full, 2),
        "ingest_chunks_per_s": round(report.chunks_added / full, 1),
        "embed_only_chunks_per_s": round(len(texts) / bare, 1),
        "pipeline_share_of_embed_speed": round((report.chunks_added / full) / (len(texts) / bare), 3),
        "reingest_noop_s": round(noop, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--squad", type=Path, default=ROOT.parent / "shared/data/squad-v1.1/dev-v1.1.json")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    parser.add_argument("--embedder", default="all-MiniLM-L6-v2")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/ingest_throughput.json")
    args = parser.parse_args()

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        # A snapshot, so an edit to docs/ during the run cannot count as a change.
        snapshot = Path(tmp) / "docs"
        shutil.copytree(args.docs, snapshot)
        rows = [run_corpus("docs/", snapshot, args.embedder)]
    with tempfile.TemporaryDirectory() as tmp:
        articles, paragraphs = squad_tree(args.squad, Path(tmp))
        row = run_corpus(f"SQuAD v1.1 dev ({articles} articles, {paragraphs} paragraphs)", Path(tmp), args.embedder)
        rows.append(row)

    cols = ["corpus", "files", "chunks", "ingest_s", "ingest_chunks_per_s", "embed_only_chunks_per_s",
            "pipeline_share_of_embed_speed", "reingest_noop_s"]
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print(" | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)))
    result = {
        "embedder": args.embedder,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
        },
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
