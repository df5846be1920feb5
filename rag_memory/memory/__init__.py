"""Conversation memory: chat history per session, the recent window, long-term recall per user."""

from rag_memory.memory.condense import condense_question, is_follow_up
from rag_memory.memory.facts import extract_facts
from rag_memory.memory.history import ChatHistory, SessionInfo
from rag_memory.memory.long_term import LongTermMemory
from rag_memory.memory.summarise import summarise_turns
from rag_memory.memory.window import recent_window

__all__ = [
    "ChatHistory",
    "LongTermMemory",
    "SessionInfo",
    "condense_question",
    "extract_facts",
    "is_follow_up",
    "recent_window",
    "summarise_turns",
]
