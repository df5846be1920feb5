"""Generation speed: ragmem's TransformersGenerator against a bare `model.generate`, and `ask` by stage.

Models are built with random weights in a real model's shape (speed does not depend on the
weights' values) and a tokenizer trained on the spot, so the script runs with no downloads.
On a CUDA GPU it measures Qwen2-0.5B- and Qwen2-1.5B-shaped models in bf16; without one it
runs a small shape on the CPU in float32 and says so.

For each shape, with the same prompt token ids and greedy decoding:
  - ragmem: `TransformersGenerator.stream` (chat template, TextIteratorStreamer, a thread),
  - bare: `model.generate` on the same ids, with a streamer that only notes the first token,
reporting time to first token (TTFT) and decode tokens/s (tokens after the first / time after
the first), median of --repeats runs after one warm-up. Then one end-to-end `ask` on the
project's docs/ (MiniLM retrieval, the smallest shape generating) split by stage.

Usage:
    .venv/bin/python benchmarks/generation_latency.py [--new-tokens 64] [--prompt-tokens 400] [--repeats 3]
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

from tests.helpers.tiny_model import build_tiny_chat_model  # noqa: E402

QWEN2_VOCAB = 151_936
SHAPES = {
    # the published configs of Qwen2.5-0.5B-Instruct and Qwen2.5-1.5B-Instruct
    "qwen2-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                       num_key_value_heads=2, vocab_size=QWEN2_VOCAB, tie_word_embeddings=True,
                       max_position_embeddings=32768),
    "qwen2-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                       num_key_value_heads=2, vocab_size=QWEN2_VOCAB, tie_word_embeddings=True,
                       max_position_embeddings=32768),
    # for machines without a GPU: small enough to run in seconds on two cores
    "small-cpu": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=8,
                      num_key_value_heads=2, vocab_size=32_000, max_position_embeddings=4096),
}

FILLER = (
    "ragmem keeps documents as chunks in a Chroma collection and recalls conversation memory by similarity. "
    "检索增强生成先检索相关文档，再根据文档回答问题。 "
)


def prompt_messages(tokenizer, tokens: int):
    from rag_memory.generation.base import ChatMessage

    text = ""
    while len(tokenizer(text)["input_ids"]) < tokens:
        text += FILLER
    return [ChatMessage("system", "Answer from the sources."), ChatMessage("user", text + "\nQuestion: what is ragmem?")]


def bare_generate(model, ids, new_tokens: int, **extra) -> tuple[float, float, int]:
    import torch
    from transformers.generation.streamers import BaseStreamer

    class FirstToken(BaseStreamer):
        def __init__(self) -> None:
            self.first = None
            self.calls = 0

        def put(self, value) -> None:
            self.calls += 1
            if self.calls == 2 and self.first is None:
                self.first = time.perf_counter()

        def end(self) -> None:
            pass

    streamer = FirstToken()
    input_ids = torch.tensor([ids], device=model.device)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=new_tokens,
                             do_sample=False, streamer=streamer, pad_token_id=model.generation_config.pad_token_id,
                             **extra)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    total = time.perf_counter() - start
    return streamer.first - start, total, out.shape[1] - len(ids)


def ragmem_stream(gen, messages, new_tokens: int) -> tuple[float, float, int]:
    from rag_memory.generation.base import GenerationConfig

    start = time.perf_counter()
    first = None
    for _ in gen.stream(messages, GenerationConfig(max_new_tokens=new_tokens)):
        if first is None:
            first = time.perf_counter()
    total = time.perf_counter() - start
    return first - start, total, gen.last_usage.completion_tokens


def batched(gen, conversations, new_tokens: int) -> tuple[float, float, int]:
    """One generate for the batch: no first-token time; tokens are the whole batch's."""
    from rag_memory.generation.base import GenerationConfig

    start = time.perf_counter()
    gen.generate_batch(conversations, GenerationConfig(max_new_tokens=new_tokens))
    total = time.perf_counter() - start
    return 0.0, total, gen.last_usage.completion_tokens


def summarise(runs: list[tuple[float, float, int]]) -> dict:
    ttft = statistics.median(r[0] for r in runs)
    total = statistics.median(r[1] for r in runs)
    tokens = runs[-1][2]
    return {
        "ttft_ms": round(ttft * 1000, 1),
        "total_s": round(total, 3),
        "new_tokens": tokens,
        "decode_tok_per_s": round((tokens - 1) / max(total - ttft, 1e-9), 1),
    }


