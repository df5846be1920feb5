"""A local Hugging Face ``transformers`` causal LM as the generator, on the GPU when there is one.

Loading is lazy and shared: ``warm_up`` loads the tokenizer and the weights once per process
for each (model, device, dtype), so two generators naming the same model share one copy.
torch and transformers are imported only when a model is loaded.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_memory.errors import ConfigError, GenerationError
from rag_memory.generation.base import ChatMessage, GenerationConfig, Generator, Usage, check_messages
from rag_memory.hub import no_telemetry

log = logging.getLogger(__name__)

DTYPES = ("auto", "bfloat16", "float16", "float32")
# transformers uses a huge number for "no limit" in tokenizer.model_max_length
_SANE_MAX_LENGTH = 10_000_000
_FALLBACK_CONTEXT = 2048
# How often a streaming consumer wakes to check that the generation thread is still alive.
_POLL_SECONDS = 0.1
_FIX_HINT = (
    "Name a local model folder with --model PATH, or set generator_model in ragmem.toml or the"
    " environment variable RAGMEM_GENERATOR_MODEL. A hub id loads from the Hugging Face cache only:"
    " fetch it once with `ragmem models pull NAME` (or set allow_downloads = true to let loading fetch it)."
)


@dataclass
class _Loaded:
    tokenizer: Any
    model: Any


_CACHE: dict[tuple[str, str, str, bool], _Loaded] = {}
_CACHE_LOCK = threading.Lock()


class TransformersGenerator(Generator):
    """Generate with a local causal LM through ``transformers``.

    On CUDA the weights load in bfloat16 (float16 where the GPU has no bfloat16) with
    ``device_map`` and SDPA attention; on the CPU in float32. The prompt is rendered with the
    tokenizer's chat template when it has one, else as a plain ``System:/User:/Assistant:``
    transcript. Decoding is greedy unless ``GenerationConfig.temperature`` is above 0.

    Args:
        model: A local model folder, or a hub id already in the Hugging Face cache.
        device: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        dtype: ``auto`` (as above), ``bfloat16``, ``float16`` or ``float32``.
        trust_remote_code: Allow model code shipped with the checkpoint to run.
        max_context: Cap on the context window, below what the model supports (saves memory).
        allow_downloads: Fetch a hub id missing from the cache from the hub (the
            ``allow_downloads`` setting). Off by default: nothing is downloaded.
        static_cache: Decode with a static KV cache; on CUDA, transformers then compiles the
            forward pass with ``torch.compile`` (the first call per shape pays the compile).
            On the CPU the cache is static but nothing is compiled.

    Example:
        >>> gen = TransformersGenerator("/models/Qwen2.5-0.5B-Instruct")
        >>> for piece in gen.stream([ChatMessage("user", "Say hello")]):
        ...     sys.stdout.write(piece)
    """

    backend = "transformers"

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        max_context: int | None = None,
        allow_downloads: bool = False,
        static_cache: bool = False,
    ) -> None:
        if not isinstance(model, str | os.PathLike) or not str(model).strip():
            raise ConfigError(f"the generator model must be a folder or a model id, got {model!r}")
        if dtype not in DTYPES:
            raise ConfigError(f"dtype {dtype!r} is not known; use one of {', '.join(DTYPES)}")
        if max_context is not None and (isinstance(max_context, bool) or not isinstance(max_context, int)):
            raise ConfigError(f"max_context must be a whole number of tokens, got {max_context!r}")
        if max_context is not None and max_context < 2:
            raise ConfigError(f"max_context must be at least 2 tokens, got {max_context}")
        self.model_name = str(model)
        self.model_id = self.model_name
        self.requested_device = device
        self.dtype = dtype
        self.trust_remote_code = trust_remote_code
        self.max_context = max_context
        self.allow_downloads = allow_downloads
        self.static_cache = static_cache
        self.last_usage: Usage | None = None
        self._loaded: _Loaded | None = None

    # -- loading -------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load the tokenizer and the model, or reuse the copy this process already loaded."""
        if self._loaded is not None:
            return
        from rag_memory.devices import resolve_device

        device = resolve_device(self.requested_device)
        source, local = _locate(self.model_name)
        key = (source, device, self.dtype, self.trust_remote_code)
        with _CACHE_LOCK:
            loaded = _CACHE.get(key)
            if loaded is None:
                loaded = _load(
                    self.model_name, source, local, device, self.dtype, self.trust_remote_code, self.allow_downloads
                )
                _CACHE[key] = loaded
        self._loaded = loaded

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer (loads the model)."""
        self.warm_up()
        assert self._loaded is not None
        return self._loaded.tokenizer

    @property
    def model(self) -> Any:
        """The loaded ``PreTrainedModel`` (loads it)."""
        self.warm_up()
        assert self._loaded is not None
        return self._loaded.model

    @property
    def device(self) -> str:
        """Where the model's first weights are, e.g. ``cpu`` or ``cuda:0`` (loads the model)."""
        return str(self.model.device)

    @property
    def context_length(self) -> int:
        """The model's window from its config (or its tokenizer), capped by ``max_context``."""
        config = self.model.config
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        length = None
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = getattr(text_config, name, None)
            if isinstance(value, int) and value > 0:
                length = value
                break
        if length is None:
            value = getattr(self.tokenizer, "model_max_length", None)
            if isinstance(value, int) and 0 < value < _SANE_MAX_LENGTH:
                length = value
        if length is None:
            log.warning("%s does not state its context length; assuming %d", self.model_id, _FALLBACK_CONTEXT)
            length = _FALLBACK_CONTEXT
        return min(length, self.max_context) if self.max_context else length

    # -- prompts and tokens ---------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the model's tokenizer, without special tokens."""
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def render_prompt(self, messages: Sequence[ChatMessage]) -> str:
        """The prompt text: the chat template with the assistant turn opened, or a plain transcript."""
        messages = check_messages(messages)
        tokenizer = self.tokenizer
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(
                _as_dicts(messages), tokenize=False, add_generation_prompt=True
            )
        return super().render_prompt(messages)

    def count_message_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self.encode_messages(messages))

    def encode_messages(self, messages: Sequence[ChatMessage]) -> list[int]:
        """The token ids of the rendered prompt, as the model reads them.

        With a chat template, control tokens that appear inside message texts (a retrieved
        document containing ``<|im_end|>``, say) are encoded as plain text, so a message cannot
        end its own turn or forge another role's; only the template writes control tokens.
        """
        messages = check_messages(messages)
        tokenizer = self.tokenizer
        if getattr(tokenizer, "chat_template", None):
            try:
                encoded = tokenizer.apply_chat_template(
                    _as_dicts(messages),
                    add_generation_prompt=True,
                    tokenize=True,
                    sanitize_control_tokens=True,
                )
            except (NotImplementedError, ValueError) as exc:
                # A tokenizer whose post-processor adds tokens cannot sanitise; encode the text as is.
                log.debug("chat template without control-token sanitising for %s: %s", self.model_id, exc)
                return list(tokenizer.encode(self.render_prompt(messages), add_special_tokens=False))
            ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
            return [int(i) for i in ids]
        return list(tokenizer.encode(self.render_prompt(messages), add_special_tokens=True))

    # -- generation ----------------------------------------------------------------------
    def generate(self, messages: Sequence[ChatMessage], config: GenerationConfig | None = None) -> str:
        """Generate the whole answer on the calling thread; see ``Generator.stream`` for arguments."""
        config = config or GenerationConfig()
        self.warm_up()  # loading is not part of the call's timings
        started = time.perf_counter()
        prompt_ids = self.encode_messages(messages)
        self._check_fits(len(prompt_ids), config)
        timer = _first_token_timer()
        output = self._run_generate(self._generate_kwargs(prompt_ids, config, timer))
        new_ids = _completion_ids(output[0, len(prompt_ids) :].tolist(), self._pad_token_id())
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        self.last_usage = Usage(
            prompt_tokens=len(prompt_ids),
            completion_tokens=len(new_ids),
            seconds_to_first_token=timer.first_token_at - started if timer.first_token_at else None,
            seconds_total=time.perf_counter() - started,
        )
        return text

    def generate_batch(
        self, conversations: Sequence[Sequence[ChatMessage]], config: GenerationConfig | None = None
    ) -> list[str]:
        """Generate the answers to several prompts in one ``generate`` call (left-padded).

        One batched call keeps the GPU busy where separate calls leave it waiting on each
        token's launch; answers are the same as one at a time with greedy decoding (up to
        floating-point differences padding can cause). ``last_usage`` sums the batch.
        """
        config = config or GenerationConfig()
        if not conversations:
            return []
        self.warm_up()
        import torch

        started = time.perf_counter()
        prompts = [self.encode_messages(m) for m in conversations]
        for ids in prompts:
            self._check_fits(len(ids), config)
        pad = self._pad_token_id()
        pad = pad if pad is not None else self._eos_token_ids()[0]
        width = max(len(ids) for ids in prompts)
        kwargs = self._generate_kwargs(prompts[0], config, None)
        device = self.model.device
        kwargs["input_ids"] = torch.tensor([[pad] * (width - len(ids)) + ids for ids in prompts], device=device)
        kwargs["attention_mask"] = torch.tensor(
            [[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts], device=device
        )
        kwargs["pad_token_id"] = pad
        kwargs.pop("streamer")
        output = self._run_generate(kwargs)
        answers, completion = [], 0
        for row in output[:, width:].tolist():
            new_ids = _completion_ids(row, pad)
            completion += len(new_ids)
            answers.append(self.tokenizer.decode(new_ids, skip_special_tokens=True))
        self.last_usage = Usage(
            prompt_tokens=sum(len(ids) for ids in prompts),
            completion_tokens=completion,
            seconds_to_first_token=None,
            seconds_total=time.perf_counter() - started,
        )
        return answers

    def stream(
        self, messages: Sequence[ChatMessage], config: GenerationConfig | None = None
    ) -> Iterator[str]:
        """Yield the answer in pieces while a background thread generates it.

        A piece ends at a space, a newline or a CJK character (``TextIteratorStreamer``'s
        rule), so words are not split. If generation fails, the error is raised here, in the
        consumer; stopping the iteration early stops the generation too.
        """
        config = config or GenerationConfig()
        self.warm_up()  # loading is not part of the call's timings
        started = time.perf_counter()
        prompt_ids = self.encode_messages(messages)
        self._check_fits(len(prompt_ids), config)
        return self._stream(prompt_ids, config, started)

    def _stream(self, prompt_ids: list[int], config: GenerationConfig, started: float) -> Iterator[str]:
        streamer = _iterator_streamer(self.tokenizer)
        cancel = threading.Event()
        kwargs = self._generate_kwargs(prompt_ids, config, streamer, cancel)
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["output"] = self._run_generate(kwargs)
            except BaseException as exc:  # handed to the consumer, which raises it
                outcome["error"] = exc
                streamer.text_queue.put(_FAILED)

        thread = threading.Thread(target=work, name=f"ragmem-generate-{self.model_id}", daemon=True)
        thread.start()
        try:
            while True:
                try:
                    piece = streamer.text_queue.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    if thread.is_alive():
                        continue
                    # The thread is gone; what it put last may have landed just after the timeout.
                    piece = _next_or_nothing(streamer.text_queue)
                    if piece is _NOTHING:
                        raise GenerationError(
                            f"generation with {self.model_id} ended without finishing its answer or raising an error"
                        ) from None
                if piece is _FAILED:
                    raise outcome["error"]
                if piece is streamer.stop_signal:
                    break
                if piece:
                    yield piece
        finally:
            cancel.set()
        thread.join()
        new_ids = _completion_ids(outcome["output"][0, len(prompt_ids) :].tolist(), self._pad_token_id())
        self.last_usage = Usage(
            prompt_tokens=len(prompt_ids),
            completion_tokens=len(new_ids),
            seconds_to_first_token=streamer.first_token_at - started if streamer.first_token_at else None,
            seconds_total=time.perf_counter() - started,
        )

    def _run_generate(self, kwargs: dict[str, Any]) -> Any:
        import torch

        try:
            with torch.inference_mode():
                return self.model.generate(**kwargs)
        except torch.OutOfMemoryError as exc:
            raise GenerationError(
                f"{self.model_id} ran out of memory on {self.device} while generating: {exc}. Shorten the"
                " prompt or max_new_tokens, set max_context lower, or use a smaller model."
            ) from exc

    def _generate_kwargs(
        self,
        prompt_ids: list[int],
        config: GenerationConfig,
        streamer: Any,
        cancel: threading.Event | None = None,
    ) -> dict[str, Any]:
        import torch
        from transformers import StoppingCriteriaList

        model = self.model
        input_ids = torch.tensor([prompt_ids], dtype=torch.long, device=model.device)
        kwargs: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "max_new_tokens": config.max_new_tokens,
            "pad_token_id": self._pad_token_id(),
            "eos_token_id": self._eos_token_ids(),
            "streamer": streamer,
        }
        if self.static_cache:
            kwargs["cache_implementation"] = "static"
        if config.greedy:
            # Unset the checkpoint's sampling defaults too, so greedy decoding is exactly greedy.
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=config.temperature, top_p=config.top_p)
        if cancel is not None:
            kwargs["stopping_criteria"] = StoppingCriteriaList([_cancel_criterion(cancel)])
        return kwargs

    def _check_fits(self, prompt_tokens: int, config: GenerationConfig) -> None:
        window = self.context_length
        if prompt_tokens + config.max_new_tokens > window:
            raise GenerationError(
                f"the prompt has {prompt_tokens} tokens and the answer may take {config.max_new_tokens} more,"
                f" but {self.model_id} reads at most {window} tokens in all. Retrieve fewer or smaller chunks,"
                " keep less history, or lower max_new_tokens; the prompt is never cut silently."
            )

    def _eos_token_ids(self) -> list[int]:
        # Chat checkpoints often end a turn with the tokenizer's eos (<|im_end|>) while the model
        # config names another (<|endoftext|>); stop at either.
        ids: list[int] = []
        configured = self.model.generation_config.eos_token_id
        for value in (configured if isinstance(configured, list) else [configured]) + [
            self.tokenizer.eos_token_id
        ]:
            if value is not None and value not in ids:
                ids.append(int(value))
        return ids

    def _pad_token_id(self) -> int | None:
        pad = self.tokenizer.pad_token_id
        if pad is not None:
            return int(pad)
        eos = self._eos_token_ids()
        return eos[0] if eos else None


