"""The server's shared resources: the generator queue and the ingest job runner.

Every answer goes through one ``GenerationQueue``: at most ``slots`` answers are generated at
once (one model, shared), at most ``max_waiting`` wait for a slot, and a request that finds
the queue full is refused at once (HTTP 503) instead of piling up. Ingest jobs run one at a
time on their own thread, so a long ingest never holds up answers.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rag_memory.errors import RagMemoryError

log = logging.getLogger(__name__)


class QueueFull(RagMemoryError):
    """Every generation slot is busy and the waiting line is full."""


class QueueTimeout(RagMemoryError):
    """A request waited longer than its deadline for a generation slot."""


class Cancelled(Exception):
    """The client went away while its request waited; nothing was generated."""


class GenerationQueue:
    """A bounded, first-come-first-served line of requests in front of the shared generator.

    Args:
        slots: Answers generated at the same time (1 for a local model; more for an inference
            server that batches).
        max_waiting: Requests allowed to wait for a slot; one more is refused.
    """

    def __init__(self, *, slots: int = 1, max_waiting: int = 64) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        if max_waiting < 0:
            raise ValueError(f"max_waiting must be 0 or more, got {max_waiting}")
        self.slots = slots
        self.max_waiting = max_waiting
        self._cond = threading.Condition()
        self._running = 0
        self._waiting = 0
        self._line: deque[object] = deque()  # waiting requests, oldest first
        self._waits: deque[float] = deque(maxlen=512)  # seconds each of the recent requests waited
        self.served = 0
        self.refused = 0
        self.cancelled = 0

    @contextmanager
    def slot(self, *, deadline: float, cancelled: threading.Event) -> Iterator[float]:
        """Hold a generation slot for the ``with`` block; yields the seconds waited for it.

        Raises:
            QueueFull: ``max_waiting`` requests already wait.
            QueueTimeout: ``deadline`` (a ``time.monotonic()`` value) passed first.
            Cancelled: ``cancelled`` was set while waiting.
        """
        started = time.monotonic()
        ticket = object()
        with self._cond:
            self._refuse_if_full()
            self._line.append(ticket)
            self._waiting += 1
            try:
                # First come, first served: only the head of the line may take a free slot.
                while self._running >= self.slots or self._line[0] is not ticket:
                    if cancelled.is_set():
                        raise Cancelled()
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise QueueTimeout(
                            f"the request waited {time.monotonic() - started:.0f} s for the generator and timed"
                            " out; the server is overloaded: retry later, or raise --request-timeout"
                        )
                    self._cond.wait(timeout=min(left, 0.25))
            finally:
                self._waiting -= 1
                self._line.remove(ticket)
                self._cond.notify_all()  # the next in line may be free to go
            self._running += 1
            waited = time.monotonic() - started
            self._waits.append(waited)
        try:
            yield waited
        finally:
            with self._cond:
                self._running -= 1
                self.served += 1
                self._cond.notify_all()

    def check_room(self) -> None:
        """Raise ``QueueFull`` now if a new request would be refused (so it gets HTTP 503
        before a streamed response starts)."""
        with self._cond:
            self._refuse_if_full()

    def _refuse_if_full(self) -> None:
        if self._running >= self.slots and self._waiting >= self.max_waiting:
            self.refused += 1
            raise QueueFull(
                f"the server is busy: {self._running} answers are being generated and {self._waiting}"
                " requests wait (the most allowed); retry in a few seconds"
            )

    def note_cancelled(self) -> None:
        """Count a generation stopped because its client went away."""
        with self._cond:
            self.cancelled += 1

    def status(self) -> dict[str, Any]:
        """Queue length and recent waits, for ``/api/status``."""
        with self._cond:
            waits = sorted(self._waits)
            return {
                "slots": self.slots,
                "running": self._running,
                "waiting": self._waiting,
                "max_waiting": self.max_waiting,
                "served": self.served,
                "refused": self.refused,
                "cancelled": self.cancelled,
                "wait_seconds": {
                    "last": round(self._waits[-1], 4) if self._waits else None,
                    "p50": round(statistics.median(waits), 4) if waits else None,
                    "p95": round(waits[min(len(waits) - 1, int(0.95 * len(waits)))], 4) if waits else None,
                    "window": len(waits),
                },
            }


@dataclass
class IngestJob:
    """One ingest run requested through the API, and how far it got."""

    id: str
    paths: list[str]
    options: dict[str, Any]
    state: str = "queued"  # queued | running | done | failed
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    started_at: str | None = None
    finished_at: str | None = None
    files_planned: int | None = None
    files_done: int = 0
    chunks_planned: int = 0
    chunks_embedded: int = 0
    report: dict[str, Any] | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "paths": self.paths,
            "options": self.options,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "progress": {
                "files_planned": self.files_planned,
                "files_done": self.files_done,
                "chunks_planned": self.chunks_planned,
                "chunks_embedded": self.chunks_embedded,
            },
            "report": self.report,
            "error": self.error,
        }


class _JobProgress:
    """``IngestProgress`` that writes into the job record the API reports."""

    def __init__(self, job: IngestJob) -> None:
        self.job = job

    def planned(self, files: int) -> None:
        self.job.files_planned = files

    def file_done(self, path: str) -> None:
        self.job.files_done += 1

    def chunks_planned(self, n: int) -> None:
        self.job.chunks_planned += n

    def chunks_embedded(self, n: int) -> None:
        self.job.chunks_embedded += n


class IngestJobs:
    """Ingest jobs, run one at a time on a worker thread, oldest first.

    Args:
        run: Does one ingest: ``run(paths, progress=..., **options)`` returning an ``IngestReport``.
        keep: Finished jobs kept for ``GET /api/jobs``.
    """

    def __init__(self, run: Callable[..., Any], *, keep: int = 50) -> None:
        self._run = run
        self._keep = keep
        self._jobs: dict[str, IngestJob] = {}
        self._order: deque[str] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False

    def submit(self, paths: list[str], options: dict[str, Any]) -> IngestJob:
        job = IngestJob(id=f"job-{uuid.uuid4().hex[:12]}", paths=paths, options=options)
        with self._cond:
            self._jobs[job.id] = job
            self._order.append(job.id)
            self._forget_old()
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="ragmem-ingest", daemon=True)
                self._thread.start()
            self._cond.notify()
        return job

    def get(self, job_id: str) -> IngestJob | None:
        with self._cond:
            return self._jobs.get(job_id)

    def list(self) -> list[IngestJob]:
        with self._cond:
            return [self._jobs[i] for i in reversed(self._order)]

    def status(self) -> dict[str, Any]:
        with self._cond:
            states = [j.state for j in self._jobs.values()]
            return {"running": states.count("running"), "queued": states.count("queued")}

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()

    def _forget_old(self) -> None:
        finished = [i for i in self._order if self._jobs[i].state in ("done", "failed")]
        for job_id in finished[: max(0, len(finished) - self._keep)]:
            self._order.remove(job_id)
            del self._jobs[job_id]

    def _next(self) -> IngestJob | None:
        with self._cond:
            while not self._stop:
                for job_id in self._order:
                    if self._jobs[job_id].state == "queued":
                        job = self._jobs[job_id]
                        job.state = "running"
                        job.started_at = datetime.now(UTC).isoformat()
                        return job
                self._cond.wait()
            return None

    def _work(self) -> None:
        while (job := self._next()) is not None:
            try:
                report = self._run(job.paths, progress=_JobProgress(job), **job.options)
                job.report = report.as_json()
                job.state = "done"
            except RagMemoryError as exc:
                job.error = str(exc)
                job.state = "failed"
            except Exception as exc:  # a bug: the log keeps the traceback, the client gets a line
                log.error("ingest job %s failed:\n%s", job.id, traceback.format_exc())
                job.error = f"ingest failed unexpectedly ({type(exc).__name__}); the server log has the details"
                job.state = "failed"
            job.finished_at = datetime.now(UTC).isoformat()
