"""The typer app. Commands parse flags, call the library and print; no logic of their own.

Heavy modules (torch, transformers, chromadb) are imported inside commands, never here, so
``ragmem --help`` stays fast.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from rag_memory.cli import help as _help
from rag_memory.cli.eval import eval_app
from rag_memory.cli.memory import memory_app
from rag_memory.cli.models import models_app
from rag_memory.cli.options import (
    EXIT_NOTHING_TO_INGEST,
    EXIT_SOME_FILES_FAILED,
    ChromaUrlOpt,
    CollectionOpt,
    EmbedderOpt,
    GeneratorOpt,
    GeneratorUrlOpt,
    HomeOpt,
    JsonOpt,
    MaxNewOpt,
    ModelOpt,
    SessionOpt,
    TemperatureOpt,
    TopKOpt,
    UserOpt,
    display_path,
    exit_fast,
    handles_errors,
    load_settings,
    pipeline,
    print_json,
    stderr,
    stdout,
)
from rag_memory.cli.serve import serve
from rag_memory.errors import RagMemoryError

_help.install()

app = typer.Typer(
    name="ragmem",
    help="Local-first retrieval-augmented generation with memory.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(memory_app, name="memory", help="List, search, export or forget conversation memory.")
app.add_typer(eval_app, name="eval", help="Measure retrieval quality on SQuAD, CMRC or your own data.")
app.add_typer(models_app, name="models", help="List, download (pull) or remove models.")
app.command()(serve)

def _quiet_model_loading() -> None:
    """transformers 5 draws weight-loading bars on every load; the CLI has its own output."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@app.callback()
def main(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output (-vv: debug).")] = 0,
    trust_project: Annotated[
        bool,
        typer.Option(
            "--trust-project",
            help="Let ./ragmem.toml set home, chroma_url, generator_url, generator_api_key_env and allow_downloads"
            " (ignored from a project folder otherwise; or list the folder in trusted_folders in the home config).",
        ),
    ] = False,
) -> None:
    """Local-first retrieval-augmented generation with memory."""
    _quiet_model_loading()
    if trust_project:
        from rag_memory.config import TRUST_ENV

        os.environ[TRUST_ENV] = "1"  # read by every Settings.load of this process
    level = logging.WARNING - 10 * min(verbose, 2)
    from rich.logging import RichHandler

    logging.basicConfig(
        level=level, format="%(message)s", handlers=[RichHandler(console=stderr(), show_path=False)], force=True
    )
    for noisy in ("chromadb", "httpx", "sentence_transformers", "urllib3", "pypdf"):
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

    Exit codes: 0 all files ingested; 1 the run failed; 3 some files failed (listed, the rest
    was ingested); 4 the inputs hold no file ragmem can read (what was skipped, and why, is listed).
    """
    from rag_memory.cli.render import IngestDisplay, print_ingest_report
    from rag_memory.pipelines.components import Components

    settings = load_settings(
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
        print_json(report.as_json())
    else:
        print_ingest_report(stdout(), report, display_path)
    if report.failed:
        raise typer.Exit(EXIT_SOME_FILES_FAILED)
    if report.found_nothing:
        stderr().print(
            f"Nothing to ingest: {', '.join(str(p) for p in paths)} holds no supported file"
            f" ({len(report.skipped)} skipped). Supported: {', '.join(_supported())}.",
            soft_wrap=True, highlight=False,
        )
        raise typer.Exit(EXIT_NOTHING_TO_INGEST)


def _supported() -> list[str]:
    from rag_memory.ingest.loaders import SUPPORTED_SUFFIXES

    return sorted(SUPPORTED_SUFFIXES)


@app.command()
@handles_errors
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int | None, typer.Option("-k", "--top-k", help="How many hits.")] = None,
    min_score: Annotated[
        float | None, typer.Option(
            "--min-score",
            help="Drop hits whose score is below X: the fused score in hybrid mode (0-1, the best hit is 1),"
            " the cosine similarity in dense mode, the BM25 score in bm25 mode.",
        )
    ] = None,
    source: Annotated[
        str | None, typer.Option("--source", "-s", help="Only sources matching this glob, e.g. 'docs/*.md'.")
    ] = None,
    mode: Annotated[
        str | None, typer.Option("--mode", help="hybrid (default), dense or bm25 (env RAGMEM_RETRIEVAL_MODE).")
    ] = None,
    mmr: Annotated[bool | None, typer.Option("--mmr/--no-mmr", help="Diversify the hits (maximal marginal relevance).")] = None,
    home: HomeOpt = None,
    collection: CollectionOpt = None,
    embedder: EmbedderOpt = None,
    chroma_url: ChromaUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rank knowledge-base chunks for QUERY: BM25 and dense similarity fused (hybrid)."""
    from rag_memory.cli.render import print_hits
    from rag_memory.pipelines.components import Components

    settings = load_settings(home=home, collection=collection, embedder=embedder, chroma_url=chroma_url,
                         top_k=k, min_score=min_score, retrieval_mode=mode, mmr=mmr)
    parts = Components(settings)
    parts.retriever.prefetch(query)  # the model loads while Chroma is imported
    hits = parts.retriever.retrieve(query, source_glob=source)
    if as_json:
        print_json(
            {
                "query": query,
                "hits": [
                    {"score": round(h.score, 6), "source": h.source, "page": h.page, "chunk_id": h.chunk_id,
                     "title": h.title, "text": h.text,
                     **{key: _round(h.metadata.get(key)) for key in HIT_SCORES}}
                    for h in hits
                ],
            }
        )
        exit_fast()
        return
    if not hits:
        empty = not parts.store.exists() or parts.store.count() == 0
        stderr().print(
            "The knowledge base is empty: run `ragmem ingest PATH` first."
            if empty
            else "No chunk matched (check --source / --min-score)."
        )
        return
    print_hits(stdout(), hits, display_path)
    exit_fast()


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

    settings = load_settings(home=home, collection=collection, embedder=embedder, chroma_url=chroma_url)
    parts = Components(settings)
    st = parts.status()
    data = st.as_json()
    # The keyword index mirrors the store; a differing count is mended by the next ingest.
    data["keyword_index_chunks"] = parts.lexical.count() if settings.lexical_path.exists() else 0
    data["configured_embedder"] = settings.embedder
    data["embedder_reads"] = _embedder_reads(parts)
    data["home"] = str(settings.home)
    if as_json:
        print_json(data)
        return
    from rich.table import Table

    table = Table(show_header=False, box=None)
    for key, value in data.items():
        table.add_row(f"[bold]{key}[/]", "-" if value is None else str(value))
    stdout().print(table)


