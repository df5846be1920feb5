"""`ragmem eval ...`: measure ragmem on public data sets or your own."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from rag_memory.cli.options import (
    EmbedderOpt,
    JsonOpt,
    handles_errors,
    load_settings,
    print_json,
    stderr,
    stdout,
)

eval_app = typer.Typer(help="Measure retrieval quality and speed.", no_args_is_help=True)


@eval_app.command("retrieval")
@handles_errors
def retrieval(
    dataset: Annotated[
        str | None, typer.Option("--dataset", "-d", help="squad (SQuAD v1.1 dev) or cmrc (CMRC 2018 dev).")
    ] = None,
    passages: Annotated[
        Path | None, typer.Option("--passages", help='Your passages: JSONL of {"id", "text", "title"?}.')
    ] = None,
    questions: Annotated[
        Path | None, typer.Option("--questions", help='Your questions: JSONL of {"question", "relevant": (list of passage ids)}.')
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit", "-n",
            help="Only N questions (spread over the set), with the passages of their articles: a quick run"
            " with fewer distractors than the full one.",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Folder holding squad-v1.1/ and cmrc2018/ (env RAGMEM_DATA_DIR; default: a shared/data"
            " folder in or above the working folder).",
        ),
    ] = None,
    embedder: EmbedderOpt = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Also draw hit@k curves and latency histograms into FILE.png.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest a dataset's passages into a temporary collection and score dense, BM25 and
    hybrid retrieval side by side: hit@1/5/10, MRR@10, nDCG@10, query latency p50/p95.

    Nothing is written to your own knowledge base.
    """
    from rag_memory.errors import ConfigError
    from rag_memory.eval.retrieval import evaluate_retrieval, load_dataset, load_jsonl

    if dataset and (passages or questions):
        raise ConfigError("give either --dataset or --passages with --questions, not both")
    if dataset:
        data = load_dataset(dataset.lower(), data_dir=data_dir, limit=limit)
    elif passages and questions:
        data = load_jsonl(passages, questions, limit=limit)
    else:
        raise ConfigError("say what to evaluate: --dataset squad|cmrc, or --passages P.jsonl --questions Q.jsonl")
    settings = load_settings(embedder=embedder)
    if plot is not None:
        from rag_memory.eval.plot import check_plot_path

        check_plot_path(plot)

    with _EvalProgress(enabled=not as_json and sys.stderr.isatty()) as bar:
        result = evaluate_retrieval(data, settings, progress=bar.update)
    if plot is not None:
        from rag_memory.eval.plot import plot_retrieval

        plot_retrieval(result, plot)
        stderr().print(f"Wrote the plot to {plot}.")
    if as_json:
        print_json(result.as_json())
        return
    from rich.table import Table

    out = stdout()
    table = Table(
        "mode", "hit@1", "hit@5", "hit@10", "MRR@10", "nDCG@10", "p50 ms", "p95 ms",
        title=f"{result.dataset}: {result.questions} questions, {result.passages} passages"
        f" ({result.chunks} chunks), embedder {result.embedder}",
    )
    for mode, m in result.results.items():
        row = m.as_json()
        table.add_row(
            mode, *(f"{row[k]:.3f}" for k in ("hit@1", "hit@5", "hit@10", "mrr@10", "ndcg@10")),
            f"{row['p50_ms']:.1f}", f"{row['p95_ms']:.1f}",
        )
    out.print(table)
    if result.failed_passages:
        stderr().print(f"[yellow]Note:[/] {len(result.failed_passages)} passages could not be ingested.")


class _EvalProgress:
    """A progress bar per stage (ingest, then one per retrieval mode) on stderr."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._progress = None
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> _EvalProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description:>8}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=Console(stderr=True), transient=True,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, stage: str, done: int, total: int) -> None:
        if self._progress is None:
            return
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(stage, total=total)
        self._progress.update(self._tasks[stage], completed=done, total=total)