# -- loading helpers -----------------------------------------------------------------------
def _looks_like_path(model: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else with a separator is meant as a folder."""
    return model.startswith(("/", ".", "~")) or "\\" in model or model.count("/") > 1 or os.path.isabs(model)


def _locate(model: str) -> tuple[str, bool]:
    """The source to load from (absolute for folders) and whether it is a local folder."""
    path = Path(model).expanduser()
    if path.exists():
        return str(path.resolve()), True
    if _looks_like_path(model):
        raise GenerationError(
            f"cannot load the generator model {model!r}: the folder {path} does not exist. {_FIX_HINT}"
        )
    return model, False


def _load(
    name: str, source: str, local: bool, device: str, dtype: str, trust_remote_code: bool, allow_downloads: bool
) -> _Loaded:
    if local:
        folder = Path(source)
        if not folder.is_dir():
            raise GenerationError(
                f"cannot load the generator model {name!r}: {folder} is a file, not a model folder. {_FIX_HINT}"
            )
        if not (folder / "config.json").is_file():
            raise GenerationError(
                f"cannot load the generator model {name!r}: {folder} has no config.json, so it is not a"
                f" transformers model folder. {_FIX_HINT}"
            )
    no_telemetry()
    import torch

    started = time.perf_counter()
    try:
        try:
            # The cache first: a cached hub model then loads without touching the network.
            tokenizer, model = _from_pretrained(source, True, device, dtype, trust_remote_code)
        except OSError:
            if local or not allow_downloads or _hub_offline():
                raise
            log.info("%s is not in the Hugging Face cache; downloading it (allow_downloads is on)", source)
            tokenizer, model = _from_pretrained(source, False, device, dtype, trust_remote_code)
    except torch.OutOfMemoryError as exc:
        raise GenerationError(
            f"cannot load the generator model {name!r} on {device}: out of memory ({_first_line(exc)})."
            " Use a smaller model, float16/bfloat16, or another device."
        ) from exc
    except (OSError, ValueError, KeyError, ImportError, RuntimeError) as exc:
        offline = (
            " (set HF_HUB_OFFLINE=1 to skip the slow hub retries on machines without internet)"
            if allow_downloads and not local
            else ""
        )
        raise GenerationError(
            f"cannot load the generator model {name!r}: {_first_line(exc)}. {_FIX_HINT}{offline}"
        ) from exc
    model.eval()
    log.info(
        "loaded generator %s on %s (%s) in %.1fs",
        name,
        model.device,
        str(model.dtype).removeprefix("torch."),
        time.perf_counter() - started,
    )
    return _Loaded(tokenizer=tokenizer, model=model)


def _from_pretrained(
    source: str, local_files_only: bool, device: str, dtype: str, trust_remote_code: bool
) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    common = {"trust_remote_code": trust_remote_code, "local_files_only": local_files_only}
    model_kwargs: dict[str, Any] = {**common, "dtype": _torch_dtype(dtype, device)}
    placed = False
    if device.startswith("cuda"):
        model_kwargs["attn_implementation"] = "sdpa"
        # device_map loads the weights straight onto the GPU(s), but needs accelerate.
        if importlib.util.find_spec("accelerate") is not None:
            model_kwargs["device_map"] = "auto" if device == "cuda" else device
            placed = True
    from rag_memory.devices import quiet_model_loading

    with quiet_model_loading():
        tokenizer = AutoTokenizer.from_pretrained(source, **common)
        model = AutoModelForCausalLM.from_pretrained(source, **model_kwargs)
    if not placed:
        model.to(device)
    return tokenizer, model


def _hub_offline() -> bool:
    try:
        from huggingface_hub import is_offline_mode
    except ImportError:  # older huggingface_hub
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    return is_offline_mode()


def _torch_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].rstrip(".")


def _as_dicts(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def _completion_ids(ids: list[int], pad: int | None) -> list[int]:
    """The generated ids, without the padding ``generate`` may append after the end."""
    while ids and pad is not None and ids[-1] == pad:
        ids = ids[:-1]
    return ids


# -- streaming helpers (transformers classes, so built on first use) -------------------------
_FAILED = object()


_NOTHING = object()


def _next_or_nothing(q: queue.Queue) -> Any:
    try:
        return q.get_nowait()
    except queue.Empty:
        return _NOTHING


_STREAMER_CLASSES: dict[str, type] = {}


def _streamer_classes() -> dict[str, type]:
    if _STREAMER_CLASSES:
        return _STREAMER_CLASSES
    import torch
    from transformers import StoppingCriteria, TextIteratorStreamer
    from transformers.generation.streamers import BaseStreamer

    class FirstTokenTimer(BaseStreamer):
        """Notes when the first generated token arrives; ``generate`` first puts the prompt."""

        def __init__(self) -> None:
            self.first_token_at: float | None = None
            self._seen_prompt = False

        def put(self, value: Any) -> None:
            if self._seen_prompt and self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            self._seen_prompt = True

        def end(self) -> None:
            pass

    class TimedIteratorStreamer(TextIteratorStreamer):
        def __init__(self, tokenizer: Any) -> None:
            super().__init__(tokenizer, skip_prompt=True, timeout=_POLL_SECONDS, skip_special_tokens=True)
            self.first_token_at: float | None = None
            self._seen_prompt = False

        def put(self, value: Any) -> None:
            if self._seen_prompt and self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            self._seen_prompt = True
            super().put(value)

    class CancelCriterion(StoppingCriteria):
        def __init__(self, event: threading.Event) -> None:
            self.event = event

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full(
                (input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device
            )

    _STREAMER_CLASSES.update(timer=FirstTokenTimer, iterator=TimedIteratorStreamer, cancel=CancelCriterion)
    return _STREAMER_CLASSES


def _first_token_timer() -> Any:
    return _streamer_classes()["timer"]()


def _iterator_streamer(tokenizer: Any) -> Any:
    return _streamer_classes()["iterator"](tokenizer)


def _cancel_criterion(event: threading.Event) -> Any:
    return _streamer_classes()["cancel"](event)


def clear_model_cache() -> None:
    """Forget every model this process loaded (the next ``warm_up`` loads again)."""
    with _CACHE_LOCK:
        _CACHE.clear()


__all__ = ["DTYPES", "TransformersGenerator", "clear_model_cache"]
