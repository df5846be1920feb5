"""ragmem's chat history as a LangChain ``BaseChatMessageHistory``.

So a LangChain app can keep its conversations in the same SQLite file that ``ragmem ask``
and ``ragmem memory`` use, e.g. through ``RunnableWithMessageHistory``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import AIMessage, BaseMessage, ChatMessage, HumanMessage, SystemMessage

from rag_memory.errors import ConfigError
from rag_memory.memory.history import ROLES, ChatHistory, check_id

__all__ = ["SQLiteChatMessageHistory", "history_factory"]

_ROLE_OF = {HumanMessage: "user", AIMessage: "assistant", SystemMessage: "system"}
_MESSAGE_OF: dict[str, type[BaseMessage]] = {"user": HumanMessage, "assistant": AIMessage, "system": SystemMessage}
_CHAT_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "ai": "assistant", "system": "system"}


def _role(message: BaseMessage) -> str:
    for cls, role in _ROLE_OF.items():
        if isinstance(message, cls):
            return role
    if isinstance(message, ChatMessage) and message.role.lower() in _CHAT_ROLES:
        return _CHAT_ROLES[message.role.lower()]
    raise ConfigError(
        f"the chat history stores user, assistant and system messages ({', '.join(ROLES)}),"
        f" not a {type(message).__name__}; keep tool calls out of the stored conversation"
    )


class SQLiteChatMessageHistory(BaseChatMessageHistory):
    """One conversation (user and session) of a ragmem ``ChatHistory``, as LangChain messages.

    Args:
        history: The chat history, or the path of its SQLite file.
        user_id: Whose conversation it is.
        session_id: The conversation.

    Example:
        >>> chat = SQLiteChatMessageHistory(settings.history_path, "alice", "s1")
        >>> chat.add_messages([HumanMessage("hi"), AIMessage("hello")])
        >>> [m.type for m in chat.messages]
        ['human', 'ai']
    """

    def __init__(self, history: ChatHistory | Path | str, user_id: str, session_id: str) -> None:
        super().__init__()
        self.history = history if isinstance(history, ChatHistory) else ChatHistory(Path(history))
        self.user_id = check_id("user_id", user_id)
        self.session_id = check_id("session_id", session_id)

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The conversation's messages, oldest first."""
        return [_MESSAGE_OF[t.role](content=t.content) for t in self.history.turns(self.user_id, self.session_id)]

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append messages (human, AI, system) to the conversation."""
        rows = [(_role(m), m.text, m.id) for m in messages]  # check them all before writing any
        for role, text, message_id in rows:
            self.history.add(
                self.user_id, self.session_id, role, text,
                metadata={"langchain_id": message_id} if message_id else None,
            )

    def clear(self) -> None:
        """Delete the conversation's messages (and its summary)."""
        self.history.delete(self.user_id, self.session_id)


def history_factory(path: Path | str, user_id: str = "default") -> Callable[[str], SQLiteChatMessageHistory]:
    """A ``get_session_history`` for ``RunnableWithMessageHistory``: session id in, history out.

    Args:
        path: The SQLite file of the chat history (e.g. ``Settings.history_path``).
        user_id: The user every session belongs to.

    Example:
        >>> chain = RunnableWithMessageHistory(
        ...     runnable, history_factory(settings.history_path, "alice"),
        ...     input_messages_key="question", history_messages_key="history",
        ... )
        >>> chain.invoke({"question": "hi"}, config={"configurable": {"session_id": "s1"}})
    """
    check_id("user_id", user_id)
    history = ChatHistory(Path(path))

    def get_session_history(session_id: str) -> SQLiteChatMessageHistory:
        return SQLiteChatMessageHistory(history, user_id, session_id)

    return get_session_history
