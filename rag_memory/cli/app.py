"""The typer app. Commands parse flags, call the library and print; no logic of their own.

Heavy modules (torch, transformers, chromadb) are imported inside commands, never here, so
``ragmem --help`` stays fast.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer

from rag_memory.errors import RagMemoryError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_SOME_FILES_FAILED = 3
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="ragmem",
    help="Local-first retrieval-augmented generation with memory.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

# Options shared by the commands that open a knowledge base.
HomeOpt = Annotated[
    Path | None, typer.Option("--home", help="Where ragmem keeps its data [env RAGMEM_HOME].", show_default=False)
]
CollectionOpt = Annotated[
    str | None, typer.Option("--collection", "-c", help="Knowledge-base collection [env RAGMEM_COLLECTION].")
]
EmbedderOpt = Annotated[
    str | None,
    typer.Option("--embedder", help="Sentence-transformers model id or path, or 'hashing' [env RAGMEM_EMBEDDER]."),
]
ChromaUrlOpt = Annotated[
    str | None,
    typer.Option("--chroma-url", help="Use a Chroma server, e.g. http://127.0.0.1:8000 [env RAGMEM_CHROMA_URL]."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


def _stderr():
    from rich.console import Console

    return Console(stderr=True)


def _stdout():
    from rich.console import Console

    return Console(highlight=False)


def _settings(**flags: Any):
    from rag_memory.config import Settings

    return Settings.load(flags)


def handles_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn ragmem's user errors into ``Error: ...`` and an exit code; leave bugs alone."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RagMemoryError as exc:
            _stderr().print(f"[bold red]Error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            _stderr().print("Interrupted. Nothing is left half-done: the next run picks up where this one stopped.")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def display_path(path: str) -> str:
    """A stored absolute path, relative to the working folder when it is below it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


@app.callback()
def main(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output (-vv: debug).")] = 0,
) -> None:
    """Local-first retrieval-augmented generation with memory."""
    level = logging.WARNING - 10 * min(verbose, 2)
    from rich.logging import RichHandler

    logging.basicConfig(
        level=level, format="%(message)s", handlers=[RichHandler(console=_stderr(), show_path=False)], force=True
    )
    for noisy in ("chromadb", "httpx", "sentence_transformers", "urllib3"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


@app.command()
@handles_errors
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders to sync into the knowledge base.")],
    include: Annotated[
        list[str] | None, typer.Option("--include", "-i", help="Only files matching this glob (repeatable).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", "-x", help="Skip files and folders matching this glob (repeatable).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; write nothing.")] = False,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Drop the collection and ingest from scratch (e.g. after changing embedder).")
    ] = False,
    chunk_tokens: Annotated[int | None, typer.Option("--chunk-tokens", help="Largest chunk, in embedder tokens.")] = None,
    chunk_overlap: Annotated[int | None, typer.Option("--chunk-overlap", help="Tokens shared by neighbouring chunks.")] = None,
    home: HomeOpt = None,
    collection: CollectionOpt = None,
    embedder: EmbedderOpt = None,
    chroma_url: ChromaUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Sync files into the knowledge base: add new, update changed, remove deleted.

    Exit codes: 0 all files ingested; 1 the run failed; 3 some files failed (listed).
    """
    from rag_memory.cli.render import IngestDisplay, print_ingest_report
    from rag_memory.pipelines.components import Components

    settings = _settings(
        home=home, collection=collection, embedder=embedder, chroma_url=chroma_url,
        chunk_tokens=chunk_tokens, chunk_overlap=chunk_overlap,
    )
    parts = Components(settings)
    include_globs = list(include or []) or settings.include
    exclude_globs = list(exclude or []) or settings.exclude
    display = IngestDisplay(enabled=not as_json and sys.stderr.isatty())
    with display:
        report = parts.ingestor().run(
            paths, include=include_globs, exclude=exclude_globs, dry_run=dry_run, rebuild=rebuild, progress=display
        )
    if as_json:
        _print_json(report.as_json())
    else:
        print_ingest_report(_stdout(), report, display_path)
    if report.failed:
        raise typer.Exit(EXIT_SOME_FILES_FAILED)


@app.command()
@handles_errors
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int | None, typer.Option("-k", "--top-k", help="How many hits.")] = None,
    min_score: Annotated[
        float | None, typer.Option("--min-score", help="Drop hits below this cosine similarity.")
    ] = None,
    source: Annotated[
        str | None, typer.Option("--source", "-s", help="Only sources matching this glob, e.g. 'docs/*.md'.")
    ] = None,
    home: HomeOpt = None,
    collection: CollectionOpt = None,
    embedder: EmbedderOpt = None,
    chroma_url: ChromaUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rank knowledge-base chunks by similarity to QUERY."""
    from rag_memory.cli.render import print_hits
    from rag_memory.pipelines.components import Components

    settings = _settings(home=home, collection=collection, embedder=embedder, chroma_url=chroma_url,
                         top_k=k, min_score=min_score)
    parts = Components(settings)
    hits = parts.retriever.retrieve(query, source_glob=source)
    if as_json:
        _print_json(
            {
                "query": query,
                "hits": [
                    {"score": round(h.score, 6), "source": h.source, "page": h.page, "chunk_id": h.chunk_id,
                     "title": h.title, "text": h.text}
                    for h in hits
                ],
            }
        )
        return
    if not hits:
        empty = not parts.store.exists() or parts.store.count() == 0
        _stderr().print(
            "The knowledge base is empty: run `ragmem ingest PATH` first."
            if empty
            else "No chunk matched (check --source / --min-score)."
        )
        return
    print_hits(_stdout(), hits, display_path)


@app.command()
@handles_errors
def status(
    home: HomeOpt = None,
    collection: CollectionOpt = None,
    embedder: EmbedderOpt = None,
    chroma_url: ChromaUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What the knowledge base holds and where."""
    from rag_memory.pipelines.components import Components

    settings = _settings(home=home, collection=collection, embedder=embedder, chroma_url=chroma_url)
    st = Components(settings).status()
    data = st.as_json()
    data["configured_embedder"] = settings.embedder
    data["home"] = str(settings.home)
    if as_json:
        _print_json(data)
        return
    from rich.table import Table

    table = Table(show_header=False, box=None)
    for key, value in data.items():
        table.add_row(f"[bold]{key}[/]", "-" if value is None else str(value))
    _stdout().print(table)


@config_app.command("show")
@handles_errors
def config_show(
    home: HomeOpt = None,
    collection: CollectionOpt = None,
    embedder: EmbedderOpt = None,
    chroma_url: ChromaUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print every setting, its value and where the value came from."""
    settings = _settings(home=home, collection=collection, embedder=embedder, chroma_url=chroma_url)
    rows = settings.show()
    if as_json:
        _print_json({name: {"value": _jsonable(value), "source": src} for name, value, src in rows})
        return
    from rich.table import Table

    table = Table("setting", "value", "from")
    for name, value, src in rows:
        table.add_row(name, repr(_jsonable(value)), src)
    _stdout().print(table)


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value
