"""Hold a home's lock in another process, as a concurrent ragmem command would."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def lock_held_elsewhere(
    home: Path, name: str = "write", doing: str = "ingest", *, release_after: float | None = None
) -> Iterator[int]:
    """A subprocess holds ``HomeLock(home, name)`` until the block ends (or for
    ``release_after`` seconds); yields its pid."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from rag_memory.locking import HomeLock
        with HomeLock(Path({str(home)!r}), {name!r}).hold({doing!r}):
            print("held", flush=True)
            sys.stdin.read() if {release_after!r} is None else time.sleep({release_after!r})
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc.pid
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
