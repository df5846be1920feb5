"""Downloads are opt-in: model loaders read only local files unless ``allow_downloads`` is on."""

from __future__ import annotations

import pytest

from rag_memory.config import Settings
from rag_memory.errors import EmbedderError, GenerationError
from rag_memory.generation import transformers_generator as tg
from rag_memory.pipelines.components import Components


@pytest.fixture
def hub_reachable(monkeypatch):
    """Pretend HF_HUB_OFFLINE is unset, as on a user's machine (the test suite sets it)."""
    monkeypatch.setattr(tg, "_hub_offline", lambda: False)


def _record_from_pretrained(monkeypatch) -> list[bool]:
    calls: list[bool] = []

    def fake(source, local_files_only, device, dtype, trust_remote_code):
        calls.append(local_files_only)
        raise OSError(f"{source} is not in the cache")

    monkeypatch.setattr(tg, "_from_pretrained", fake)
    return calls


def test_the_generator_never_falls_back_to_the_hub_by_default(monkeypatch, hub_reachable):
    calls = _record_from_pretrained(monkeypatch)
    gen = tg.TransformersGenerator("Qwen/Qwen2.5-0.5B-Instruct", device="cpu")
    with pytest.raises(GenerationError, match="ragmem models pull") as info:
        gen.warm_up()
    assert calls == [True]  # the cache only
    assert "allow_downloads" in str(info.value)


def test_allow_downloads_lets_the_generator_fetch_a_missing_model(monkeypatch, hub_reachable):
    calls = _record_from_pretrained(monkeypatch)
    with pytest.raises(GenerationError):
        tg.TransformersGenerator("Qwen/Qwen2.5-0.5B-Instruct", device="cpu", allow_downloads=True).warm_up()
    assert calls == [True, False]  # the cache, then the hub


def test_the_setting_reaches_every_loader(monkeypatch):
    import sentence_transformers

    seen: list[tuple[str, bool]] = []

    class FakeModel:
        def __init__(self, name, **kwargs):
            seen.append((type(self).__name__, kwargs["local_files_only"]))
            raise OSError("no such model in the cache")

    class SentenceTransformer(FakeModel):
        pass

    class CrossEncoder(FakeModel):
        pass

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", SentenceTransformer)
    monkeypatch.setattr(sentence_transformers, "CrossEncoder", CrossEncoder)
    for allow in (False, True):
        s = Settings.load({"embedder": "org/some-embedder", "rerank_model": "org/some-reranker", "allow_downloads": allow})
        parts = Components(s)
        with pytest.raises(EmbedderError, match="ragmem models pull org/some-embedder"):
            parts.embedder.warm_up()
        with pytest.raises(EmbedderError, match="ragmem models pull org/some-reranker"):
            parts.retriever.reranker.warm_up()
    assert seen == [
        ("SentenceTransformer", True), ("CrossEncoder", True), ("SentenceTransformer", False), ("CrossEncoder", False)
    ]
    assert Settings.load().allow_downloads is False
