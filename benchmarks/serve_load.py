"""Load on `ragmem serve`: concurrent OpenAI clients asking for a fixed time, on loopback.

A real uvicorn serves a RagPipeline with the tiny random-weight chat model (built on the spot;
speed here is the server's, not a real model's) and the hashing embedder over the project's
docs/. Each of --clients threads is its own user with its own session and asks, in a loop,
English and Chinese questions through the official `openai` client (every other request
streamed) until --seconds have passed; requests in flight then finish, and the script stops.

Checks: zero errors, and no lost turns: every answered request left exactly its question and
its answer in that user's session history, in order. Reports requests/s and latency p50/p95
(for streams also time to first piece), and the generator queue's waits from /api/status.

Usage:
    nice -n 10 .venv/bin/python benchmarks/serve_load.py [--clients 32] [--seconds 60] [--max-new-tokens 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers.http_server import uvicorn_server  # noqa: E402
from tests.helpers.tiny_model import build_tiny_chat_model  # noqa: E402

QUESTIONS = [
    "What happens to deleted files on re-ingest?",
    "How does ragmem recall conversation memory?",
    "长城有多长？",
    "知识库如何保存文本块？",
    "Which settings control the relevance gate?",
]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def client_loop(i: int, url: str, stop_at: float, out: dict) -> None:
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="unused-on-loopback", max_retries=0, timeout=600)
    user, session = f"load-user-{i}", f"load-session-{i}"
    asked: list[tuple[str, str]] = []
    latencies, first_pieces, errors = [], [], []
    n = 0
    while time.monotonic() < stop_at:
        question = QUESTIONS[(i + n) % len(QUESTIONS)]
        stream = n % 2 == 1
        started = time.perf_counter()
        try:
            if stream:
                pieces, first = [], None
                for chunk in client.chat.completions.create(
                    model="ragmem", user=user, stream=True, messages=[{"role": "user", "content": question}],
                    extra_body={"session_id": session},
                ):
                    if chunk.choices and chunk.choices[0].delta.content:
                        first = first or time.perf_counter()
                        pieces.append(chunk.choices[0].delta.content)
                answer = "".join(pieces)
                if first is not None:
                    first_pieces.append(first - started)
            else:
                completion = client.chat.completions.create(
                    model="ragmem", user=user, messages=[{"role": "user", "content": question}],
                    extra_body={"session_id": session},
                )
                answer = completion.choices[0].message.content
            latencies.append(time.perf_counter() - started)
            asked.append((question, answer.strip()))
        except Exception as exc:  # counted and reported; the run goes on
            errors.append(f"{type(exc).__name__}: {exc}")
        n += 1
    client.close()
    out[i] = {"user": user, "session": session, "asked": asked, "latencies": latencies,
              "first_pieces": first_pieces, "errors": errors}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--parallel", type=int, default=1, help="generation slots of the server")
    parser.add_argument("--context-length", type=int, default=512,
                        help="the model's window, which sizes each prompt (retrieved chunks fill it)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/serve_load.json")
    args = parser.parse_args()

    import httpx
    import torch

    from rag_memory.config import Settings
    from rag_memory.pipelines.rag import RagPipeline
    from rag_memory.server import ServerOptions, create_app

    with tempfile.TemporaryDirectory(prefix="ragmem-serve-load-") as tmp:
        tmp = Path(tmp)
        model = build_tiny_chat_model(tmp / "model")
        settings = Settings.load({"home": tmp / "home", "embedder": "hashing:1024", "generator": "transformers",
                                  "generator_model": str(model), "device": "cpu", "context_length": args.context_length,
                                  "max_new_tokens": args.max_new_tokens})
        rag = RagPipeline(settings)
        report = rag.ingest([ROOT / "docs"])
        options = ServerOptions(slots=args.parallel, max_waiting=max(64, 2 * args.clients), request_timeout=600)
        app = create_app(rag, options=options)
        with uvicorn_server(app) as url:
            started = time.monotonic()
            stop_at = started + args.seconds
            results: dict[int, dict] = {}
            threads = [threading.Thread(target=client_loop, args=(i, url, stop_at, results), daemon=True)
                       for i in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=args.seconds + 900)
            wall = time.monotonic() - started
            status = httpx.get(url + "/api/status").json()
        history = rag.components.memory

        lost, misordered = 0, 0
        for r in results.values():
            turns = history.history(r["user"], r["session"])
            expected = [text for q, a in r["asked"] for text in (q, a)]
            stored = [t.content for t in turns]
            lost += max(0, len(expected) - len(stored))
            misordered += int(stored != expected)
        latencies = [x for r in results.values() for x in r["latencies"]]
        firsts = [x for r in results.values() for x in r["first_pieces"]]
        errors = [e for r in results.values() for e in r["errors"]]
        answered = sum(len(r["asked"]) for r in results.values())

    summary = {
        "clients_finished": len(results),
        "requests_answered": answered,
        "errors": len(errors),
        "error_examples": errors[:5],
        "lost_turns": lost,
        "sessions_not_matching_history": misordered,
        "requests_per_second": round(answered / wall, 2),
        "latency_s": {"p50": round(statistics.median(latencies), 3) if latencies else None,
                      "p95": round(percentile(latencies, 0.95), 3) if latencies else None,
                      "max": round(max(latencies), 3) if latencies else None},
        "stream_first_piece_s": {"p50": round(statistics.median(firsts), 3) if firsts else None,
                                 "p95": round(percentile(firsts, 0.95), 3) if firsts else None},
        "queue_after": status["queue"],
        "wall_seconds": round(wall, 1),
    }
    data = {
        "benchmark": "serve_load",
        "settings": {"clients": args.clients, "seconds": args.seconds, "max_new_tokens": args.max_new_tokens,
                     "context_length": args.context_length, "parallel": args.parallel, "generator": "tiny random-weight Qwen2 (tests/helpers/tiny_model.py)",
                     "embedder": "hashing:1024", "corpus": f"docs/ ({len(report.added)} files)",
                     "transport": "loopback, official openai client, every other request streamed",
                     "questions": QUESTIONS},
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None},
        "results": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    rows = [("clients", args.clients), ("seconds", args.seconds), ("answered", answered),
            ("errors", len(errors)), ("lost turns", lost), ("sessions != history", misordered),
            ("requests/s", summary["requests_per_second"]), ("latency p50 s", summary["latency_s"]["p50"]),
            ("latency p95 s", summary["latency_s"]["p95"]),
            ("stream first piece p50 s", summary["stream_first_piece_s"]["p50"]),
            ("queue wait p95 s", status["queue"]["wait_seconds"]["p95"])]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        sys.stdout.write(f"{k:<{width}}  {v}\n")
    sys.stdout.write(f"wrote {args.out}\n")
    return 0 if not errors and not lost and not misordered and len(results) == args.clients else 1


if __name__ == "__main__":
    raise SystemExit(main())
