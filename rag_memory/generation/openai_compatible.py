"""A generator behind an OpenAI-compatible chat completions server (vLLM, llama.cpp, TGI ...).

For deployments beyond one machine: the model runs in an inference server named in
configuration, and ragmem speaks ``POST {base_url}/chat/completions`` to it through the official
``openai`` client (server-sent events when streaming, with ``stream_options.include_usage`` so
vLLM and others report token counts). The client is imported on the first request.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from rag_memory.errors import ConfigError, GenerationError
from rag_memory.generation.base import ChatMessage, GenerationConfig, Generator, Usage, check_messages

log = logging.getLogger(__name__)

# The OpenAI chat format wraps each message in a few tokens of its own, and primes the reply.
_TOKENS_PER_MESSAGE = 4
_TOKENS_FOR_REPLY = 3
_CHARS_PER_TOKEN = 4


def approximate_tokens(text: str) -> int:
    """An estimate of ``text``'s token count without the server's tokenizer.

    Each CJK character (Han, kana, Hangul, fullwidth forms) counts as one token; the other
    characters count as one token per 4, rounded up, which is close for English with BPE
    vocabularies. It overestimates a little for Chinese on models with large vocabularies.
    """
    wide = sum(1 for ch in text if _is_wide(ord(ch)))
    rest = len(text) - wide
    return wide + math.ceil(rest / _CHARS_PER_TOKEN)


def _is_wide(cp: int) -> bool:
    return (
        0x3040 <= cp <= 0x30FF  # Hiragana, Katakana
        or 0x3400 <= cp <= 0x4DBF  # CJK Extension A
        or 0x4E00 <= cp <= 0x9FFF  # CJK Unified Ideographs
        or 0xAC00 <= cp <= 0xD7AF  # Hangul syllables
        or 0xF900 <= cp <= 0xFAFF  # CJK Compatibility Ideographs
        or 0xFF00 <= cp <= 0xFFEF  # fullwidth forms and punctuation
        or 0x3000 <= cp <= 0x303F  # CJK punctuation
        or 0x20000 <= cp <= 0x2FA1F  # supplementary ideographs
    )


class OpenAICompatibleGenerator(Generator):
    """Generate through an OpenAI-compatible ``/chat/completions`` endpoint.

    The server holds the tokenizer, so token counts here are estimates: ``count_tokens`` uses
    ``approximate_tokens`` (one token per CJK character, one per 4 other characters) and
    ``count_message_tokens`` adds 4 tokens per message and 3 for the reply, as the OpenAI chat
    format does. ``last_usage`` takes the server's own counts when it reports them.

    Args:
        base_url: The API root, such as ``http://localhost:8000/v1``.
        model: The model name the server serves.
        api_key: Sent as ``Authorization: Bearer``; most local servers need none.
        timeout: Seconds to wait to connect and, while streaming, between two pieces.
        context_length: The served model's window (``--max-model-len`` on vLLM).

    Example:
        >>> gen = OpenAICompatibleGenerator("http://localhost:8000/v1", "Qwen/Qwen2.5-7B-Instruct")
        >>> gen.generate([ChatMessage("user", "Say hello")])
    """

    backend = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        context_length: int = 8192,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"the served model name must not be empty, got {model!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if isinstance(context_length, bool) or not isinstance(context_length, int) or context_length < 2:
            raise ConfigError(
                f"context_length must be a whole number of at least 2 tokens, got {context_length!r}"
            )
        self.base_url = base_url.rstrip("/")
        self.model_id = model
        self.api_key = api_key
        self.timeout = float(timeout)
        self._context_length = context_length
        self.last_usage: Usage | None = None
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    @property
    def context_length(self) -> int:
        return self._context_length

    def warm_up(self) -> None:
        """Make the ``openai`` client; the server is first contacted by the first request."""
        if self._client is not None:
            return
        with self._lock:
            if self._client is None:
                import openai

                # Retries are the caller's choice; the SDK's own would multiply the timeout.
                self._client = openai.OpenAI(
                    base_url=self.base_url, api_key=self.api_key or "no-key", timeout=self.timeout, max_retries=0
                )

    def close(self) -> None:
        """Close the client's connections."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def count_tokens(self, text: str) -> int:
        """An estimate: see ``approximate_tokens``."""
        return approximate_tokens(text)

    def count_message_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """An estimate of the prompt's tokens: content, role, and the chat format's overhead."""
        messages = check_messages(messages)
        return _TOKENS_FOR_REPLY + sum(
            _TOKENS_PER_MESSAGE + approximate_tokens(m.role) + approximate_tokens(m.content) for m in messages
        )

    # -- requests ------------------------------------------------------------------------
    def _request(self, messages: Sequence[ChatMessage], config: GenerationConfig, stream: bool) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.model_id,
            "messages": [{"role": m.role, "content": m.content} for m in check_messages(messages)],
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature,
        }
        if not config.greedy:
            request["top_p"] = config.top_p
        if stream:
            request["stream"] = True
            request["stream_options"] = {"include_usage": True}
        if not self.api_key:
            from openai import Omit

            request["extra_headers"] = {"Authorization": Omit()}  # no key: send no Authorization at all
        return request

    def generate(self, messages: Sequence[ChatMessage], config: GenerationConfig | None = None) -> str:
        """Ask for the whole answer in one response; see ``Generator.stream`` for the arguments."""
        config = config or GenerationConfig()
        request = self._request(messages, config, stream=False)
        prompt_estimate = self.count_message_tokens(messages)
        self.warm_up()
        started = time.perf_counter()
        try:
            completion = self._client.chat.completions.create(**request)
            text = completion.choices[0].message.content or ""
        except Exception as exc:
            raise self._error(exc) from exc
        elapsed = time.perf_counter() - started
        usage = getattr(completion, "usage", None)
        self.last_usage = Usage(
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or prompt_estimate),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or approximate_tokens(text)),
            seconds_to_first_token=elapsed if text else None,
            seconds_total=elapsed,
        )
        return text

    def stream(
        self, messages: Sequence[ChatMessage], config: GenerationConfig | None = None
    ) -> Iterator[str]:
        """Yield the answer's pieces as the server sends them (server-sent events); stopping
        the iteration early closes the response, which stops the server's generation."""
        config = config or GenerationConfig()
        request = self._request(messages, config, stream=True)
        prompt_estimate = self.count_message_tokens(messages)
        self.warm_up()
        return self._stream(request, prompt_estimate)

    def _stream(self, request: dict[str, Any], prompt_estimate: int) -> Iterator[str]:
        started = time.perf_counter()
        first_at: float | None = None
        pieces: list[str] = []
        server_usage: Any = None
        try:
            events = self._client.chat.completions.create(**request)
        except Exception as exc:
            raise self._error(exc) from exc
        try:
            while True:
                try:
                    chunk = next(events)
                except StopIteration:
                    break
                except Exception as exc:
                    raise self._error(exc) from exc
                if getattr(chunk, "usage", None):
                    server_usage = chunk.usage
                piece = _delta_text(chunk)
                if piece:
                    if first_at is None:
                        first_at = time.perf_counter()
                    pieces.append(piece)
                    yield piece
        finally:
            events.close()
        text = "".join(pieces)
        self.last_usage = Usage(
            prompt_tokens=int(getattr(server_usage, "prompt_tokens", 0) or prompt_estimate),
            completion_tokens=int(getattr(server_usage, "completion_tokens", 0) or approximate_tokens(text)),
            seconds_to_first_token=first_at - started if first_at is not None else None,
            seconds_total=time.perf_counter() - started,
        )

    # -- errors --------------------------------------------------------------------------
    def _error(self, exc: Exception) -> GenerationError:
        """What went wrong, for the user: the URL, the status or the cause, and what to check."""
        import openai

        if isinstance(exc, GenerationError):
            return exc
        if isinstance(exc, openai.APITimeoutError):
            return GenerationError(
                f"{self.url} did not answer within {self.timeout:g} seconds; check that the server is up and"
                " not overloaded, or raise the timeout"
            )
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            return GenerationError(
                f"cannot connect to {self.url}: {cause}. Check that the inference server is running and that"
                " base_url (host, port, and the /v1 prefix) is right"
            )
        if isinstance(exc, openai.APIStatusError):
            return self._status_error(exc.status_code, _body_text(exc))
        if isinstance(exc, openai.APIError):  # an error event inside the stream
            return GenerationError(f"{self.url} reported an error while streaming: {exc.message}")
        if isinstance(exc, ValueError | KeyError | IndexError | TypeError | AttributeError):
            return GenerationError(
                f"{self.url} answered with something that is not a chat completion ({_excerpt(str(exc))});"
                " check that base_url points at an OpenAI-compatible API (it usually ends in /v1)"
            )
        return GenerationError(f"the request to {self.url} failed: {exc}")

    def _status_error(self, status: int, text: str) -> GenerationError:
        hint = {
            401: "check the API key",
            403: "check the API key and its permissions",
            404: f"check base_url (it usually ends in /v1) and that the server serves the model {self.model_id!r}",
            400: f"check the request: the model name {self.model_id!r}, and whether prompt plus max_new_tokens"
            " fits the served context",
            422: "the server rejected the request's fields; check the model name and generation settings",
            429: "the server is rate-limiting; wait and retry",
        }.get(status, "check the server's log")
        return GenerationError(f"{self.url} answered HTTP {status}: {_excerpt(text)}; {hint}")


def _body_text(exc: Any) -> str:
    try:
        return exc.response.text
    except Exception:  # a streamed response whose body was not read
        return exc.message


def _delta_text(chunk: Any) -> str:
    choices = getattr(chunk, "choices", None) or []
    if not choices:
        return ""
    delta = getattr(choices[0], "delta", None)
    content = getattr(delta, "content", None)
    return content if isinstance(content, str) else ""


def _excerpt(text: str, limit: int = 200) -> str:
    text = " ".join((text or "").split())
    if not text:
        return "an empty body"
    return text if len(text) <= limit else text[:limit] + "..."


__all__ = ["OpenAICompatibleGenerator", "approximate_tokens"]
