"""``ragmem memory …``: look into, search, export and delete conversation memory.

Every command goes through the memory facade (``Components.memory``, a ``MemoryService``);
no screen code knows how memory is stored. Commands that only read the history never open
Chroma, and only ``search`` embeds anything, so only it loads the embedding model. Heavy
modules are imported inside the commands.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rag_memory.cli.options import (
    ChromaUrlOpt,
    EmbedderOpt,
    HomeOpt,
    JsonOpt,
    handles_errors,
    load_settings,
    print_json,
)

if TYPE_CHECKING:
    from rag_memory.config import Settings
    from rag_memory.memory.service import MemoryService

memory_app = typer.Typer(
    help="Inspect, search, export and delete conversation memory.",
    no_args_is_help=True,
)

UserOpt = Annotated[str | None, typer.Option("--user", "-u", help="Only this user's memory.", show_default=False)]
SessionOpt = Annotated[
    str | None, typer.Option("--session", "-s", help="Only this session (conversation).", show_default=False)
]


# -- building the stores -------------------------------------------------------------------
_settings = load_settings


def _memory(settings: Settings) -> MemoryService:
    """The memory facade; building it opens nothing and loads no model (both happen on use)."""
    from rag_memory.pipelines.components import Components

    return Components(settings).memory


# -- output --------------------------------------------------------------------------------
def _console(*, stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _turn_json(turn: Any) -> dict[str, Any]:
    return dataclasses.asdict(turn)


def _memory_json(memory: Any, *, scored: bool = False) -> dict[str, Any]:
    from rag_memory.memory.service import memory_json

    return memory_json(memory, scored=scored)


def _excerpt(text: str, width: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _scope(user: str | None, session: str | None) -> str:
    if user and session:
        return f"user {user!r}, session {session!r}"
    if user:
        return f"user {user!r}"
    if session:
        return f"session {session!r}"
    return "all users"


def _print_turns(console: Any, turns: list[Any]) -> None:
    from rich.table import Table

    table = Table("id", "when", "user", "session", "role", "content")
    for t in turns:
        table.add_row(str(t.id), t.created_at[:19], t.user_id, t.session_id, t.role, _excerpt(t.content))
    console.print(table)


def _print_memories(console: Any, memories: list[Any], *, scored: bool = False) -> None:
    from rich.table import Table

    columns = (["score"] if scored else []) + ["when", "user", "session", "kind", "text"]
    table = Table(*columns)
    for m in memories:
        row = [m.created_at[:19], m.user_id, m.session_id, m.kind, _excerpt(m.text)]
        table.add_row(*([f"{m.score:.3f}"] if scored else []), *row)
    console.print(table)


def _turn_count(memory: MemoryService, user: str | None, session: str | None) -> int:
    return sum(s.turns for s in memory.sessions(user) if session is None or s.session_id == session)


# -- commands ------------------------------------------------------------------------------
@memory_app.command("list")
@handles_errors
def list_memory(
    user: UserOpt = None,
    session: SessionOpt = None,
    memories: Annotated[
        bool, typer.Option("--memories", "-m", help="Also list long-term memories (opens the Chroma store).")
    ] = False,
    home: HomeOpt = None,
    chroma_url: ChromaUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List stored conversations, or with --session the turns of one conversation."""
    memory = _memory(_settings(home=home, chroma_url=chroma_url))
    data: dict[str, Any] = {"user": user, "session": session}
    if session is None:
        sessions = memory.sessions(user)
        data["sessions"] = [dataclasses.asdict(s) for s in sessions]
    else:
        owners = [user] if user is not None else memory.owners(session)
        turns = [t for owner in owners for t in memory.history(owner, session)]
        data["turns"] = [_turn_json(t) for t in turns]
    stored = memory.list(user, session) if memories else []
    if memories:
        data["memories"] = [_memory_json(m) for m in stored]
    if as_json:
        print_json(data)
        return

    from rich.table import Table

    console = _console()
    if session is None:
        if not sessions:
            _console(stderr=True).print(f"No conversations stored for {_scope(user, None)}.")
        else:
            table = Table("user", "session", "turns", "first", "last")
            for s in sessions:
                table.add_row(s.user_id, s.session_id, str(s.turns), s.first_at[:19], s.last_at[:19])
            console.print(table)
    elif not turns:
        _console(stderr=True).print(f"No turns stored for {_scope(user, session)}.")
    else:
        _print_turns(console, turns)
    if memories:
        if stored:
            _print_memories(console, stored)
        else:
            _console(stderr=True).print(f"No long-term memories for {_scope(user, session)}.")


