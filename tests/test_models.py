"""`ragmem models`: explicit, resumable, verified downloads from a hub (a loopback fake here)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from rag_memory import models
from rag_memory.cli import app
from rag_memory.errors import ConfigError, ModelDownloadError
from tests.helpers.fake_hub import FakeHub

runner = CliRunner()
QWEN = "Qwen/Qwen2.5-0.5B-Instruct"


@pytest.fixture
def hub(tiny_chat_model, tmp_path, monkeypatch):
    """A fake hub serving the tiny chat model as the default generator, and an empty HF cache."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with FakeHub({QWEN: tiny_chat_model}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def usable(model: str) -> bool:
    from rag_memory.generation.select import weights_available

    return weights_available(model)[0]


def test_short_names_and_ids():
    assert models.repo_id_for("qwen2.5-0.5b-instruct") == QWEN
    assert models.repo_id_for("Qwen2.5-1.5B-Instruct") == "Qwen/Qwen2.5-1.5B-Instruct"
    assert models.repo_id_for("bge-m3") == "BAAI/bge-m3"
    assert models.repo_id_for("org/some-model") == "org/some-model"
    with pytest.raises(ConfigError, match="not a known short name"):
        models.repo_id_for("qwen")


def test_choose_files_takes_one_weights_format_and_the_tokenizer():
    files = {
        "config.json": 1, "model.safetensors": 9, "pytorch_model.bin": 9, "onnx/model.onnx": 9,
        "tokenizer.json": 1, "sentencepiece.bpe.model": 1, "1_Pooling/config.json": 1, "model.gguf": 9,
        ".gitattributes": 1, "colbert_linear.pt": 1,
    }
    assert models.choose_files(files) == [
        "1_Pooling/config.json", "config.json", "model.safetensors", "sentencepiece.bpe.model", "tokenizer.json",
    ]
    assert "pytorch_model.bin" in models.choose_files({"config.json": 1, "pytorch_model.bin": 9})


def test_nothing_is_downloaded_or_usable_before_a_pull(hub):
    assert not usable(QWEN)
    assert hub.requests == []


def test_pull_then_ask_generates_with_the_pulled_model(hub, tmp_path):
    seen = []
    result = models.pull("qwen2.5-0.5b-instruct", progress=lambda done, total: seen.append((done, total)))
    assert result.repo_id == QWEN and result.files >= 5
    assert seen and seen[-1][0] == seen[-1][1] == result.size_bytes  # the bar reached the end
    assert usable(QWEN) and not models.is_incomplete(QWEN)

    # `ragmem ask` with the default generator_model now generates with it, offline.
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "zh.md").write_text("长期记忆机制让模型记住很久以前的对话。", encoding="utf-8")
    env = {"RAGMEM_EMBEDDER": "hashing", "HF_HUB_OFFLINE": "1"}
    assert runner.invoke(app, ["ingest", str(docs)], env=env).exit_code == 0
    answer = runner.invoke(app, ["ask", "长期记忆是什么？", "--json", "--max-new-tokens", "4"], env=env)
    assert answer.exit_code == 0, answer.output
    assert '"backend": "transformers"' in answer.stdout and QWEN in answer.stdout
    assert "extractive" not in answer.stderr


def test_a_dropped_connection_is_retried_within_the_pull(hub):
    hub.cut_once["model.safetensors"] = 10_000  # the connection drops once, mid-file
    hub.requests.clear()
    models.pull(QWEN)
    gets = [r for r in hub.requests if r.startswith("GET") and "model.safetensors" in r]
    assert len(gets) == 2  # retried, not given up
    assert usable(QWEN)


def test_a_failed_pull_is_not_usable_says_how_to_retry_and_keeps_finished_files(hub):
    hub.cut_after["model.safetensors"] = 10_000  # the connection keeps dropping mid-file
    with pytest.raises(ModelDownloadError, match="ragmem models pull qwen2.5-0.5b-instruct"):
        models.pull(QWEN)
    assert models.is_incomplete(QWEN) and not usable(QWEN)
    from rag_memory.generation.select import weights_available

    assert "did not finish" in weights_available(QWEN)[1]
    listed = {r.repo_id: r for r in models.inventory(_settings())}
    assert listed[QWEN].status == "incomplete"

    del hub.cut_after["model.safetensors"]
    hub.requests.clear()
    models.pull(QWEN)
    assert usable(QWEN) and not models.is_incomplete(QWEN)
    fetched = [r.split("/")[-1] for r in hub.requests if r.startswith("GET /Qwen")]
    assert "model.safetensors" in fetched and "tokenizer.json" not in fetched  # done files are kept


def test_a_corrupt_file_fails_verification_and_is_deleted(hub):
    hub.corrupt.add("model.safetensors")
    with pytest.raises(ModelDownloadError, match="checksum mismatch: model.safetensors"):
        models.pull(QWEN)
    assert not usable(QWEN)
    hub.corrupt.clear()
    models.pull(QWEN)
    assert usable(QWEN)


def test_unknown_repo_offline_mode_and_rm(hub, monkeypatch):
    with pytest.raises(ModelDownloadError, match="not on the hub"):
        models.pull("nobody/nothing")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelDownloadError, match="HF_HUB_OFFLINE"):
        models.pull(QWEN)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    models.pull(QWEN)
    assert models.remove("qwen2.5-0.5b-instruct") > 0
    assert not usable(QWEN)
    with pytest.raises(ConfigError, match="not in the Hugging Face cache"):
        models.remove(QWEN)


def test_cli_pull_list_rm(hub):
    pulled = runner.invoke(app, ["models", "pull"])  # the configured generator by default
    assert pulled.exit_code == 0, pulled.output
    assert "Pulled Qwen/Qwen2.5-0.5B-Instruct" in pulled.stdout and "verified" in pulled.stdout
    listed = runner.invoke(app, ["models", "list", "--json"])
    rows = {r["name"]: r for r in __import__("json").loads(listed.stdout)}
    assert rows["qwen2.5-0.5b-instruct"]["status"] == "present"
    assert rows["qwen2.5-0.5b-instruct"]["configured_as"] == ["generator"]
    assert rows["all-MiniLM-L6-v2"]["status"] == "bundled"
    assert runner.invoke(app, ["models", "rm", "qwen2.5-0.5b-instruct"]).exit_code == 0
    failed = runner.invoke(app, ["models", "pull", "nobody/nothing"])
    assert failed.exit_code == 1 and "Error:" in failed.stderr


def _settings():
    from rag_memory.config import Settings

    return Settings.load({})
