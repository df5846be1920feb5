"""`ragmem models`: list, pull and remove models (``rag_memory.models`` does the work)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rag_memory.cli.options import HomeOpt, JsonOpt, handles_errors, load_settings, print_json, stderr, stdout

models_app = typer.Typer(help="List, download or remove models.", no_args_is_help=True)


@models_app.command("list")
@handles_errors
def list_models(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """What is configured, what ragmem recommends, and what is on this machine (sizes, where)."""
    from rag_memory.models import inventory

    settings = load_settings(home=home)
    rows = inventory(settings)
    if as_json:
        print_json([r.as_json() for r in rows])
        return
    from rich.table import Table

    table = Table()
    table.add_column("name", no_wrap=True)
    for col in ("kind", "status", "size", "used as"):
        table.add_column(col)
    table.add_column("where / how to get it", overflow="fold")
    for r in rows:
        style = {"present": "green", "bundled": "green", "incomplete": "red"}.get(r.status)
        status = f"[{style}]{r.status}[/]" if style else r.status
        table.add_row(r.name, r.kind, status, r.size, ", ".join(r.configured_as) or "", r.where)
    stdout().print(table)
    stderr().print(f"Hugging Face cache: {rows[0].cache if rows else ''}", highlight=False)


@models_app.command("pull")
@handles_errors
def pull(
    name: Annotated[
        str | None,
        typer.Argument(help="A short name from `ragmem models list` or a hub id (default: the configured generator)."),
    ] = None,
    revision: Annotated[str | None, typer.Option("--revision", help="Branch, tag or commit (default: main).")] = None,
    home: HomeOpt = None,
) -> None:
    """Download a model from the Hugging Face hub (HF_ENDPOINT) into its cache, resumably, and verify it."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    from rag_memory.models import pull as pull_model
    from rag_memory.models import repo_id_for

    settings = load_settings(home=home)
    target = name or settings.generator_model
    if Path(target).expanduser().exists():
        stderr().print(f"{target} is a local folder: nothing to pull.")
        return
    repo_id = repo_id_for(target)
    with Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeRemainingColumn(), console=stderr(), transient=True,
    ) as bar:
        task = bar.add_task(f"pulling {repo_id}", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = pull_model(target, progress=progress, revision=revision)
    got = f"{result.downloaded_bytes / 1e6:.1f} MB downloaded" if result.downloaded_bytes else "already downloaded"
    stdout().print(
        f"Pulled {result.repo_id} ({result.files} files, {result.size_bytes / 1e6:.1f} MB, {got}; verified)"
        f" into {result.path}",
        soft_wrap=True, highlight=False,
    )
    if result.repo_id == settings.generator_model:
        stdout().print("It is the configured generator: `ragmem ask` uses it now.")


@models_app.command("rm")
@handles_errors
def rm(
    name: Annotated[str, typer.Argument(help="A short name or hub id, as `ragmem models list` shows it.")],
    home: HomeOpt = None,
) -> None:
    """Delete a downloaded model from the Hugging Face cache."""
    from rag_memory.models import remove, repo_id_for

    load_settings(home=home)
    freed = remove(name)
    stdout().print(f"Removed {repo_id_for(name)} ({freed / 1e6:.1f} MB freed).")
