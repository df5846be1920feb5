"""The FastAPI app behind ``ragmem serve``: OpenAI-compatible and native endpoints, and the page.

    /v1/chat/completions, /v1/models   what OpenAI clients (openai, LangChain ChatOpenAI) speak
    /api/...                           ragmem's own JSON API (ask, search, memory, ingest, status)
    /                                  the web page (rag_memory/server/static/)
    /docs, /openapi.json               the API's documentation and schema

Every request but the page, /healthz and the documentation needs an API key once keys are
configured; a key acts as exactly one user. Every failure is a JSON body
``{"error": {"type", "message", "code"}}`` (the shape OpenAI clients parse); a traceback stays
in the server log.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from rag_memory.errors import (
    ConfigError,
    EmbedderMismatchError,
    GenerationError,
    IngestError,
    RagMemoryError,
)
from rag_memory.server.answering import RequestTimeout
from rag_memory.server.auth import ApiKeys
from rag_memory.server.workers import GenerationQueue, IngestJobs, QueueFull, QueueTimeout

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


@dataclass
class ServerOptions:
    """The server's limits and policies (``ragmem serve`` flags).

    Attributes:
        max_body_bytes: Largest request body accepted (HTTP 413 above it).
        max_question_chars: Longest question (and longest message) accepted.
        request_timeout: Seconds an answer may take, waiting in the queue included (HTTP 504).
        slots: Answers generated at the same time.
        max_waiting: Requests that may wait for a slot; more are refused (HTTP 503).
        ingest_roots: Folders the ingest endpoint may read below; nothing else can be ingested
            through the API.
    """

    max_body_bytes: int = 1 << 20
    max_question_chars: int = 8000
    request_timeout: float = 300.0
    slots: int = 1
    max_waiting: int = 64
    ingest_roots: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_question_chars", "slots"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.request_timeout > 0:
            raise ConfigError(f"the request timeout must be a positive number of seconds, got {self.request_timeout}")
        if self.max_waiting < 0:
            raise ConfigError(f"the queue size must be 0 or more, got {self.max_waiting}")


class ApiError(Exception):
    """An HTTP failure with a type and a message for the client."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers


def error_body(status: int, kind: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, "code": status, "param": None}}


def _status_of(exc: RagMemoryError) -> tuple[int, str]:
    if isinstance(exc, QueueFull):
        return 503, "server_busy"
    if isinstance(exc, QueueTimeout | RequestTimeout):
        return 504, "timeout"
    if isinstance(exc, ConfigError | IngestError):
        return 400, "invalid_request_error"
    if isinstance(exc, EmbedderMismatchError):
        return 409, "embedder_mismatch"
    if isinstance(exc, GenerationError):
        return 502, "generation_error"
    return 500, "server_error"


def error_for(exc: BaseException) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    """The status, JSON body and headers a client gets for ``exc``; bugs are logged here."""
    if isinstance(exc, ApiError):
        return exc.status, error_body(exc.status, exc.kind, exc.message), exc.headers
    if isinstance(exc, RagMemoryError):
        status, kind = _status_of(exc)
        headers = {"Retry-After": "5"} if status == 503 else None
        return status, error_body(status, kind, str(exc)), headers
    log.error("unexpected error while serving a request:\n%s", "".join(traceback.format_exception(exc)))
    return 500, error_body(500, "internal_error", "the server failed unexpectedly; its log has the details"), None


class ServerState:
    """What every request handler shares: the pipeline, the keys, the queue, the jobs."""

    def __init__(self, pipeline: Any, keys: ApiKeys, options: ServerOptions) -> None:
        self.pipeline = pipeline
        self.keys = keys
        self.options = options
        self.queue = GenerationQueue(slots=options.slots, max_waiting=options.max_waiting)
        self.jobs = IngestJobs(self._ingest)
        self.started_at = time.time()

    @property
    def components(self):
        return self.pipeline.components

    @property
    def settings(self):
        return self.pipeline.settings

    def _ingest(self, paths: list[str], *, progress: Any, **options: Any):
        s = self.settings
        return self.components.ingestor().run(
            paths,
            include=options.get("include") or s.include,
            exclude=options.get("exclude") or s.exclude,
            dry_run=bool(options.get("dry_run")),
            rebuild=bool(options.get("rebuild")),
            progress=progress,
        )

    def warm_up(self) -> None:
        """Build every stage before the first request, so requests never race to build one."""
        parts = self.components
        parts.generation  # noqa: B018 - loads the generator (or picks the extractive answerer)
        parts.embedder.warm_up()
        parts.retriever  # noqa: B018
        parts.memory  # noqa: B018

    # -- who is asking -------------------------------------------------------------------
    def caller(self, request: Request) -> str | None:
        """The user the request's key belongs to; None when the server has no keys.

        Raises:
            ApiError: Keys are configured and the request has none, or an unknown one.
        """
        if not self.keys:
            return None
        presented = _presented_key(request)
        user = self.keys.user_for(presented)
        if user is None:
            why = "has no API key" if not presented else "has an API key this server does not know"
            raise ApiError(
                401, "authentication_error",
                f"the request {why}; send one as 'Authorization: Bearer KEY' (or an X-API-Key header)",
                {"WWW-Authenticate": "Bearer"},
            )
        return user

    def acting_user(self, request: Request, requested: str | None = None) -> str:
        """The user whose memory a request may use: the key's user, or (with no keys) the
        user the request names, or the configured default user."""
        key_user = self.caller(request)
        if requested is not None and not str(requested).strip():
            raise ApiError(400, "invalid_request_error", "the user id must not be empty")
        if key_user is not None:
            if requested is not None and requested != key_user:
                raise ApiError(
                    403, "permission_error",
                    f"this API key acts as user {key_user!r}; it cannot use the memory of user {requested!r}."
                    " Leave the user field out, or use that user's own key",
                )
            return key_user
        return requested or self.settings.user

    def check_question(self, text: str, what: str = "the question") -> None:
        limit = self.options.max_question_chars
        if len(text) > limit:
            raise ApiError(
                413, "request_too_large",
                f"{what} has {len(text)} characters; this server accepts at most {limit}"
                " (ragmem serve --max-question-chars)",
            )


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.headers.get("x-api-key") or None