@memory_app.command("search")
@handles_errors
def search_memory(
    query: Annotated[str, typer.Argument(help="Text to look for.")],
    user: UserOpt = None,
    session: SessionOpt = None,
    k: Annotated[int | None, typer.Option("-k", "--top-k", help="How many long-term memories.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Most history turns to show.")] = 20,
    home: HomeOpt = None,
    embedder: EmbedderOpt = None,
    chroma_url: ChromaUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Search the chat history (substring) and long-term memories (by meaning).

    Long-term memories are searched for --user, or the configured user when it is not
    given: memories are never searched across users.
    """
    if not query.strip():
        from rag_memory.errors import ConfigError

        raise ConfigError("the query is empty; give some text to search for")
    settings = _settings(home=home, embedder=embedder, chroma_url=chroma_url)
    memory = _memory(settings)
    turns = memory.find_turns(query, user_id=user, session_id=session, limit=limit)
    memory_user = user or settings.user
    recalled = memory.search(memory_user, query, k if k is not None else 10, session_id=session)
    if as_json:
        print_json(
            {
                "query": query,
                "user": user,
                "session": session,
                "memory_user": memory_user,
                "turns": [_turn_json(t) for t in turns],
                "memories": [_memory_json(m, scored=True) for m in recalled],
            }
        )
        return
    console = _console()
    if turns:
        console.print(f"[bold]History[/] ({len(turns)} turns containing {query!r})")
        _print_turns(console, turns)
    else:
        _console(stderr=True).print(f"No history turn contains {query!r} ({_scope(user, session)}).")
    if recalled:
        console.print(f"[bold]Long-term memories[/] of user {memory_user!r}")
        _print_memories(console, recalled, scored=True)
    else:
        _console(stderr=True).print(f"No long-term memories of user {memory_user!r} match.")


@memory_app.command("forget")
@handles_errors
def forget_memory(
    user: Annotated[str, typer.Option("--user", "-u", help="Whose memory to delete.", show_default=False)],
    session: SessionOpt = None,
    home: HomeOpt = None,
    chroma_url: ChromaUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a user's history turns and long-term memories (only one session's with --session)."""
    memory = _memory(_settings(home=home, chroma_url=chroma_url))
    turns = _turn_count(memory, user, session)
    memories = memory.forget(user, session_id=session)
    if as_json:
        print_json({"user": user, "session": session, "turns_deleted": turns, "memories_deleted": memories})
        return
    _console().print(f"Forgot {turns} turns and {memories} long-term memories of {_scope(user, session)}.")


@memory_app.command("export")
@handles_errors
def export_memory(
    user: UserOpt = None,
    session: SessionOpt = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the JSON to this file instead of stdout.")
    ] = None,
    home: HomeOpt = None,
    chroma_url: ChromaUrlOpt = None,
) -> None:
    """Export history turns, session summaries and long-term memories as JSON."""
    data = _memory(_settings(home=home, chroma_url=chroma_url)).export(user, session)
    turns, memories = data["turns"], data["memories"]
    if output is None:
        print_json(data)
        return
    from rag_memory.errors import MemoryStoreError

    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise MemoryStoreError(f"cannot write the export to {output}: {exc.strerror}. Choose another --output.") from exc
    _console(stderr=True).print(
        f"Exported {len(turns)} turns and {len(memories)} long-term memories of {_scope(user, session)} to {output}."
    )


@memory_app.command("clear")
@handles_errors
def clear_memory(
    user: UserOpt = None,
    session: SessionOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    home: HomeOpt = None,
    chroma_url: ChromaUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete all conversation memory: every user's history and long-term memories.

    With --user (and --session) only that user's (session's) memory goes, as with `forget`.
    """
    settings = _settings(home=home, chroma_url=chroma_url)
    if session is not None and user is None:
        from rag_memory.errors import ConfigError

        raise ConfigError("--session needs --user: sessions belong to a user")
    what = _scope(user, session) if user else f"all users (history {settings.history_path}," \
        f" long-term memory {settings.memory_collection!r} at {settings.store_location})"
    if not yes:
        typer.confirm(f"Delete the conversation history and long-term memories of {what}?", abort=True)
    memory = _memory(settings)
    turns = _turn_count(memory, user, session)
    memories = memory.clear() if user is None else memory.forget(user, session_id=session)
    if as_json:
        print_json({"user": user, "session": session, "turns_deleted": turns, "memories_deleted": memories})
        return
    _console().print(f"Deleted {turns} turns and {memories} long-term memories of {what}.")


@memory_app.command("entities")
@handles_errors
def entities_memory(
    user: Annotated[str | None, typer.Option("--user", "-u", help="Whose entities (default: the configured user).",
                                             show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", help="Most entities to show.")] = 50,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the people, places, things and dates a user's memories mention, and what they link to."""
    settings = _settings(home=home)
    who = user or settings.user
    found = _memory(settings).entities(who)
    shown = found[: max(limit, 0)]
    if as_json:
        print_json({"user": who, "entities": [dataclasses.asdict(e) for e in shown], "total": len(found)})
        return
    if not found:
        _console(stderr=True).print(f"No entities known for user {who!r}.")
        return
    from rich.table import Table

    table = Table("entity", "kind", "mentions", "first seen", "last seen", "sessions", "often with",
                  title=f"Entities of user {who!r} ({len(found)})")
    for e in shown:
        table.add_row(e.name, e.kind, str(e.mentions), e.first_seen[:10], e.last_seen[:10], str(len(e.sessions)),
                      _excerpt(", ".join(f"{name} ({n})" for name, n in e.related[:4]), 60))
    _console().print(table)
