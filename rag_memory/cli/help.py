"""How ``--help`` shows option types: click's plain metavars (N, X, TEXT, PATH), nothing for
flags (``--json``, ``--mmr/--no-mmr``), and "repeatable" for counters (``-v``, ``-vv``), in
place of typer's ``<bool>`` / ``<int>`` / ``<str>`` column."""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperOption

_NAMES = {"int": "N", "float": "X", "str": "TEXT", "Path": "PATH", "bool": ""}


def _label(param: Any, ctx: Any) -> str | None:
    if param.metavar is not None:
        return param.metavar
    if getattr(param, "count", False):
        return "repeatable"
    if getattr(param, "is_flag", False):
        return ""
    shown = _ORIGINAL[type(param)](param, ctx)
    if not shown:
        return shown
    bare = shown.strip("<>").removesuffix("...")
    name = _NAMES.get(bare, bare.upper() if "|" not in bare else bare)
    return name + ("..." if shown.endswith("...") else "")


_ORIGINAL = {TyperOption: TyperOption.display_type_rich, TyperArgument: TyperArgument.display_type_rich}


def install() -> None:
    """Use these labels in every ragmem command's help (idempotent)."""
    for cls in (TyperOption, TyperArgument):
        cls.display_type_rich = _label  # type: ignore[method-assign]
