from __future__ import annotations

import pytest

from rag_memory.errors import ConfigError
from rag_memory.generation import ChatMessage, GenerationConfig, Generator


class EchoGenerator(Generator):
    """Streams the last message back word by word; one token per character."""

    backend = "echo"

    def stream(self, messages, config=None):
        words = messages[-1].content.split(" ")
        return iter([w + " " for w in words[:-1]] + words[-1:])

    def count_tokens(self, text: str) -> int:
        return len(text)


def test_generate_joins_the_stream_by_default():
    assert EchoGenerator().generate([ChatMessage("user", "say it back")]) == "say it back"


def test_default_prompt_is_a_plain_transcript_that_opens_the_answer():
    gen = EchoGenerator()
    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")]

    assert gen.render_prompt(messages) == "System: Be brief.\nUser: Hi\nAssistant:"
    assert gen.count_message_tokens(messages) == len("System: Be brief.\nUser: Hi\nAssistant:")


def test_generation_config_defaults_to_greedy():
    config = GenerationConfig()
    assert (config.max_new_tokens, config.temperature, config.top_p, config.greedy) == (512, 0.0, 1.0, True)
    assert not GenerationConfig(temperature=0.5).greedy


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"max_new_tokens": 0}, "0"),
        ({"max_new_tokens": 2.5}, "2.5"),
        ({"max_new_tokens": True}, "True"),
        ({"temperature": -0.1}, "-0.1"),
        ({"temperature": float("nan")}, "nan"),
        ({"top_p": 0}, "0"),
        ({"top_p": 1.5}, "1.5"),
    ],
)
def test_bad_generation_settings_name_the_value(kwargs, named):
    with pytest.raises(ConfigError, match=f"{next(iter(kwargs))} must .*{named}"):
        GenerationConfig(**kwargs)


def test_messages_are_checked():
    with pytest.raises(ConfigError, match="'tool'"):
        ChatMessage("tool", "x")
    with pytest.raises(ConfigError, match="at least one"):
        EchoGenerator().render_prompt([])
