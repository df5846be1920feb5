"""``ragmem serve``: the HTTP API (OpenAI-compatible and native) and the web page."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from rag_memory.cli.options import (
    ChromaUrlOpt,
    CollectionOpt,
    EmbedderOpt,
    GeneratorOpt,
    GeneratorUrlOpt,
    HomeOpt,
    MaxNewOpt,
    ModelOpt,
    TemperatureOpt,
    TopKOpt,
    UserOpt,
    handles_errors,
    load_settings,
    pipeline,
    stderr,
)
from rag_memory.errors import ConfigError


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@handles_errors
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on; anything but loopback needs API keys.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on.")] = 8000,
    api_key: Annotated[
        list[str] | None,
        typer.Option("--api-key", help="KEY=USER: accept KEY and act as USER (repeatable; also the keys file)."),
    ] = None,
    new_key: Annotated[
        str | None, typer.Option("--new-key", help="Make a key for this user, add it to the keys file, print it, exit.")
    ] = None,
    ingest_root: Annotated[
        list[Path] | None,
        typer.Option("--ingest-root", help="A folder the API may ingest from (repeatable; default: none)."),
    ] = None,
    parallel: Annotated[int, typer.Option("--parallel", help="Answers generated at the same time.")] = 1,
    queue_size: Annotated[int, typer.Option("--queue-size", help="Requests that may wait for the generator.")] = 64,
    request_timeout: Annotated[
        float, typer.Option("--request-timeout", help="Seconds an answer may take, queueing included.")
    ] = 300.0,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", help="Largest request body.")] = 1 << 20,
    max_question_chars: Annotated[
        int, typer.Option("--max-question-chars", help="Longest question or message.")
    ] = 8000,
    user: UserOpt = None,
    generator: GeneratorOpt = None,
    model: ModelOpt = None,
    generator_url: GeneratorUrlOpt = None,
    k: TopKOpt = None,
    max_new_tokens: MaxNewOpt = None,
    temperature: TemperatureOpt = None,
    home: HomeOpt = None,
    collection: CollectionOpt = None,
    embedder: EmbedderOpt = None,
    chroma_url: ChromaUrlOpt = None,
) -> None:
    """Serve the HTTP API and the web page: OpenAI clients use http://HOST:PORT/v1.

    API keys (each acting as one user) come from --api-key and from the keys file in the
    home (server-keys.toml; add one with --new-key USER). With keys, every request needs one;
    without keys the server listens on loopback only.
    """
    from rag_memory.server.auth import HOW_TO_MAKE_ONE, ApiKeys, keys_file
    from rag_memory.server.auth import new_key as make_key

    settings = load_settings(home=home)
    path = keys_file(settings.home)
    if new_key is not None:
        key = make_key(path, new_key)
        stderr().print(f"Added a key for user [bold]{new_key}[/] to {path}:")
        typer.echo(key)
        return
    keys = ApiKeys.from_file(path).merged(ApiKeys.from_flags(api_key or []))
    if not keys and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without API keys: anyone who can reach it could read and change"
            f" every user's memory. Add a key ({HOW_TO_MAKE_ONE}), or listen on 127.0.0.1"
        )
    try:
        import uvicorn

        from rag_memory.server import ServerOptions, create_app
    except ImportError as exc:
        raise ConfigError(
            f"the server needs the 'server' extra ({exc.name} is missing): pip install 'ragmem[server]'"
            " (./scripts/setup.sh installs it)"
        ) from exc
    options = ServerOptions(
        max_body_bytes=max_body_bytes, max_question_chars=max_question_chars, request_timeout=request_timeout,
        slots=parallel, max_waiting=queue_size, ingest_roots=[p.expanduser().resolve() for p in ingest_root or []],
    )
    for root in options.ingest_roots:
        if not root.is_dir():
            raise ConfigError(f"--ingest-root {root} is not a folder")
    rag = pipeline(
        home=home, collection=collection, embedder=embedder, chroma_url=chroma_url, user=user, generator=generator,
        model=model, generator_url=generator_url, k=k, max_new_tokens=max_new_tokens, temperature=temperature,
    )
    app = create_app(rag, keys=keys, options=options, warm_up=False)
    # Load the models before listening, so a model that cannot load is an `Error:` line here.
    app.state.ragmem.warm_up()
    shown = f"[{host}]" if ":" in host else host
    auth = f"{len(keys)} API keys for users {', '.join(keys.users)}" if keys else "no API keys (loopback only)"
    stderr().print(
        f"ragmem serving http://{shown}:{port}/ (page), /v1 (OpenAI-compatible), /docs (API); {auth}.",
        soft_wrap=True, highlight=False,
    )
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)
