"""Named crash points, so tests can kill a real ragmem process at an exact step.

``RAGMEM_KILL_AT=NAME:N`` (read once, when this module is imported) makes the process send
itself SIGKILL the N-th time it passes ``checkpoint(NAME)``: no cleanup handler, ``finally`` or
``atexit`` runs, exactly as after ``kill -9`` or a power cut. Unset, a checkpoint is one
comparison. The names are listed in ``CHECKPOINTS``; docs/reliability.md says which tests use
them.
"""

from __future__ import annotations

import os
import signal

__all__ = ["CHECKPOINTS", "checkpoint"]

CHECKPOINTS = (
    # ingest: loading, embedding, writing (in the order a batch passes them)
    "load", "embed", "pending", "upsert", "delete", "metadata", "keyword-index", "commit", "remove", "repair",
    # ask: generating, storing the turn
    "generate", "history", "memory",
)

_TARGET: tuple[str, int] | None = None
_raw = os.environ.get("RAGMEM_KILL_AT", "")
if _raw:
    _name, _, _count = _raw.partition(":")
    _TARGET = (_name, int(_count or 1))
_passed: dict[str, int] = {}


def checkpoint(name: str) -> None:
    """Die here with SIGKILL if ``RAGMEM_KILL_AT`` names this point and its count is reached."""
    if _TARGET is None or _TARGET[0] != name:
        return
    _passed[name] = _passed.get(name, 0) + 1
    if _passed[name] >= _TARGET[1]:
        os.kill(os.getpid(), signal.SIGKILL)
