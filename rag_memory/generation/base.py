"""The generator interface: chat messages in, text (or a stream of text pieces) out.

A backend implements ``stream`` and ``count_tokens`` and says how long its context window
is; ``generate`` joins the stream unless the backend has a better way. Every call records a
``Usage`` in ``last_usage``, so callers can report speed and token counts.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from rag_memory.errors import ConfigError

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class ChatMessage:
    """One message of a chat.

    Attributes:
        role: ``system``, ``user`` or ``assistant``.
        content: The message text.
    """

    role: str
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConfigError(f"chat message role must be one of {', '.join(ROLES)}, got {self.role!r}")
        if not isinstance(self.content, str):
            raise ConfigError(f"chat message content must be text, got {type(self.content).__name__}")


@dataclass(frozen=True)
class GenerationConfig:
    """How to decode one answer.

    Attributes:
        max_new_tokens: The most tokens the answer may have.
        temperature: 0 decodes greedily (the same prompt gives the same answer); above 0 samples.
        top_p: Nucleus sampling: sample from the smallest set of tokens whose probabilities add
            up to ``top_p``; 1 keeps every token. Used only when ``temperature`` is above 0.
    """

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int):
            raise ConfigError(f"max_new_tokens must be a whole number, got {self.max_new_tokens!r}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if not _is_number(self.temperature) or not math.isfinite(self.temperature) or self.temperature < 0:
            raise ConfigError(f"temperature must be 0 (greedy) or more, got {self.temperature!r}")
        if not _is_number(self.top_p) or not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be above 0 and at most 1, got {self.top_p!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class Usage:
    """What one call cost.

    Attributes:
        prompt_tokens: Tokens of the rendered prompt.
        completion_tokens: Tokens generated.
        seconds_to_first_token: From the call to the first generated token; ``None`` when
            nothing was generated.
        seconds_total: From the call to the end of the answer.
    """

    prompt_tokens: int
    completion_tokens: int
    seconds_to_first_token: float | None
    seconds_total: float


class Generator:
    """Base class of the generators.

    A subclass implements ``stream``, ``count_tokens`` and ``context_length``; it may override
    ``generate`` (the default joins ``stream``) and ``render_prompt``.

    Attributes:
        backend: Which kind of generator this is (``transformers``, ``openai``).
        model_id: The model it runs, as configured.
        last_usage: Token counts and timings of the last call finished on the calling thread,
            ``None`` before one.
    """

    backend: str = "generator"
    model_id: str = "generator"

    @property
    def last_usage(self) -> Usage | None:
        """The usage of the last call finished on this thread (calls on other threads, as in a
        LangChain ``batch``, keep their own)."""
        local = self.__dict__.get("_usage_local")
        return getattr(local, "usage", None) if local is not None else None

    @last_usage.setter
    def last_usage(self, usage: Usage | None) -> None:
        local = self.__dict__.setdefault("_usage_local", threading.local())
        local.usage = usage

    def warm_up(self) -> None:
        """Load the model or open the connection; idempotent."""

    @property
    def context_length(self) -> int:
        """Tokens the model reads and writes in one call: the prompt plus the answer."""
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the model's tokenizer (or the backend's stated approximation)."""
        raise NotImplementedError

    def render_prompt(self, messages: Sequence[ChatMessage]) -> str:
        """The prompt text the model reads for ``messages``, ending where the answer starts.

        The default is a plain transcript; backends with a chat template use it instead.
        """
        messages = check_messages(messages)
        lines = [f"{m.role.capitalize()}: {m.content}" for m in messages]
        return "\n".join(lines) + "\nAssistant:"

    def count_message_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Tokens of the rendered prompt for ``messages`` (what counts against the context)."""
        return self.count_tokens(self.render_prompt(messages))

    def stream(
        self, messages: Sequence[ChatMessage], config: GenerationConfig | None = None
    ) -> Iterator[str]:
        """Generate an answer to ``messages`` and yield it piece by piece as it is produced.

        Args:
            messages: The chat so far; the answer continues it as the assistant.
            config: Decoding settings; ``None`` means ``GenerationConfig()`` (greedy, 512 tokens).

        Yields:
            Non-empty pieces of the answer; joined, they are the whole answer.

        Raises:
            GenerationError: The model cannot be loaded or reached, or the prompt does not fit.
        """
        raise NotImplementedError

    def generate(self, messages: Sequence[ChatMessage], config: GenerationConfig | None = None) -> str:
        """Generate the whole answer to ``messages``; see ``stream`` for the arguments."""
        return "".join(self.stream(messages, config))


def check_messages(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """The messages as a list, after checking there is at least one and each is a ChatMessage."""
    messages = list(messages)
    if not messages:
        raise ConfigError("a generator needs at least one chat message, got none")
    for message in messages:
        if not isinstance(message, ChatMessage):
            raise ConfigError(f"chat messages must be ChatMessage objects, got {type(message).__name__}")
    return messages


__all__ = ["ROLES", "ChatMessage", "GenerationConfig", "Generator", "Usage"]
