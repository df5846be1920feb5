"""Running summaries: with a (fake) LLM, and the extractive fallback."""

from __future__ import annotations

import pytest

from rag_memory.errors import ConfigError, GenerationError
from rag_memory.memory.summarise import summarise_turns
from rag_memory.schema import Turn


def turns(*pairs: tuple[str, str]) -> list[Turn]:
    return [
        Turn(role=role, content=content, user_id="u", session_id="s", created_at="2024-01-01T00:00:00+00:00", id=i)
        for i, (role, content) in enumerate(pairs)
    ]


EN = turns(
    ("user", "My project is about solar panels. How should I chunk the datasheets?"),
    ("assistant", "Use about 200 tokens per chunk."),
    ("user", "And the scanned ones?"),
    ("assistant", "Run OCR first."),
)


class FakeLLM:
    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.reply


def test_the_llm_gets_the_previous_summary_the_turns_and_the_limits():
    llm = FakeLLM("Summary: The user works on solar panels; chunking and OCR were discussed.")
    out = summarise_turns(EN, previous="The user greeted the assistant.", generate=llm, max_chars=300)
    assert out == "The user works on solar panels; chunking and OCR were discussed."
    [prompt] = llm.prompts
    assert "Summary so far: The user greeted the assistant." in prompt
    assert "User: My project is about solar panels. How should I chunk the datasheets?" in prompt
    assert "Assistant: Run OCR first." in prompt
    assert "at most 300 characters" in prompt
    assert "language of the conversation" in prompt


def test_a_chinese_conversation_asks_for_a_chinese_summary():
    llm = FakeLLM("用户的项目是关于太阳能的，讨论了分块。")
    zh = turns(("user", "我的项目是关于太阳能的，应该怎么分块？"), ("assistant", "每块大约两百个词元。"))
    assert summarise_turns(zh, previous=None, generate=llm) == "用户的项目是关于太阳能的，讨论了分块。"
    assert "Chinese" in llm.prompts[0] and "用中文" in llm.prompts[0]
    assert "Summary so far: (none)" in llm.prompts[0]


def test_llm_output_is_clipped_to_max_chars():
    out = summarise_turns(EN, previous=None, generate=FakeLLM("x" * 1000), max_chars=100)
    assert out is not None and len(out) == 100 and out.endswith("…")


def test_empty_or_failing_llm_output_falls_back_to_extractive():
    def broken(prompt: str) -> str:
        raise GenerationError("out of memory")

    for generate in (FakeLLM("   "), broken):
        out = summarise_turns(EN, previous=None, generate=generate)
        assert out is not None and out.startswith("The user asked: My project is about solar panels.")


def test_extractive_summary_lists_the_user_questions_after_the_previous_summary():
    out = summarise_turns(EN, previous="Earlier: greetings.", generate=None)
    assert out == (
        "Earlier: greetings.\nThe user asked: My project is about solar panels. How should I chunk the"
        " datasheets?; And the scanned ones?"
    )


def test_extractive_summary_keeps_the_newest_material_within_max_chars():
    many = turns(*[("user", f"question {i} about topic {i}") for i in range(50)])
    out = summarise_turns(many, previous=None, generate=None, max_chars=120)
    assert out is not None and len(out) <= 120 and "question 49" in out and "question 0 " not in out


def test_chinese_extractive_summary():
    zh = turns(("user", "怎么分块？"), ("assistant", "按词元。"), ("user", "那PDF呢？"))
    assert summarise_turns(zh, previous=None, generate=None) == "用户问过：怎么分块？；那PDF呢？"


def test_nothing_to_summarise():
    assert summarise_turns([], previous=None, generate=None) is None
    assert summarise_turns([], previous="kept", generate=None) == "kept"
    only_answers = turns(("assistant", "Hello!"))
    assert summarise_turns(only_answers, previous=None, generate=None) is None


def test_a_tiny_max_chars_is_refused():
    with pytest.raises(ConfigError, match="max_chars"):
        summarise_turns(EN, previous=None, generate=None, max_chars=3)