def measure_shape(name: str, shape: dict, device: str, args) -> tuple[list[dict], Path]:
    import torch

    from rag_memory.generation.transformers_generator import TransformersGenerator

    folder = Path(tempfile.mkdtemp(prefix=f"ragmem-{name}-"))
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    build_tiny_chat_model(folder, shape=shape, dtype=dtype)
    gen = TransformersGenerator(str(folder), device=device)
    gen.warm_up()
    static = TransformersGenerator(str(folder), device=device, static_cache=True)
    messages = prompt_messages(gen.tokenizer, args.prompt_tokens)
    ids = gen.encode_messages(messages)
    batch = [messages] * args.batch
    paths = {
        "bare model.generate (eager, dynamic cache)": lambda: bare_generate(gen.model, ids, args.new_tokens),
        "bare model.generate (static cache; compiled on CUDA)": lambda: bare_generate(
            gen.model, ids, args.new_tokens, cache_implementation="static"),
        "ragmem stream": lambda: ragmem_stream(gen, messages, args.new_tokens),
        "ragmem stream (static_cache=True)": lambda: ragmem_stream(static, messages, args.new_tokens),
        f"ragmem generate_batch x{args.batch}": lambda: batched(static if device == "cuda" else gen, batch,
                                                                args.new_tokens),
    }
    runs: dict[str, list] = {label: [] for label in paths}
    for fn in paths.values():
        fn()  # warm-up
    # Interleaved, so a noisy neighbour slows both paths alike.
    for _ in range(args.repeats):
        for label, fn in paths.items():
            runs[label].append(fn())
    rows = [
        {"shape": name, "device": device, "dtype": str(dtype).removeprefix("torch."), "prompt_tokens": len(ids),
         "path": label, **summarise(r)}
        for label, r in runs.items()
    ]
    return rows, folder


def ask_by_stage(model_folder: Path, device: str, args) -> dict:
    from rag_memory.config import Settings
    from rag_memory.generation.base import GenerationConfig
    from rag_memory.generation.select import Selection
    from rag_memory.generation.transformers_generator import TransformersGenerator
    from rag_memory.pipelines.components import Components
    from rag_memory.pipelines.rag import RagPipeline

    with tempfile.TemporaryDirectory() as home:
        parts = Components(Settings.load({"home": home}))
        parts.ingestor().run([ROOT / "docs"])
        gen = TransformersGenerator(str(model_folder), device=device)
        parts.generation = Selection(gen)
        rag = RagPipeline(components=parts)
        cfg = GenerationConfig(max_new_tokens=args.new_tokens)
        rag.ask("What happens to deleted files on re-ingest?", session_id="warm", config=cfg)
        answer = rag.ask("What happens to deleted files on re-ingest?", session_id="bench", config=cfg)
        return {"question": answer.question, "prompt_tokens": answer.tokens["prompt"],
                "completion_tokens": answer.tokens["completion"],
                "timings_ms": {k: round(v * 1000, 1) for k, v in answer.timings.items()},
                "total_ms": round(sum(v for k, v in answer.timings.items() if k != "first_token") * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shapes", nargs="*", help=f"any of {', '.join(SHAPES)}")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--batch", type=int, default=4, help="prompts in the batched-generation row")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/generation_latency.json")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    shapes = args.shapes or (["qwen2-0.5b", "qwen2-1.5b"] if device == "cuda" else ["small-cpu"])
    if device == "cpu":
        print("NOT RUN ON A GPU. "
              f"No CUDA GPU here: measuring {', '.join(shapes)} on the CPU in float32 "
              f"({torch.get_num_threads()} threads). GPU figures need a CUDA machine.\n")
    rows, folders = [], []
    for name in shapes:
        r, folder = measure_shape(name, SHAPES[name], device, args)
        rows += r
        folders.append(folder)
    stage = ask_by_stage(folders[0], device, args)

    cols = ["shape", "device", "dtype", "path", "prompt_tokens", "new_tokens", "ttft_ms", "decode_tok_per_s", "total_s"]
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print(" | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)))
    print(f"\nragmem ask end to end ({shapes[0]}, {stage['prompt_tokens']} prompt tokens, "
          f"{stage['completion_tokens']} new): {stage['total_ms']} ms")
    for k, v in stage["timings_ms"].items():
        print(f"  {k:15s} {v:9.1f} ms")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_machine import machine_info

    machine = machine_info()
    machine["gpu"] = torch.cuda.get_device_name(0) if device == "cuda" else None
    result = {
        "ran_on_gpu": device == "cuda",
        "note": None if device == "cuda" else (
            "NOT RUN ON A GPU: no CUDA device on this machine. These are CPU figures of a small shape in"
            " float32; they say nothing about GPU speed, and no GPU figures are claimed."),
        "device": device,
        "gpu": machine["gpu"],
        "settings": {"repeats": args.repeats, "threads": torch.get_num_threads(), "new_tokens": args.new_tokens,
                     "prompt_tokens": args.prompt_tokens, "batch": args.batch, "shapes": shapes,
                     "decoding": "greedy", "order": "paths interleaved per repeat, median reported"},
        "machine": machine,
        "rows": rows,
        "ask_by_stage": stage,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
