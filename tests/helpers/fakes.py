"""Fast deterministic fakes for stages whose model is beside the point."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from rag_memory.generation.base import ChatMessage, GenerationConfig, Generator, Usage
from rag_memory.knowledge_base.embedders import HashingEmbedder

_TOKENS = HashingEmbedder.tokens


class RecordingGenerator(Generator):
    """Records every prompt it is given and answers with a fixed text, word by word.

    Tokens are words and CJK characters, plus one per message for the template.
    """

    backend = "fake"

    def __init__(self, answer: str = "The answer [1].", *, context_length: int = 2048) -> None:
        self.answer = answer
        self._context_length = context_length
        self.calls: list[list[ChatMessage]] = []
        self.configs: list[GenerationConfig | None] = []
        self.model_id = "recording-fake"

    @property
    def context_length(self) -> int:
        return self._context_length

    def count_tokens(self, text: str) -> int:
        return len(_TOKENS(text)) + text.count("<") + text.count("\n")

    def count_message_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return sum(self.count_tokens(m.content) + 4 for m in messages) + 2

    def stream(self, messages: Sequence[ChatMessage], config: GenerationConfig | None = None) -> Iterator[str]:
        self.calls.append(list(messages))
        self.configs.append(config)
        start = time.perf_counter()
        pieces = self.answer.split(" ")
        for i, word in enumerate(pieces):
            yield word if i == 0 else " " + word
        self.last_usage = Usage(self.count_message_tokens(messages), len(pieces), 0.0, time.perf_counter() - start)

    @property
    def prompt(self) -> str:
        """The user message of the last call."""
        return self.calls[-1][-1].content
