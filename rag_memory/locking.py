"""The home's inter-process locks: one mechanism (``filelock``) for every writer of a ragmem home.

Embedded Chroma is not safe for several writing processes: each keeps its own copy of a
collection's vector index in memory and writes it back, so two writers lose each other's
vectors. Every process that writes a home therefore takes its lock first:

- ``write`` (``<home>/locks/write.lock``): held around each write to embedded Chroma (an
  ingest batch, a remembered turn, ``memory forget``), so it is held for moments at a time.
  Readers (``search``, recall) never take it.
- ``ingest-<collection>``: held for a whole ingest run, so two ingests into one collection never
  interleave their diff against the manifest and their writes; the second one waits.

Both are the same ``HomeLock``: re-entrant within a process (a thread that holds it may take it
again; other threads of the process wait like other processes do), released by the kernel when
its process dies (``kill -9`` leaves nothing to clean up), and it says who it is waiting for once
the wait passes a few seconds: ``waiting for another ragmem process (pid 4242, ingest) writing
/home/me/.local/share/ragmem``.

Example:
    >>> lock = HomeLock(home)
    >>> with lock.hold("remember a turn"):
    ...     store.upsert_records(...)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rag_memory.errors import StoreError
from rag_memory.home import private_file, write_private

log = logging.getLogger(__name__)

__all__ = ["NOTICE_AFTER_S", "HomeLock", "LockTimeout"]

# How long a writer waits quietly before it says whom it is waiting for.
NOTICE_AFTER_S = 3.0


class LockTimeout(StoreError):
    """Another process held a home's lock for longer than the configured wait."""


class _Held:
    """The process-wide state of one lock file: which thread holds it, how deeply."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.thread_lock = threading.RLock()
        self.depth = 0
        self.file_lock = None


_REGISTRY: dict[str, _Held] = {}
_REGISTRY_LOCK = threading.Lock()


def _held(path: Path) -> _Held:
    key = os.path.abspath(path)
    with _REGISTRY_LOCK:
        if key not in _REGISTRY:
            _REGISTRY[key] = _Held(Path(key))
        return _REGISTRY[key]


class HomeLock:
    """One named inter-process lock of a ragmem home.

    Args:
        home: The ragmem home (the lock file goes to ``<home>/locks/<name>.lock``).
        name: Which lock: ``write`` (embedded Chroma writes) or ``ingest-<collection>``.
        timeout: Seconds to wait for another process before giving up with ``LockTimeout``;
            ``None`` waits as long as it takes, ``0`` gives up at once.
        notice_after: Seconds of waiting after which the wait is logged (a warning naming the
            holder's pid and what it is doing), and ``on_wait`` is called.
        on_wait: Called once per wait that passes ``notice_after``, with the message.
    """

    def __init__(
        self,
        home: Path,
        name: str = "write",
        *,
        timeout: float | None = None,
        notice_after: float = NOTICE_AFTER_S,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        if timeout is not None and timeout < 0:
            raise StoreError(f"a lock timeout must be 0 or more seconds (or None to wait), got {timeout}")
        self.home = Path(home)
        self.name = name
        self.path = self.home / "locks" / f"{name}.lock"
        self.owner_path = self.home / "locks" / f"{name}.owner"
        self.timeout = timeout
        self.notice_after = notice_after
        self.on_wait = on_wait

    @property
    def held(self) -> bool:
        """Whether this process holds the lock now."""
        return _held(self.path).depth > 0

    def owner(self) -> str | None:
        """``pid N, doing`` of the process that last took the lock (it may have finished)."""
        try:
            text = self.owner_path.read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return text or None

    @contextmanager
    def hold(self, doing: str) -> Iterator[None]:
        """Hold the lock while the block runs.

        Args:
            doing: What this process does with it ("ingest", "remember a turn"), shown to a
                process that has to wait.

        Raises:
            LockTimeout: Another process held it longer than ``timeout``.
            StoreError: The lock file cannot be created (the home is not writable).
        """
        state = _held(self.path)
        started = time.monotonic()
        if not self._take_thread(state, started):
            raise self._timeout_error(started)
        try:
            if state.depth == 0:
                self._take_file(state, doing, started)
            state.depth += 1
            try:
                yield
            finally:
                state.depth -= 1
                if state.depth == 0 and state.file_lock is not None:
                    state.file_lock.release()
        finally:
            state.thread_lock.release()

    # -- internals -------------------------------------------------------------------------
    def _remaining(self, started: float) -> float:
        if self.timeout is None:
            return -1.0
        return max(0.0, self.timeout - (time.monotonic() - started))

    def _take_thread(self, state: _Held, started: float) -> bool:
        # Threads of one process queue here; the file lock is taken once per process.
        if state.thread_lock.acquire(blocking=False):
            return True
        quiet = self.notice_after if self.timeout is None else min(self.notice_after, self.timeout)
        if state.thread_lock.acquire(timeout=quiet):
            return True
        if self.timeout is not None and self._remaining(started) <= 0:
            return False
        self._notice(f"pid {os.getpid()}, another thread of this process")
        remaining = self._remaining(started)
        return state.thread_lock.acquire(timeout=remaining) if remaining >= 0 else state.thread_lock.acquire()

    def _take_file(self, state: _Held, doing: str, started: float) -> None:
        from filelock import FileLock, Timeout

        try:
            private_file(self.path)  # the locks folder 0700 and the lock file 0600, like the home
        except OSError as exc:
            raise StoreError(
                f"cannot create the lock folder {self.path.parent}: {exc.strerror or exc}. Check that the"
                f" ragmem home {self.home} is a writable folder, or set RAGMEM_HOME to one."
            ) from exc
        if state.file_lock is None:
            state.file_lock = FileLock(str(self.path), mode=0o600, thread_local=False)
        lock = state.file_lock
        try:
            lock.acquire(timeout=0)
        except Timeout:
            quiet = self.notice_after if self.timeout is None else min(self.notice_after, self.timeout)
            try:
                lock.acquire(timeout=quiet)
            except Timeout:
                if self.timeout is not None and self._remaining(started) <= 0:
                    raise self._timeout_error(started) from None
                self._notice(self.owner() or "pid unknown")
                try:
                    lock.acquire(timeout=self._remaining(started))
                except Timeout:
                    raise self._timeout_error(started) from None
        except OSError as exc:
            raise StoreError(
                f"cannot take the lock {self.path}: {exc.strerror or exc}. Check that the ragmem home"
                f" {self.home} is a writable folder, or set RAGMEM_HOME to one."
            ) from exc
        try:
            write_private(self.owner_path, f"pid {os.getpid()}, {doing}\n")
        except OSError:
            log.debug("cannot write %s", self.owner_path)

    def _notice(self, owner: str) -> None:
        message = f"waiting for another ragmem process ({owner}) writing {self.home}"
        if self.name != "write":
            message += f" (lock {self.name})"
        log.warning("%s", message)
        if self.on_wait is not None:
            self.on_wait(message)

    def _timeout_error(self, started: float) -> LockTimeout:
        waited = time.monotonic() - started
        return LockTimeout(
            f"another ragmem process ({self.owner() or 'pid unknown'}) is writing {self.home}; gave up after"
            f" {waited:.0f} s (lock_timeout = {self.timeout:g} s). Wait for it to finish, or raise"
            f" lock_timeout (RAGMEM_LOCK_TIMEOUT), and run the command again."
        )
