"""Rich output for the CLI: progress bars, tables, hit listings."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import Console

from rag_memory.ingest.progress import IngestProgress
from rag_memory.schema import Hit, IngestReport

if TYPE_CHECKING:
    from rich.progress import Progress

# rich.progress and rich.table are imported where used: a `ragmem search` prints neither,
# and its start-up is what a user waits for (benchmarks/cold_start.py).


class IngestDisplay(IngestProgress):
    """A progress bar of files loaded and chunks embedded (with chunks/s and the time left) on stderr.

    The chunk total grows as each file is chunked, so a big file shows its total (and an
    estimate of the time left) as soon as it is cut, long before it is embedded.
    """

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Progress | None = None
        self._files = None
        self._chunks = None
        self._started = time.perf_counter()
        self._embedded = 0
        self._planned = 0

    def __enter__(self) -> IngestDisplay:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description:>8}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def planned(self, files: int) -> None:
        if self._progress is None:
            return
        self._started = time.perf_counter()
        self._files = self._progress.add_task("files", total=files, rate="")
        self._chunks = self._progress.add_task("chunks", total=None, rate="")

    def file_done(self, path: str) -> None:
        if self._progress is not None and self._files is not None:
            self._progress.advance(self._files)

    def chunks_planned(self, n: int) -> None:
        if self._progress is None or self._chunks is None:
            return
        self._planned += n
        self._progress.update(self._chunks, total=self._planned)

    def chunks_embedded(self, n: int) -> None:
        if self._progress is None or self._chunks is None:
            return
        self._embedded += n
        rate = self._embedded / max(time.perf_counter() - self._started, 1e-6)
        self._progress.update(self._chunks, advance=n, rate=f"{rate:,.0f} chunks/s")


SKIPPED_SHOWN = 10


def print_ingest_report(console: Console, report: IngestReport, show: Callable[[str], str]) -> None:
    from rich.table import Table

    title = "Dry run: nothing was written" if report.dry_run else f"Ingest finished in {report.seconds:.1f}s"
    table = Table(title=title, title_justify="left")
    table.add_column("files")
    table.add_column("count", justify="right")
    table.add_column("chunks", justify="right")
    table.add_row("added", str(len(report.added)), f"+{report.chunks_added}" if not report.dry_run else "")
    table.add_row("updated", str(len(report.updated)), "")
    table.add_row("removed", str(len(report.removed)), f"-{report.chunks_removed}")
    table.add_row("unchanged", str(len(report.unchanged)), "")
    table.add_row("failed", str(len(report.failed)), "", style="red" if report.failed else None)
    console.print(table)
    if report.dry_run:
        for label, paths in (("add", report.added), ("update", report.updated), ("remove", report.removed)):
            for p in paths:
                console.print(f"  would {label}: {show(p)}")
    if report.repaired:
        console.print(f"Repaired {report.repaired} leftovers of an interrupted run.")
    if report.failed:
        console.print("[red]Failed files[/] (everything else was ingested):")
        for f in report.failed:
            console.print(f"  {show(f.path)}: {f.reason}", soft_wrap=True, markup=False)
    if report.warnings:
        console.print("[yellow]Warnings[/] (these files were ingested; the parser reported problems):")
        for f in report.warnings:
            console.print(f"  {show(f.path)}: {f.reason}", soft_wrap=True, markup=False)
    if report.skipped and (report.found_nothing or len(report.skipped) <= SKIPPED_SHOWN):
        console.print(f"Skipped {len(report.skipped)} files:")
        for f in report.skipped[:SKIPPED_SHOWN]:
            console.print(f"  {show(f.path)}: {f.reason}", soft_wrap=True, markup=False)
        if len(report.skipped) > SKIPPED_SHOWN:
            console.print(f"  ... and {len(report.skipped) - SKIPPED_SHOWN} more (--json lists them all)")
    elif report.skipped:
        console.print(f"Skipped {len(report.skipped)} files of unsupported types or links (--json lists them).")
    for note in report.notes:
        console.print(f"[yellow]Note:[/] {note}", soft_wrap=True, highlight=False)
    if report.chunks_per_second:
        console.print(f"{report.chunks_per_second:,.1f} chunks/s (loading, chunking, embedding and writing)")


def excerpt(text: str, width: int = 240) -> str:
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def print_hits(console: Console, hits: list[Hit], show: Callable[[str], str]) -> None:
    for rank, hit in enumerate(hits, 1):
        where = show(hit.source) + (f":{hit.page}" if hit.page is not None else "")
        console.print(f"[bold]{rank}.[/] [cyan]{hit.score:.3f}[/]  [green]{where}[/]", soft_wrap=True)
        console.print(f"   {excerpt(hit.text)}", soft_wrap=True)


def print_answer_footer(console: Console, answer, show: Callable[[str], str], *, with_text: bool = False) -> None:
    """The numbered sources under an answer, marking which ones it cites; ``with_text`` adds
    each source's text (chat's ``/sources``)."""
    if not answer.sources:
        return
    cited = set(answer.cited)
    console.print("\n[bold]Sources[/]")
    for s in answer.sources:
        if s.kind == "memory":
            where = f"memory ({(s.created_at or '')[:10]})"
        else:
            where = show(s.source) + (f":{s.page}" if s.page is not None else "")
        mark = "*" if s.n in cited else " "
        console.print(f" {mark}[{s.n}] [green]{where}[/] [cyan]{s.score:.3f}[/]{' (cut)' if s.cut else ''}",
                      soft_wrap=True)
        if with_text:
            console.print(f"     {excerpt(s.text, 600)}", soft_wrap=True, markup=False, highlight=False)


def print_explain(console: Console, answer, show: Callable[[str], str]) -> None:
    """Everything ``--explain`` shows: candidates, memories, the gate, budgets, timings."""
    from rich.table import Table

    info = answer.explain or {}
    console.print(f"\n[bold]Explain[/]  question used for retrieval: {info.get('standalone_question')!r}")
    gate = info.get("gate", {})
    table = Table(title=f"Knowledge chunks (gate {gate.get('knowledge')})", title_justify="left")
    for col in ("score", "dense", "bm25", "rerank", "source", "passed gate", "injected"):
        table.add_column(col)

    def num(value) -> str:
        return "-" if value is None else f"{value:.3f}"

    for c in info.get("chunks", []):
        where = show(c["source"]) + (f":{c['page']}" if c["page"] is not None else "")
        table.add_row(num(c["score"]), num(c.get("dense_score")), num(c.get("bm25_score")), num(c.get("rerank_score")),
                      where, "yes" if c["passed_gate"] else "no", "yes" if c["injected"] else "no")
    console.print(table)
    mems = Table(title=f"Memories (gate {gate.get('memory')})", title_justify="left")
    for col in ("score", "similarity", "kind", "date", "injected", "text"):
        mems.add_column(col)
    for m in info.get("memories", []):
        mems.add_row(f"{m['score']:.3f}", f"{m['similarity']:.3f}", m["kind"], m["created_at"][:10],
                     "yes" if m["injected"] else "no", excerpt(m["text"], 60))
    console.print(mems)
    budget = info.get("budget", {})
    bt = Table(title=f"Token budget (prompt {budget.get('prompt_tokens')} of {budget.get('limit')})",
               title_justify="left")
    for col in ("section", "budget", "used", "items", "dropped", "cut"):
        bt.add_column(col)
    for name, sec in budget.get("sections", {}).items():
        bt.add_row(name, str(sec["budget"]), str(sec["used"]), str(sec["items"]), str(sec["dropped"]), str(sec["cut"]))
    console.print(bt)
    console.print("Timings: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in answer.timings.items()))
    console.print("Tokens: " + ", ".join(f"{k} {v}" for k, v in answer.tokens.items()))