@app.command()
@handles_errors
def ask(
    question: Annotated[str, typer.Argument(help="Your question.")],
    user: UserOpt = None,
    session: SessionOpt = None,
    generator: GeneratorOpt = None,
    model: ModelOpt = None,
    generator_url: GeneratorUrlOpt = None,
    k: TopKOpt = None,
    max_new_tokens: MaxNewOpt = None,
    temperature: TemperatureOpt = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Show chunks and memories with scores, the gate, budgets, timings.")
    ] = False,
    home: HomeOpt = None,
    collection: CollectionOpt = None,
    embedder: EmbedderOpt = None,
    chroma_url: ChromaUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer QUESTION from the knowledge base and your conversation memory, with sources."""
    from rag_memory.cli.render import print_answer_footer, print_explain

    rag = pipeline(
        home=home, collection=collection, embedder=embedder, chroma_url=chroma_url, user=user, generator=generator,
        model=model, generator_url=generator_url, k=k, max_new_tokens=max_new_tokens, temperature=temperature,
    )
    stream = rag.stream(question, session_id=session, explain=explain)
    out = stdout()
    if as_json:
        for _ in stream:
            pass
    else:
        for piece in stream:
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        sys.stdout.flush()
    answer = stream.answer
    assert answer is not None
    if not as_json:
        for note in _short_notes(answer.notes):
            stderr().print(f"[yellow]Note:[/] {note}", soft_wrap=True, highlight=False)
    if as_json:
        print_json(answer.as_json())
        return
    print_answer_footer(out, answer, display_path)
    if explain:
        print_explain(out, answer, display_path)


@app.command()
@handles_errors
def chat(
    user: UserOpt = None,
    session: SessionOpt = None,
    generator: GeneratorOpt = None,
    model: ModelOpt = None,
    generator_url: GeneratorUrlOpt = None,
    k: TopKOpt = None,
    max_new_tokens: MaxNewOpt = None,
    temperature: TemperatureOpt = None,
    home: HomeOpt = None,
    collection: CollectionOpt = None,
    embedder: EmbedderOpt = None,
    chroma_url: ChromaUrlOpt = None,
) -> None:
    """Talk with ragmem: each question uses the session's history and your long-term memory.

    Type /sources to list the last answer's sources, /new for a new session, /exit (or Ctrl-D) to quit.
    """
    import uuid

    from rag_memory.cli.render import print_answer_footer

    rag = pipeline(
        home=home, collection=collection, embedder=embedder, chroma_url=chroma_url, user=user, generator=generator,
        model=model, generator_url=generator_url, k=k, max_new_tokens=max_new_tokens, temperature=temperature,
    )
    session_id = session or f"chat-{uuid.uuid4().hex[:8]}"
    out = stdout()
    err = stderr()
    err.print(f"Session [bold]{session_id}[/] as user [bold]{rag.settings.user}[/]. /exit to quit, /new for a new session.")
    last = None
    shown: set[str] = set()
    interrupted = False
    while True:
        try:
            line = input("you> ")
        except EOFError:
            sys.stdout.write("\n")
            break
        except KeyboardInterrupt:
            # One Ctrl-C drops the line being typed; a second one in a row leaves.
            sys.stdout.write("\n")
            if interrupted:
                break
            interrupted = True
            err.print("(Ctrl-C again or Ctrl-D to leave the chat)")
            continue
        interrupted = False
        line = line.strip()
        if not line:
            continue
        if line in ("/exit", "/quit"):
            break
        if line == "/new":
            session_id = f"chat-{uuid.uuid4().hex[:8]}"
            err.print(f"New session [bold]{session_id}[/].")
            continue
        if line == "/sources":
            if last is not None:
                print_answer_footer(out, last, display_path, with_text=True)
            else:
                err.print("No answer yet in this chat.")
            continue
        try:
            stream = rag.stream(line, session_id=session_id)
            sys.stdout.write("ragmem> ")
            for piece in stream:
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
        except RagMemoryError as exc:
            err.print(f"[bold red]Error:[/] {exc}", soft_wrap=True)
            continue
        except KeyboardInterrupt:
            # Ctrl-C while answering stops that answer (nothing of it is stored) and asks again.
            sys.stdout.write("\n")
            err.print("(answer cancelled)")
            continue
        last = stream.answer
        if last is not None:
            for note in _short_notes(last.notes):
                if note not in shown:  # each note once per session
                    shown.add(note)
                    err.print(f"[yellow]Note:[/] {note}", soft_wrap=True)
        if last is not None and last.sources:
            out.print("  " + "  ".join(f"[{s.n}] {_short_source(s)}" for s in last.sources), soft_wrap=True)
    err.print(f"Chat ended; session [bold]{session_id}[/] is kept (ragmem chat --session {session_id} to go on).")


def _short_notes(notes: list[str]) -> list[str]:
    """Notes as the CLI prints them: the long "no language model" reason as one short line."""
    from rag_memory.generation.select import EXTRACTIVE_NOTE, EXTRACTIVE_SHORT

    return [EXTRACTIVE_SHORT if note.startswith(EXTRACTIVE_NOTE) else note for note in notes]


# The scores every search --json hit carries (null where its retriever did not see the chunk);
# docs/cli.md "search --json" names each, and a test checks the two agree.
HIT_SCORES = ("fused_score", "dense_score", "bm25_score", "rerank_score", "coverage")


def _round(value):
    return None if value is None else round(float(value), 6)


def _short_source(source) -> str:
    if source.kind == "memory":
        return f"memory {source.created_at[:10] if source.created_at else ''}".strip()
    return display_path(source.source) + (f":{source.page}" if source.page is not None else "")


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
    settings = load_settings(home=home, collection=collection, embedder=embedder, chroma_url=chroma_url)
    from rag_memory.pipelines.components import Components

    rows = settings.show()
    # Derived, not a setting: what the embedder reads (from its name or embedder_languages).
    rows.append(("embedder_reads", _embedder_reads(Components(settings)), "embedder, embedder_languages"))
    if as_json:
        print_json({name: {"value": _jsonable(value), "source": src} for name, value, src in rows})
        return
    from rich.table import Table

    table = Table("setting", "value", "from")
    for name, value, src in rows:
        table.add_row(name, repr(_jsonable(value)), src)
    stdout().print(table)


def _embedder_reads(parts) -> str:
    from rag_memory.knowledge_base.hybrid import describe_languages

    return f"{describe_languages(parts.embedder_languages)} ({parts.embedder.model_id})"


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value

