"""Choose the generator a command uses, and say why when it is not the configured model.

``auto`` tries, in order: the configured local model (only if its weights are on this
machine: a folder, or a hub id already in the Hugging Face cache; never a download), then an
OpenAI-compatible server if one is configured and answers, then the extractive answerer.
An explicit choice (``transformers``, ``openai``) that fails is an error instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from rag_memory.config import Settings
from rag_memory.errors import ConfigError, GenerationError
from rag_memory.generation.base import Generator
from rag_memory.generation.extractive import ExtractiveAnswerer
from rag_memory.hub import no_telemetry

log = logging.getLogger(__name__)

EXTRACTIVE_NOTE = "no language model available"
# What the CLI prints after an extractive answer (the full reason stays in Answer.notes / --json).
EXTRACTIVE_SHORT = (
    "no language model found, so answers are extractive (quoted from your documents); get one with"
    " `ragmem models pull`, or set generator_model (--model PATH) or generator_url."
)
HOW_TO = (
    "To generate answers, download the model once with `ragmem models pull` (the configured generator_model;"
    " see `ragmem models list`), or point generator_model at a local model folder (--model PATH), or set"
    " generator_url to an OpenAI-compatible server (vLLM, llama.cpp, TGI)."
)


@dataclass
class Selection:
    """The generator chosen, and notes on what was tried first and why it was passed over."""

    generator: Generator | ExtractiveAnswerer
    notes: list[str] = field(default_factory=list)

    @property
    def extractive(self) -> bool:
        return isinstance(self.generator, ExtractiveAnswerer)


def weights_available(model: str) -> tuple[bool, str]:
    """Whether the model's files are on this machine, without touching the network."""
    path = Path(model).expanduser()
    if path.exists():
        if (path / "config.json").is_file():
            return True, ""
        return False, f"{path} is not a transformers model folder (no config.json)"
    if model.startswith(("/", ".", "~")):
        return False, f"the folder {path} does not exist"
    no_telemetry()
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return False, "huggingface_hub is not installed"
    from rag_memory.models import is_incomplete, retry_hint

    try:
        found = try_to_load_from_cache(model, "config.json")
        incomplete = is_incomplete(model)
    except Exception as exc:  # a malformed id
        return False, f"{model!r} is neither a folder nor a valid model id ({exc})"
    if incomplete:
        return False, f"the download of {model!r} did not finish; run `{retry_hint(model)}` to complete it"
    if isinstance(found, str):
        return True, ""
    return False, f"{model!r} is not a local folder and is not in the Hugging Face cache"


def _server_answers(url: str, api_key: str | None) -> tuple[bool, str]:
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        resp = httpx.get(url.rstrip("/") + "/models", timeout=3.0, headers=headers)
    except httpx.HTTPError as exc:
        return False, f"the server at {url} did not answer ({type(exc).__name__})"
    if resp.status_code >= 500:
        return False, f"the server at {url} answered HTTP {resp.status_code}"
    return True, ""


def _transformers(settings: Settings, model: str) -> Generator:
    from rag_memory.generation.transformers_generator import TransformersGenerator

    gen = TransformersGenerator(
        model, device=settings.device, max_context=settings.context_length, allow_downloads=settings.allow_downloads
    )
    gen.warm_up()
    return gen


def _openai(settings: Settings, key: str | None = None) -> Generator:
    from rag_memory.generation.openai_compatible import OpenAICompatibleGenerator

    if not settings.generator_url:
        raise ConfigError("generator 'openai' needs generator_url (RAGMEM_GENERATOR_URL or --generator-url)")
    return OpenAICompatibleGenerator(
        settings.generator_url,
        settings.generator_model,
        api_key=key if key is not None else settings.generator_key(),
        context_length=settings.context_length or 8192,
    )


def select_generator(settings: Settings) -> Selection:
    """The generator ``settings.generator`` asks for (see the module docstring for ``auto``)."""
    kind = settings.generator
    model = settings.generator_model
    if kind == "extractive":
        return Selection(ExtractiveAnswerer())
    if kind == "transformers":
        return Selection(_transformers(settings, model))
    if kind == "openai":
        return Selection(_openai(settings))

    notes: list[str] = []
    ok, why = weights_available(model)
    if ok:
        try:
            return Selection(_transformers(settings, model))
        except GenerationError as exc:
            notes.append(f"the local model {model!r} could not be loaded: {exc}")
    else:
        notes.append(f"no local weights for the model {model!r}: {why}")
    if settings.generator_url:
        try:
            key = settings.generator_key()
        except ConfigError as exc:
            notes.append(str(exc))
        else:
            ok, why = _server_answers(settings.generator_url, key)
            if ok:
                return Selection(_openai(settings, key), notes)
            notes.append(why)
    # One line for the user: what happened, why, and how to change it.
    summary = (
        f"{EXTRACTIVE_NOTE}, so the answer is extractive (the most relevant retrieved sentences,"
        f" with citations): {'; '.join(notes)}. {HOW_TO}"
    )
    return Selection(ExtractiveAnswerer(), [summary])