class BodyLimit:
    """ASGI middleware: refuse request bodies above ``limit`` bytes before reading them whole."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send, int(declared))
            return
        seen = 0
        started = False

        async def send_tracking(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge(seen)
            return message

        try:
            await self.app(scope, limited, send_tracking)
        except _TooLarge as exc:
            if not started:
                await self._refuse(send, exc.size)

    async def _refuse(self, send: Any, size: int) -> None:
        message = (
            f"the request body has at least {size} bytes; this server accepts at most {self.limit}"
            " (ragmem serve --max-body-bytes)"
        )
        response = JSONResponse(error_body(413, "request_too_large", message), status_code=413)
        await response({"type": "http"}, _no_receive, send)


class CatchBugs:
    """ASGI middleware: an unexpected exception becomes a plain JSON 500 (the traceback goes to
    the log), and the connection stays usable."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as exc:
            status, body, headers = error_for(exc)
            if started:  # too late for a status line; the log has it
                return
            await JSONResponse(body, status_code=status, headers=headers)(scope, receive, send)


class EventStream(StreamingResponse):
    """Server-sent events whose producer is closed however the response ends, so a client
    that disconnects stops its generation at once rather than when the producer is collected."""

    def __init__(self, content: Any, **kwargs: Any) -> None:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **kwargs.pop("headers", {})}
        super().__init__(content, media_type="text/event-stream", headers=headers, **kwargs)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        self.size = size


async def _no_receive() -> dict:
    return {"type": "http.disconnect"}


async def blocking(state: ServerState, func: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking call off the event loop, within the per-request timeout."""
    try:
        return await asyncio.wait_for(run_in_threadpool(func, *args, **kwargs), state.options.request_timeout)
    except TimeoutError:
        raise RequestTimeout(
            f"the request took longer than the server's {state.options.request_timeout:g}-second limit"
        ) from None


def create_app(pipeline: Any, *, keys: ApiKeys | None = None, options: ServerOptions | None = None,
               warm_up: bool = True) -> FastAPI:
    """The server for ``pipeline`` (a ``RagPipeline``).

    Args:
        pipeline: What answers; its components provide the stores, memory and generator.
        keys: API keys and the users they act as; none means no authentication (loopback only,
            which ``ragmem serve`` enforces).
        options: Limits and policies.
        warm_up: Build every stage at start-up (load the models) instead of on first use.
    """
    from rag_memory.server import native_api, openai_api

    state = ServerState(pipeline, keys or ApiKeys(), options or ServerOptions())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if warm_up:
            await run_in_threadpool(state.warm_up)
        yield
        state.jobs.close()

    app = FastAPI(
        title="ragmem",
        summary="Retrieval-augmented generation with memory: OpenAI-compatible and native endpoints.",
        version=_version(),
        lifespan=lifespan,
        docs_url=None,  # FastAPI's own pages load Swagger UI from a CDN; ours ships its assets
        redoc_url=None,
    )
    app.state.ragmem = state

    @app.exception_handler(ApiError)
    @app.exception_handler(RagMemoryError)
    async def _known(request: Request, exc: Exception) -> JSONResponse:
        status, body, headers = error_for(exc)
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {err.get('msg')}")
        message = "the request is not valid: " + "; ".join(problems)
        return JSONResponse(error_body(422, "invalid_request_error", message), status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        kind = {404: "not_found_error", 405: "invalid_request_error"}.get(exc.status_code, "invalid_request_error")
        message = exc.detail if isinstance(exc.detail, str) else "the request failed"
        if exc.status_code == 404:
            message = f"there is no {request.method} {request.url.path} here; see /docs for the endpoints"
        return JSONResponse(error_body(exc.status_code, kind, message), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return _docs_page()

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    assets = _swagger_assets()
    if assets is not None:
        app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")
    app.include_router(openai_api.router)
    app.include_router(native_api.router)
    app.add_middleware(CatchBugs)
    app.add_middleware(BodyLimit, limit=state.options.max_body_bytes)
    return app


def _swagger_assets() -> Path | None:
    """Swagger UI's files from the ``swagger-ui-bundle`` package, if it is installed."""
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    return Path(swagger_ui_bundle.swagger_ui_path)


def _docs_page() -> HTMLResponse:
    """The API's interactive documentation, from local assets only (works offline)."""
    if _swagger_assets() is None:
        return HTMLResponse(
            "<!doctype html><title>ragmem API</title><p>The API is described by "
            '<a href="/openapi.json">/openapi.json</a> (install swagger-ui-bundle for an interactive page).</p>'
        )
    from fastapi.openapi.docs import get_swagger_ui_html

    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="ragmem API",
        swagger_js_url="/docs-assets/swagger-ui-bundle.js",
        swagger_css_url="/docs-assets/swagger-ui.css",
        swagger_favicon_url="/docs-assets/favicon-32x32.png",
    )


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("ragmem")
    except Exception:  # not installed (a source checkout)
        return "0"
