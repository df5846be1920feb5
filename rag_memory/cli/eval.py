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


@eval_app.command("memory")
@handles_errors
def memory(
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="locomo (LoCoMo, 10 conversations).")] = None,
    conversations: Annotated[
        Path | None,
        typer.Option("--conversations", help="Your conversations: ragmem memory-eval JSONL (see docs/benchmarks.md)."),
    ] = None,
    longmemeval: Annotated[
        Path | None, typer.Option("--longmemeval", help="A file in the LongMemEval format (a JSON list).")
    ] = None,
    budget: Annotated[int, typer.Option("--budget", help="Memory tokens injected per question.")] = 1000,
    limit: Annotated[int | None, typer.Option("--limit", "-n", help="Only the first N conversations.")] = None,
    only: Annotated[
        str | None, typer.Option("--only", help="Only these conversations (0-based), e.g. 0-4 or 5,7,9.")
    ] = None,
    strategies: Annotated[
        str | None,
        typer.Option("--strategies", help="Compare these strategies (comma-separated names, or 'all'); default:"
                     " the default strategy only."),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Also draw recall against the token budget per strategy (PNG).")
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="torch CPU threads (1 is fastest on a busy machine).")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Folder holding locomo/ [../shared/data].")] = None,
    embedder: EmbedderOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay conversations into a fresh memory and score what it would inject per question:
    evidence recall, any/all-evidence hit, session Hit@1, MRR, tokens, latency p50/p95.

    Nothing is written to your own memory.
    """
    from rag_memory.errors import ConfigError
    from rag_memory.eval.memory import (
        evaluate_memory,
        load_longmemeval,
        load_memory_dataset,
        load_memory_jsonl,
        parse_selection,
        plot_budgets,
        strategy_set,
    )

    given = [x for x in (dataset, conversations, longmemeval) if x]
    if len(given) != 1:
        raise ConfigError("say what to evaluate: --dataset locomo, --conversations FILE.jsonl or --longmemeval FILE.json")
    if dataset:
        data = load_memory_dataset(dataset.lower(), data_dir=data_dir, limit=limit,
                                   conversations=parse_selection(only) if only else None)
    elif conversations:
        data = load_memory_jsonl(conversations, limit=limit)
    else:
        data = load_longmemeval(longmemeval, limit=limit)
    if threads:
        import torch

        torch.set_num_threads(threads)
    settings = load_settings(embedder=embedder)
    chosen = strategy_set(strategies)
    with _EvalProgress(enabled=not as_json and sys.stderr.isatty()) as bar:
        result = evaluate_memory(data, settings, budget=budget, strategies=chosen, progress=bar.update,
                                 budgets=[250, 500, 1000, 2000] if plot else None)
    if plot:
        plot_budgets(result, plot)
    if as_json:
        print_json(result.as_json())
        return
    from rich.table import Table

    out = stdout()
    table = Table(
        "strategy", "recall", "any", "all", "session hit@1", "MRR", "tokens", "p50 ms", "p95 ms", "cat 5 empty",
        title=f"{result.dataset}: {result.questions} questions (categories 1-4), {result.conversations} conversations,"
        f" {result.turns} turns, budget {result.budget} tokens (conversation {result.conversation_tokens:.0f}),"
        f" embedder {result.embedder}",
    )
    for name, m in result.results.items():
        adv = m["by_category"].get("adversarial", {})
        table.add_row(
            name + (" (default)" if name == result.default else ""),
            *(f"{m[k]:.3f}" for k in ("recall", "any", "all", "session_hit@1", "mrr")),
            f"{m['tokens_per_question']:.0f}", f"{m['p50_ms']:.1f}", f"{m['p95_ms']:.1f}",
            f"{adv['nothing_injected']:.2f}" if adv else "-",
        )
    out.print(table)
    cats = Table("category", "questions", "recall", "any", "all", "session hit@1", "MRR",
                 title=f"by category ({result.default})")
    for cat, m in result.results[result.default]["by_category"].items():
        if cat == "adversarial":
            continue
        cats.add_row(cat, str(m["questions"]), *(f"{m[k]:.3f}" for k in ("recall", "any", "all", "session_hit@1", "mrr")))
    out.print(cats)
    if result.dropped_evidence or result.normalised_evidence:
        stderr().print(f"Note: {result.dropped_evidence} malformed or dangling evidence ids dropped,"
                        f" {result.normalised_evidence} normalised.")
    if plot:
        stderr().print(f"Wrote {plot}.")
