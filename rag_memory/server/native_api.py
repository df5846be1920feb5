"""``/api``: ragmem's own JSON API: ask, search, status, ingest jobs, memory and sessions.

Every endpoint acts for one user: the API key's user, or (on a server without keys) the
``user`` the request names, else the configured user. A key never reaches another user's
memory or history.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from rag_memory.generation.base import GenerationConfig
from rag_memory.server.answering import AskRequest, answer_events
from rag_memory.server.app import ApiError, EventStream, ServerState, blocking, error_for
from rag_memory.server.openai_api import collect

router = APIRouter(prefix="/api", tags=["ragmem"])

UserQuery = Query(default=None, description="Whose memory (servers without API keys only; default: the configured user).")


def _state(request: Request) -> ServerState:
    return request.app.state.ragmem


def _memory(state: ServerState):
    return state.components.memory


# -- asking --------------------------------------------------------------------------------
class AskBody(BaseModel):
    question: str = Field(min_length=1, description="The question, in any language.")
    session_id: str | None = Field(default=None, description="The conversation to continue (default: a new one).")
    user: str | None = Field(default=None, description="Whose memory (servers without API keys only).")
    top_k: int | None = Field(default=None, ge=1, le=100)
    max_new_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    explain: bool = Field(default=False, description="Add candidates, scores, the gate and budgets.")
    stream: bool = Field(default=False, description="Send server-sent events: `piece` events, then `answer`.")


@router.post("/ask", response_model=None)
async def ask(body: AskBody, request: Request) -> dict[str, Any] | EventStream:
    """Answer a question from the knowledge base and the user's memory, with numbered sources,
    abstention, notes and (with ``explain``) how the answer was built.

    With ``stream``, the response is server-sent events: ``event: piece`` with
    ``{"text": ...}`` for each piece of the answer, then ``event: answer`` with the same object
    the non-streaming call returns, or ``event: error`` with an error body.
    """
    state = _state(request)
    user = state.acting_user(request, body.user)
    state.check_question(body.question)
    s = state.settings
    config = GenerationConfig(
        max_new_tokens=body.max_new_tokens or s.max_new_tokens,
        temperature=s.temperature if body.temperature is None else body.temperature,
    )
    state.queue.check_room()
    events = answer_events(
        state.pipeline, state.queue,
        AskRequest(question=body.question, user_id=user, session_id=body.session_id, top_k=body.top_k,
                   config=config, explain=body.explain),
        timeout=state.options.request_timeout,
    )
    if body.stream:
        return EventStream(_native_sse(events))
    answer = await collect(request, events)
    return answer.as_json()


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _native_sse(events):
    yield ": ragmem\n\n"  # starts the response at once, so a client that leaves is noticed
    try:
        async for kind, value in events:
            if kind == "piece":
                yield _event("piece", {"text": value})
            else:
                yield _event("answer", value.as_json())
    except Exception as exc:
        _, body, _ = error_for(exc)
        yield _event("error", body)


@router.get("/search")
async def search(
    request: Request,
    q: str = Query(min_length=1, description="What to look for."),
    k: int | None = Query(default=None, ge=1, le=100),
    source: str | None = Query(default=None, description="Only sources matching this glob."),
) -> dict[str, Any]:
    """Rank knowledge-base chunks for ``q`` (hybrid BM25 + dense, as ``ragmem search``)."""
    state = _state(request)
    state.caller(request)
    state.check_question(q, "the query")
    hits = await blocking(state, state.components.retriever.retrieve, q, top_k=k, source_glob=source)
    return {
        "query": q,
        "hits": [
            {"score": round(h.score, 6), "source": h.source, "page": h.page, "chunk_id": h.chunk_id,
             "title": h.title, "text": h.text}
            for h in hits
        ],
    }


# -- status and ingest -----------------------------------------------------------------------
@router.get("/status")
async def status(request: Request) -> dict[str, Any]:
    """The knowledge base, the generator, the generator queue (length, waits) and ingest jobs."""
    state = _state(request)
    user = state.acting_user(request)
    parts = state.components

    def knowledge() -> dict[str, Any]:
        data = parts.status().as_json()
        data["keyword_index_chunks"] = parts.lexical.count() if state.settings.lexical_path.exists() else 0
        return data

    selection = await blocking(state, lambda: parts.generation)  # loads the model on first use
    return {
        "user": user,
        "auth": bool(state.keys),
        "knowledge_base": await blocking(state, knowledge),
        "generator": {
            "backend": selection.generator.backend,
            "model": selection.generator.model_id,
            "extractive": selection.extractive,
            "notes": selection.notes,
        },
        "queue": state.queue.status(),
        "jobs": state.jobs.status(),
        "limits": {
            "max_body_bytes": state.options.max_body_bytes,
            "max_question_chars": state.options.max_question_chars,
            "request_timeout": state.options.request_timeout,
        },
        "ingest_roots": [str(p) for p in state.options.ingest_roots],
    }


class IngestBody(BaseModel):
    paths: list[str] = Field(min_length=1, description="Files and folders on the server, below an ingest root.")
    include: list[str] = Field(default_factory=list, description="Only files matching these globs.")
    exclude: list[str] = Field(default_factory=list, description="Skip files and folders matching these globs.")
    dry_run: bool = False
    rebuild: bool = False


@router.post("/ingest", status_code=202)
async def ingest(body: IngestBody, request: Request) -> dict[str, Any]:
    """Start an ingest job (jobs run one at a time, beside answers); poll ``/api/jobs/{id}``."""
    state = _state(request)
    state.caller(request)
    roots = [p.resolve() for p in state.options.ingest_roots]
    if not roots:
        raise ApiError(403, "permission_error",
                       "this server does not ingest through the API; start it with --ingest-root DIR")
    resolved = []
    for raw in body.paths:
        path = Path(raw).expanduser()
        path = (path if path.is_absolute() else roots[0] / path).resolve()
        if not any(path == root or path.is_relative_to(root) for root in roots):
            allowed = ", ".join(str(r) for r in roots)
            raise ApiError(403, "permission_error",
                           f"{raw} is outside the folders this server may ingest ({allowed}); see --ingest-root")
        if not path.exists():
            raise ApiError(400, "invalid_request_error", f"{raw} does not exist on the server ({path})")
        resolved.append(str(path))
    job = state.jobs.submit(resolved, {"include": body.include, "exclude": body.exclude,
                                       "dry_run": body.dry_run, "rebuild": body.rebuild})
    return job.as_json()


@router.get("/jobs")
async def jobs(request: Request) -> dict[str, Any]:
    """Ingest jobs, newest first."""
    state = _state(request)
    state.caller(request)
    return {"jobs": [j.as_json() for j in state.jobs.list()]}


@router.get("/jobs/{job_id}")
async def job(job_id: str, request: Request) -> dict[str, Any]:
    """One ingest job: its state, progress (files, chunks) and, when done, its report."""
    state = _state(request)
    state.caller(request)
    found = state.jobs.get(job_id)
    if found is None:
        raise ApiError(404, "not_found_error", f"there is no ingest job {job_id!r}; GET /api/jobs lists them")
    return found.as_json()


# -- memory and sessions ---------------------------------------------------------------------
def _memory_json(memory: Any, *, scored: bool = False) -> dict[str, Any]:
    data = {"id": memory.id, "session_id": memory.session_id, "kind": memory.kind, "text": memory.text,
            "created_at": memory.created_at}
    if scored:
        data["score"] = round(memory.score, 6)
    return data


@router.get("/memory")
async def list_memory(request: Request, session_id: str | None = None, user: str | None = UserQuery) -> dict[str, Any]:
    """What ragmem remembers about the user (one session's, with ``session_id``), newest first."""
    state = _state(request)
    who = state.acting_user(request, user)
    memories = await blocking(state, _memory(state).list, who, session_id)
    return {"user": who, "session_id": session_id, "memories": [_memory_json(m) for m in memories]}


@router.get("/memory/search")
async def search_memory(
    request: Request, q: str = Query(min_length=1), k: int = Query(default=10, ge=1, le=100),
    user: str | None = UserQuery,
) -> dict[str, Any]:
    """The user's memories ranked by relevance to ``q``."""
    state = _state(request)
    who = state.acting_user(request, user)
    state.check_question(q, "the query")
    memories = await blocking(state, _memory(state).search, who, q, k)
    return {"user": who, "query": q, "memories": [_memory_json(m, scored=True) for m in memories]}


@router.delete("/memory/{memory_id}")
async def forget_memory(memory_id: str, request: Request, user: str | None = UserQuery) -> dict[str, Any]:
    """Forget one memory of the user's."""
    state = _state(request)
    who = state.acting_user(request, user)
    deleted = await blocking(state, _memory(state).forget, who, memory_id=memory_id)
    if not deleted:
        raise ApiError(404, "not_found_error", f"user {who!r} has no memory {memory_id!r}")
    return {"user": who, "memory_id": memory_id, "memories_deleted": deleted}


@router.delete("/memory")
async def forget_all(request: Request, session_id: str | None = None, user: str | None = UserQuery) -> dict[str, Any]:
    """Forget the user's memories and history (one session's, with ``session_id``)."""
    state = _state(request)
    who = state.acting_user(request, user)
    deleted = await blocking(state, _memory(state).forget, who, session_id=session_id)
    return {"user": who, "session_id": session_id, "memories_deleted": deleted}


@router.get("/memory/export")
async def export_memory(request: Request, session_id: str | None = None, user: str | None = UserQuery) -> dict[str, Any]:
    """The user's turns, summaries, memories and entities as one JSON document."""
    state = _state(request)
    who = state.acting_user(request, user)
    return await blocking(state, _memory(state).export, who, session_id)


@router.get("/memory/entities")
async def entities(request: Request, user: str | None = UserQuery) -> dict[str, Any]:
    """The people, places, things and dates the user's memories mention."""
    state = _state(request)
    who = state.acting_user(request, user)
    found = await blocking(state, _memory(state).entities, who)
    return {"user": who, "entities": [dataclasses.asdict(e) for e in found]}


@router.get("/sessions")
async def sessions(request: Request, user: str | None = UserQuery) -> dict[str, Any]:
    """The user's conversations, most recently active first."""
    state = _state(request)
    who = state.acting_user(request, user)
    found = await blocking(state, _memory(state).sessions, who)
    return {"user": who, "sessions": [dataclasses.asdict(s) for s in found]}


@router.get("/sessions/{session_id}")
async def session_history(session_id: str, request: Request, user: str | None = UserQuery) -> dict[str, Any]:
    """One conversation's turns, in order."""
    state = _state(request)
    who = state.acting_user(request, user)
    turns = await blocking(state, _memory(state).history, who, session_id)
    if not turns:
        raise ApiError(404, "not_found_error", f"user {who!r} has no session {session_id!r}")
    return {"user": who, "session_id": session_id,
            "turns": [{"id": t.id, "role": t.role, "content": t.content, "created_at": t.created_at} for t in turns]}


@router.delete("/sessions/{session_id}")
async def forget_session(session_id: str, request: Request, user: str | None = UserQuery) -> dict[str, Any]:
    """Forget one conversation: its turns and the memories made from it."""
    state = _state(request)
    who = state.acting_user(request, user)
    deleted = await blocking(state, _memory(state).forget, who, session_id=session_id)
    return {"user": who, "session_id": session_id, "memories_deleted": deleted}
