"""`ragmem ask` and `ragmem chat` end to end: real Chroma, real loaders, a tiny real model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag_memory.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _lexical_embedder(monkeypatch):
    monkeypatch.setenv("RAGMEM_EMBEDDER", "hashing")
    monkeypatch.setenv("RAGMEM_RELEVANCE_GATE", "0.1")
    monkeypatch.setenv("RAGMEM_MEMORY_MIN_SCORE", "0.15")


@pytest.fixture
def ingested(tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    (root / "sync.md").write_text(
        "# Sync\n\nWhen a file is deleted, re-ingest removes its chunks from the knowledge base.\n\n"
        "Changed files are re-chunked and their changed chunks are embedded again.",
        encoding="utf-8",
    )
    (root / "zh.txt").write_text("删除的文件在重新导入时会被移除。修改过的文件会重新切块。", encoding="utf-8")
    result = runner.invoke(app, ["ingest", str(root)])
    assert result.exit_code == 0, result.output
    return root


def ask(*args: str):
    return runner.invoke(app, ["ask", *args])


def test_without_a_model_ask_answers_extractively_with_citations_and_one_note(ingested, monkeypatch):
    monkeypatch.setenv("RAGMEM_GENERATOR_MODEL", "/nonexistent/model")
    result = ask("What happens to deleted files on re-ingest?")
    assert result.exit_code == 0, result.output
    assert "re-ingest removes its chunks from the knowledge base. [1]" in result.stdout
    assert "sync.md" in result.stdout  # the sources list
    notes = [line for line in result.stderr.splitlines() if line.startswith("Note:")]
    assert len(notes) == 1 and "extractive" in notes[0] and "generator_model" in notes[0]
    assert "ragmem models pull" in notes[0]  # the fix is named
    assert len(notes[0]) < 200  # one short line; the full reason is in --json "notes"


def test_ask_json_has_the_documented_fields(ingested, monkeypatch):
    monkeypatch.setenv("RAGMEM_GENERATOR", "extractive")
    result = ask("What happens to deleted files on re-ingest?", "--json")
    data = json.loads(result.stdout)
    assert {"answer", "generator", "sources", "tokens", "timings"} <= set(data)
    assert data["generator"] == {"backend": "extractive", "model": "extractive"}
    src = data["sources"][0]
    assert {"n", "kind", "source", "page", "score", "text"} <= set(src)
    assert src["n"] == 1 and src["kind"] == "document" and Path(src["source"]).name == "sync.md"
    assert {"prompt", "max_new_tokens", "context_length", "completion"} <= set(data["tokens"])
    assert data["timings"]["retrieve"] >= 0


def test_ask_with_a_local_model_folder_runs_the_real_generator(ingested, tiny_chat_model):
    result = ask("What happens to deleted files on re-ingest?", "--generator", "transformers",
                 "--model", str(tiny_chat_model), "--max-new-tokens", "12", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["generator"] == {"backend": "transformers", "model": str(tiny_chat_model)}
    tokens = data["tokens"]
    assert 0 < tokens["completion"] <= 12
    assert tokens["prompt"] + tokens["max_new_tokens"] <= tokens["context_length"]
    assert data["answer"] and data["sources"][0]["kind"] == "document"


def test_ask_streams_the_tiny_models_answer_to_stdout(ingested, tiny_chat_model):
    result = ask("删除的文件会怎样？", "--generator", "transformers", "--model", str(tiny_chat_model),
                 "--max-new-tokens", "8")
    assert result.exit_code == 0, result.output
    assert "Sources" in result.stdout and "zh.txt" in result.stdout


def test_explicit_transformers_with_a_missing_model_is_an_error(ingested, tmp_path):
    result = ask("anything", "--generator", "transformers", "--model", str(tmp_path / "nope"))
    assert result.exit_code == 1
    assert "nope" in result.stderr and "Traceback" not in result.output


def test_explain_shows_scores_gate_budget_and_timings(ingested, monkeypatch):
    monkeypatch.setenv("RAGMEM_GENERATOR", "extractive")
    result = ask("What happens to deleted files on re-ingest?", "--explain")
    out = result.stdout
    assert "Knowledge chunks (gate 0.1)" in out and "Token budget" in out and "Timings:" in out
    assert "passed gate" in out


def test_memory_is_recalled_across_processes(ingested, tmp_path):
    env = {**os.environ, "RAGMEM_GENERATOR": "extractive"}

    def cli(*args: str) -> dict:
        proc = subprocess.run([sys.executable, "-m", "rag_memory.cli", *args, "--json"], capture_output=True,
                              text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    cli("ask", "--user", "alice", "--session", "s1", "My project is about solar panels for sailing boats.")
    later = cli("ask", "--user", "alice", "--session", "s2", "What did I say my project was about?")
    memories = [s for s in later["sources"] if s["kind"] == "memory"]
    assert any("solar panels" in m["text"] for m in memories)
    assert "solar panels" in later["answer"]
    bob = cli("ask", "--user", "bob", "--session", "s3", "What did I say my project was about?")
    assert not any("solar" in s["text"] for s in bob["sources"])


def test_chat_keeps_the_session_between_questions(ingested, monkeypatch):
    monkeypatch.setenv("RAGMEM_GENERATOR", "extractive")
    result = runner.invoke(
        app,
        ["chat", "--session", "c1", "--user", "zoe"],
        input="What happens to deleted files on re-ingest?\nAnd changed files?\n/sources\n/exit\n",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.count("ragmem>") == 2
    assert "Changed files are re-chunked" in result.stdout
    from rag_memory.config import Settings
    from rag_memory.memory.history import ChatHistory

    turns = ChatHistory(Settings.load().history_path).turns("zoe", "c1")
    assert [t.content for t in turns if t.role == "user"] == [
        "What happens to deleted files on re-ingest?",
        "And changed files?",
    ]


def test_chat_ctrl_c_cancels_the_line_or_the_answer_and_a_second_one_leaves(ingested, monkeypatch):
    import builtins

    from rag_memory.pipelines.rag import RagPipeline

    monkeypatch.setenv("RAGMEM_GENERATOR_MODEL", "/nonexistent/model")
    lines = iter(["What happens to deleted files on re-ingest?", KeyboardInterrupt, "And changed files?",
                  KeyboardInterrupt, KeyboardInterrupt])

    def fake_input(prompt=""):
        item = next(lines)
        if item is KeyboardInterrupt:
            raise KeyboardInterrupt
        return item

    real_stream = RagPipeline.stream
    calls = []

    def stream(self, question, **kw):
        calls.append(question)
        if len(calls) == 1:  # Ctrl-C while the first answer is being written
            def interrupted():
                yield "When a file"
                raise KeyboardInterrupt
            out = real_stream(self, question, **kw)
            out._pieces = interrupted()
            return out
        return real_stream(self, question, **kw)

    monkeypatch.setattr(builtins, "input", fake_input)
    monkeypatch.setattr(RagPipeline, "stream", stream)
    result = runner.invoke(app, ["chat", "--session", "cc", "--user", "zoe"])
    assert result.exit_code == 0, result.output
    assert "(answer cancelled)" in result.stderr
    assert "Ctrl-C again or Ctrl-D" in result.stderr
    assert "Chat ended" in result.stderr and "Interrupted. Nothing is left half-done" not in result.stderr
    assert calls == ["What happens to deleted files on re-ingest?", "And changed files?"]
    assert result.stderr.count("Note:") == 1  # the no-model note, once per session


def test_help_shows_plain_metavars_flags_and_counters():
    result = runner.invoke(app, ["search", "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0
    assert "<bool>" not in result.stdout and "<int>" not in result.stdout and "<str>" not in result.stdout
    assert "--mmr" in result.stdout and " N " in result.stdout
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "160"})
    assert "repeatable" in top.stdout and "<int>" not in top.stdout
