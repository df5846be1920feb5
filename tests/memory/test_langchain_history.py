"""The chat history behind LangChain's RunnableWithMessageHistory."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, ChatMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory

from rag_memory.errors import ConfigError
from rag_memory.memory.history import ChatHistory
from rag_memory.memory.langchain_history import SQLiteChatMessageHistory, history_factory


def test_runnable_with_message_history_stores_each_exchange(settings):
    seen_history: list[int] = []

    def respond(inputs: dict) -> AIMessage:
        seen_history.append(len(inputs["history"]))
        return AIMessage(content=f"echo: {inputs['question']}")

    chain = RunnableWithMessageHistory(
        RunnableLambda(respond),
        history_factory(settings.history_path, user_id="alice"),
        input_messages_key="question",
        history_messages_key="history",
    )
    config = {"configurable": {"session_id": "s1"}}
    assert chain.invoke({"question": "hello"}, config=config).content == "echo: hello"
    assert chain.invoke({"question": "你好"}, config=config).content == "echo: 你好"
    chain.invoke({"question": "other session"}, config={"configurable": {"session_id": "s2"}})

    assert seen_history == [0, 2, 0]
    stored = ChatHistory(settings.history_path)
    assert [(t.role, t.content) for t in stored.turns("alice", "s1")] == [
        ("user", "hello"), ("assistant", "echo: hello"), ("user", "你好"), ("assistant", "echo: 你好"),
    ]
    assert [t.content for t in stored.turns("alice", "s2")] == ["other session", "echo: other session"]
    assert stored.users() == ["alice"]


def test_messages_round_trip_as_langchain_types(settings):
    chat = SQLiteChatMessageHistory(settings.history_path, "alice", "s1")
    chat.add_messages([SystemMessage("Be brief."), HumanMessage("hi"), AIMessage("hello"), ChatMessage(role="user", content="again")])
    assert [(type(m), m.content) for m in chat.messages] == [
        (SystemMessage, "Be brief."), (HumanMessage, "hi"), (AIMessage, "hello"), (HumanMessage, "again"),
    ]
    other = SQLiteChatMessageHistory(ChatHistory(settings.history_path), "bob", "s1")
    assert other.messages == []
    chat.clear()
    assert chat.messages == []


def test_multipart_content_is_stored_as_its_text(settings):
    chat = SQLiteChatMessageHistory(settings.history_path, "alice", "s1")
    chat.add_messages([HumanMessage(content=[{"type": "text", "text": "part one "}, "part two"])])
    assert chat.messages[0].content == "part one part two"


def test_tool_messages_are_refused_before_anything_is_written(settings):
    chat = SQLiteChatMessageHistory(settings.history_path, "alice", "s1")
    with pytest.raises(ConfigError, match="ToolMessage"):
        chat.add_messages([HumanMessage("hi"), ToolMessage("42", tool_call_id="t1")])
    assert chat.messages == []


def test_empty_ids_are_refused(settings):
    with pytest.raises(ConfigError, match="session_id"):
        SQLiteChatMessageHistory(settings.history_path, "alice", "")
    with pytest.raises(ConfigError, match="user_id"):
        history_factory(settings.history_path, user_id=" ")
