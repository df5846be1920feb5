"""ragmem from plain Python: ingest a folder, ask a question, stream a follow-up.

    python examples/python_api.py [DOCS] [--model PATH] [--generator NAME] [--max-new-tokens N]

Settings come from ragmem.toml and the RAGMEM_* environment variables, as for the `ragmem`
command (RAGMEM_HOME, RAGMEM_EMBEDDER=hashing ...); the flags override them. With no language
model on the machine the answers are extractive (retrieved sentences with citations).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rag_memory import RagPipeline, Settings

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("docs", nargs="?", type=Path, default=HERE.parent / "docs", help="folder to ingest")
    parser.add_argument("--model", help="local model folder or cached hub id (setting generator_model)")
    parser.add_argument("--generator", choices=["auto", "transformers", "openai", "extractive"])
    parser.add_argument("--max-new-tokens", type=int)
    parser.add_argument("--question", default="How does re-ingest treat deleted files?")
    parser.add_argument("--follow-up", default="那修改过的文件呢？")
    args = parser.parse_args(argv)

    settings = Settings.load(
        {"generator_model": args.model, "generator": args.generator, "max_new_tokens": args.max_new_tokens}
    )
    rag = RagPipeline(settings)

    report = rag.ingest([args.docs])  # the same sync as `ragmem ingest DOCS`
    print(f"ingested {args.docs}: {len(report.added)} added, {len(report.updated)} updated,"
          f" {len(report.unchanged)} unchanged, {len(report.removed)} removed")

    answer = rag.ask(args.question, session_id="python-api", user_id="demo")
    print(f"\nQ: {answer.question}\nA: {answer.answer}")
    for source in answer.sources:
        where = source.source + (f", page {source.page}" if source.page is not None else "")
        print(f"  [{source.n}] {where} (score {source.score:.2f})")

    print(f"\nQ: {args.follow_up}\nA: ", end="")
    stream = rag.stream(args.follow_up, session_id="python-api", user_id="demo")
    for piece in stream:  # pieces arrive as the generator produces them
        print(piece, end="", flush=True)
    print(f"\n  ({stream.answer.generator['backend']}: {stream.answer.generator['model']},"
          f" {len(stream.answer.sources)} sources)")


if __name__ == "__main__":
    main()
