"""One answer, generated on a worker thread and handed to the event loop piece by piece.

The pipeline and the generator are synchronous; the server is not. ``answer_events`` runs
``RagPipeline.stream`` on its own thread while it holds a slot of the generator queue, and
yields ``("piece", text)`` events and then one ``("answer", Answer)``. When the consumer stops
early (the client disconnected, or the deadline passed) the worker closes the pipeline's
stream at the next piece, which stops the generation; that turn is not stored.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from rag_memory.errors import RagMemoryError
from rag_memory.generation.base import GenerationConfig
from rag_memory.schema import Turn
from rag_memory.server.workers import Cancelled, GenerationQueue

log = logging.getLogger(__name__)


class RequestTimeout(RagMemoryError):
    """The answer was not finished within the server's per-request timeout."""


@dataclass
class AskRequest:
    """What the pipeline is asked, once the HTTP layer has checked it."""

    question: str
    user_id: str
    session_id: str | None = None
    top_k: int | None = None
    config: GenerationConfig | None = None
    explain: bool = False
    history: Sequence[Turn] | None = None  # the conversation so far, when the client sends it


async def answer_events(
    pipeline: Any, queue: GenerationQueue, request: AskRequest, *, timeout: float
) -> AsyncIterator[tuple[str, Any]]:
    """Yield ``("piece", str)`` events, then ``("answer", Answer)``; raise the pipeline's errors.

    Raises:
        RequestTimeout: ``timeout`` seconds passed (waiting in the queue plus generating).
        QueueFull, QueueTimeout: from the generator queue.
    """
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    cancelled = threading.Event()
    deadline = time.monotonic() + timeout

    def put(item: tuple[str, Any]) -> None:
        try:
            loop.call_soon_threadsafe(inbox.put_nowait, item)
        except RuntimeError:  # the loop is gone (server shutting down); nobody is listening
            cancelled.set()

    def work() -> None:
        try:
            with queue.slot(deadline=deadline, cancelled=cancelled):
                stream = pipeline.stream(
                    request.question,
                    session_id=request.session_id,
                    user_id=request.user_id,
                    top_k=request.top_k,
                    config=request.config,
                    explain=request.explain,
                    history=request.history,
                )
                pieces = iter(stream)
                try:
                    for piece in pieces:
                        if cancelled.is_set():
                            queue.note_cancelled()
                            log.info("generation for user %r stopped: the client left", request.user_id)
                            return
                        put(("piece", piece))
                finally:
                    pieces.close()  # stops an unfinished generation; a no-op after the last piece
                put(("answer", stream.answer))
        except Cancelled:
            pass
        except BaseException as exc:  # handed to the event loop, which raises it for the handler
            put(("error", exc))

    threading.Thread(target=work, name="ragmem-answer", daemon=True).start()
    try:
        while True:
            left = deadline - time.monotonic()
            try:
                kind, value = await asyncio.wait_for(inbox.get(), timeout=max(left, 0.001))
            except TimeoutError:
                raise RequestTimeout(
                    f"the answer took longer than the server's {timeout:g}-second limit per request and was"
                    " stopped; ask for a shorter answer (max_tokens), or start the server with a higher"
                    " --request-timeout"
                ) from None
            if kind == "error":
                raise value
            yield kind, value
            if kind == "answer":
                return
    finally:
        cancelled.set()
