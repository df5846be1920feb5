"""Chunking speed on big files: MB/s of text through `TokenChunker`, English and Chinese.

Builds one English and one Chinese text of --mb megabytes (UTF-8) by repeating the SQuAD v1.1
dev and CMRC 2018 dev contexts, one paragraph per blank-line-separated block, and chunks each
as ingest does (the default embedder's tokenizer, chunk_tokens 200, overlap 32), timing:

* ``offsets``: the default path, one tokenisation with offsets (``Embedder.token_spans``);
* ``time_to_first_chunk``: when the first chunk comes out of ``iter_chunks`` (ingest embeds
  it while the rest is cut);
* ``tokenizer alone``: one ``count_tokens_batch`` over the paragraphs, the floor for any
  chunker that reads every token once;
* ``counted`` (on the first --compare-mb MB only, it is slow): every distinct piece counted by
  the tokenizer, the path other embedders take; its chunks must equal the offsets path's.

Wall and CPU seconds are both reported (the machine is shared; CPU time is inflated less).

Usage:
    nice -n 10 .venv/bin/python benchmarks/chunking_speed.py [--mb 20] [--compare-mb 2]
        [--out benchmarks/results/chunking_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from rag_memory.eval.retrieval import data_file  # noqa: E402 - after the path set-up


def corpus_text(path: Path, megabytes: float) -> str:
    """The data set's contexts, repeated until the text has ``megabytes`` MB of UTF-8."""
    paragraphs = [p["context"].strip() for a in json.loads(path.read_text(encoding="utf-8"))["data"]
                  for p in a["paragraphs"]]
    target = int(megabytes * 1e6)
    out, size, i = [], 0, 0
    while size < target:
        p = paragraphs[i % len(paragraphs)]
        out.append(p)
        size += len(p.encode("utf-8")) + 2
        i += 1
    return "\n\n".join(out)


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=20.0, help="size of each text, MB of UTF-8")
    parser.add_argument("--compare-mb", type=float, default=2.0, help="MB chunked by the counted path too")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/chunking_speed.json")
    args = parser.parse_args()
    from bench_machine import machine_info

    from rag_memory.ingest.chunking import ChunkSettings, TokenChunker
    from rag_memory.knowledge_base.embedders.onnx_runtime import OnnxEmbedder
    from rag_memory.schema import LoadedDocument, Section

    started = machine_info()
    embedder = OnnxEmbedder()
    embedder.warm_up()
    settings = ChunkSettings(max_tokens=200, overlap=32, embedder_id=embedder.model_id)

    def chunker(offsets: bool) -> TokenChunker:
        return TokenChunker(embedder.count_tokens, settings, limit=embedder.max_tokens,
                            count_batch=embedder.count_tokens_batch,
                            token_spans=embedder.token_spans if offsets else None)

    rows = []
    for language, name in (("English", "squad-v1.1/dev-v1.1.json"), ("Chinese", "cmrc2018/cmrc2018_dev.json")):
        text = corpus_text(data_file(name), args.mb)
        mb = len(text.encode("utf-8")) / 1e6
        doc = LoadedDocument(source=f"/bench/{language}.txt", title=language, sections=(Section(text),),
                             content_hash="bench")

        def first_chunk(doc=doc):
            return next(iter(chunker(True).iter_chunks(doc)))

        _, first_s, _ = timed(first_chunk)
        chunks, wall, cpu = timed(lambda doc=doc: chunker(True).chunk(doc))
        paragraphs = text.split("\n\n")
        counts, tok_wall, tok_cpu = timed(lambda p=paragraphs: embedder.count_tokens_batch(p))
        row = {
            "language": language, "mb": round(mb, 2), "chunks": len(chunks),
            "tokens_in_chunks": sum(c.n_tokens for c in chunks), "tokens_in_text": sum(counts),
            "offsets_wall_s": round(wall, 2), "offsets_cpu_s": round(cpu, 2),
            "offsets_mb_per_s_wall": round(mb / wall, 2), "offsets_mb_per_s_cpu": round(mb / cpu, 2),
            "time_to_first_chunk_s": round(first_s, 3),
            "tokenizer_alone_wall_s": round(tok_wall, 2), "tokenizer_alone_mb_per_s_wall": round(mb / tok_wall, 2),
        }
        if args.compare_mb > 0:
            sample = text[: int(len(text) * min(1.0, args.compare_mb / mb))]
            sample = sample[: sample.rfind("\n\n")] if "\n\n" in sample else sample
            small = LoadedDocument(source=doc.source, title=language, sections=(Section(sample),), content_hash="b")
            fast = chunker(True).chunk(small)
            slow, s_wall, s_cpu = timed(lambda small=small: chunker(False).chunk(small))
            sample_mb = len(sample.encode("utf-8")) / 1e6
            row.update({
                "counted_sample_mb": round(sample_mb, 2), "counted_wall_s": round(s_wall, 2),
                "counted_mb_per_s_wall": round(sample_mb / s_wall, 2),
                "counted_mb_per_s_cpu": round(sample_mb / s_cpu, 2),
                "counted_equals_offsets": [(c.text, c.start, c.end, c.n_tokens) for c in slow]
                == [(c.text, c.start, c.end, c.n_tokens) for c in fast],
            })
        rows.append(row)
        print(json.dumps(row), flush=True)

    print()
    print("| text | MB | chunks | offsets MB/s (wall / CPU) | first chunk s | tokenizer alone MB/s |"
          " counted MB/s (wall) | same chunks |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['language']} | {r['mb']} | {r['chunks']:,} | {r['offsets_mb_per_s_wall']} /"
              f" {r['offsets_mb_per_s_cpu']} | {r['time_to_first_chunk_s']} | {r['tokenizer_alone_mb_per_s_wall']} |"
              f" {r.get('counted_mb_per_s_wall', '')} | {r.get('counted_equals_offsets', '')} |")
    result = {
        "benchmark": "chunking_speed",
        "settings": {"mb": args.mb, "compare_mb": args.compare_mb, "chunk_tokens": 200, "overlap": 32,
                     "embedder": embedder.model_id + " (ONNX Runtime backend's tokenizer)",
                     "data": "SQuAD v1.1 dev and CMRC 2018 dev contexts, repeated, blank line between paragraphs",
                     "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM", "default (on)"),
                     "repeats": 1},
        "machine": started, "machine_after": machine_info(), "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
