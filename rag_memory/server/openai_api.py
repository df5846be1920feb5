"""``/v1``: the OpenAI chat completions API, so any OpenAI client can talk to ragmem.

The last user message is the question; the earlier user and assistant messages are the
conversation so far (they are what the prompt's recent turns are built from); system
messages are ignored, because ragmem writes its own instructions. ``user`` (or the API key's
user) selects whose long-term memory is used. The session the turn is stored in is
``session_id`` when the request names one (``extra_body={"session_id": ...}`` in the openai
client, or an ``X-Ragmem-Session`` header), else one derived from the user and the
conversation's first message, so every request of one conversation lands in one session.

Responses carry ragmem's sources, citations and notes in an extra ``ragmem`` field that
OpenAI clients ignore.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from rag_memory.generation.base import GenerationConfig
from rag_memory.schema import Answer, Turn
from rag_memory.server.answering import AskRequest, answer_events
from rag_memory.server.app import ApiError, EventStream, ServerState, error_for

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])
MODEL_ID = "ragmem"


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(BaseModel):
    """The fields of OpenAI's request that ragmem uses; others are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = MODEL_ID
    messages: list[ChatMessageIn] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int | None = Field(default=None, ge=1)
    user: str | None = None
    session_id: str | None = Field(default=None, description="ragmem: the session to store the turn in.")
    top_k: int | None = Field(default=None, ge=1, le=100, description="ragmem: knowledge chunks to retrieve.")


def _state(request: Request) -> ServerState:
    return request.app.state.ragmem


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    """The one model this server offers: ``ragmem`` (the configured generator behind RAG)."""
    state = _state(request)
    state.caller(request)
    return {
        "object": "list",
        "data": [{"id": MODEL_ID, "object": "model", "created": int(state.started_at), "owned_by": "ragmem"}],
    }


def _text(message: ChatMessageIn) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    parts = []
    for part in message.content:
        if part.get("type") != "text":
            raise ApiError(
                400, "invalid_request_error",
                f"message content of type {part.get('type')!r} is not supported; ragmem reads text parts only",
            )
        parts.append(str(part.get("text", "")))
    return "".join(parts)


def ask_request(state: ServerState, request: Request, body: ChatCompletionRequest) -> AskRequest:
    """The pipeline request an OpenAI chat request stands for."""
    user = state.acting_user(request, body.user)
    if body.n not in (None, 1):
        raise ApiError(400, "invalid_request_error", f"n must be 1: ragmem gives one answer per request, got {body.n}")
    chat = [(m.role, _text(m)) for m in body.messages if m.role in ("user", "assistant")]
    if not chat or chat[-1][0] != "user":
        raise ApiError(
            400, "invalid_request_error",
            "the last message must be the user's question (role 'user'); got "
            + (f"role {body.messages[-1].role!r}" if body.messages else "no messages"),
        )
    question = chat[-1][1]
    for _, text in chat:
        state.check_question(text, "a message")
    session = body.session_id or request.headers.get("x-ragmem-session")
    if session is not None and not session.strip():
        raise ApiError(400, "invalid_request_error", "session_id must not be empty")
    if session is None:
        digest = hashlib.sha256(f"{user}\0{chat[0][1]}".encode()).hexdigest()[:16]
        session = f"oa-{digest}"
    history = [Turn(role, text, user, session, "") for role, text in chat[:-1] if text.strip()]
    settings = state.settings
    config = GenerationConfig(
        max_new_tokens=body.max_completion_tokens or body.max_tokens or settings.max_new_tokens,
        temperature=settings.temperature if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
    )
    return AskRequest(question=question, user_id=user, session_id=session, top_k=body.top_k, config=config,
                      history=history)


def ragmem_extra(answer: Answer) -> dict[str, Any]:
    return {
        "sources": [s.as_json() for s in answer.sources],
        "cited": answer.cited,
        "abstained": answer.abstained,
        "notes": answer.notes,
        "session_id": answer.session_id,
        "user": answer.user_id,
        "generator": answer.generator,
    }


def _usage(answer: Answer) -> dict[str, int]:
    from rag_memory.generation.openai_compatible import approximate_tokens

    prompt = answer.tokens.get("prompt") or approximate_tokens(answer.question)
    completion = answer.tokens.get("completion") or approximate_tokens(answer.answer)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


@router.post("/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> JSONResponse | EventStream:
    """Answer the conversation's last user message with RAG; ``stream: true`` sends server-sent
    events in OpenAI's chunk format, ending with ``data: [DONE]``."""
    state = _state(request)
    ask = ask_request(state, request, body)
    state.queue.check_room()
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    events = answer_events(state.pipeline, state.queue, ask, timeout=state.options.request_timeout)
    if body.stream:
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        return EventStream(_sse(events, completion_id, created, body.model, include_usage))
    answer = await collect(request, events)
    return JSONResponse({
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": body.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer.answer},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": _usage(answer),
        "ragmem": ragmem_extra(answer),
    })


async def collect(request: Request, events: AsyncIterator[tuple[str, Any]]) -> Answer:
    """The finished answer; if the client disconnects first, its generation is stopped."""

    async def run() -> Answer:
        async for kind, value in events:
            if kind == "answer":
                return value
        raise RuntimeError("the answer stream ended without an answer")

    task = asyncio.ensure_future(run())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.5)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                raise ApiError(499, "client_closed_request", "the client closed the request")
    finally:
        if not task.done():
            task.cancel()
        await _close(events)


async def _close(events: Any) -> None:
    try:
        await events.aclose()
    except RuntimeError:  # the generator is running in a task being cancelled: it closes itself
        pass


def _sse_line(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


async def _sse(
    events: AsyncIterator[tuple[str, Any]], completion_id: str, created: int, model: str, include_usage: bool
) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            out["usage"] = None
        out.update(extra)
        return out

    # The role goes out at once: the client sees the response start while the request waits.
    yield _sse_line(chunk({"role": "assistant", "content": ""}))
    try:
        async for kind, value in events:
            if kind == "piece":
                yield _sse_line(chunk({"content": value}))
            else:
                answer: Answer = value
                yield _sse_line(chunk({}, "stop", ragmem=ragmem_extra(answer)))
                if include_usage:
                    yield _sse_line({
                        "id": completion_id, "object": "chat.completion.chunk", "created": created,
                        "model": model, "choices": [], "usage": _usage(answer),
                    })
    except Exception as exc:  # the status line is sent; the error goes in the stream, as OpenAI does
        _, body, _ = error_for(exc)
        yield _sse_line(body)
    finally:
        await _close(events)
    yield "data: [DONE]\n\n"
