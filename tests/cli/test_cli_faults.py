"""Faults a new user meets at the CLI: a home that is a file, nothing to ingest, a file too big."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag_memory.cli import app
from rag_memory.cli.app import EXIT_NOTHING_TO_INGEST, EXIT_SOME_FILES_FAILED

runner = CliRunner()


@pytest.fixture(autouse=True)
def _fast_embedder(monkeypatch):
    monkeypatch.setenv("RAGMEM_EMBEDDER", "hashing:64")


COMMANDS = [
    ("ingest", "{docs}"),
    ("status",),
    ("search", "删除"),
    ("ask", "What is deleted?", "--generator", "extractive"),
    ("memory", "list"),
    ("memory", "forget", "--user", "alice"),
    ("config", "show"),
]


@pytest.mark.parametrize("below", [False, True], ids=["home-is-a-file", "home-below-a-file"])
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_home_that_is_a_file_is_one_clear_error_from_every_command(tmp_path, monkeypatch, command, below):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("删除的文件会被移除。", encoding="utf-8")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the home should be", encoding="utf-8")
    home = blocker / "ragmem" if below else blocker
    monkeypatch.setenv("RAGMEM_HOME", str(home))

    result = runner.invoke(app, [part.format(docs=docs) for part in command])

    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    err = " ".join(result.stderr.split())
    assert err.startswith("Error:") and str(blocker) in err and "is a file, not a folder" in err, err
    assert "Traceback" not in result.output
    assert blocker.read_text(encoding="utf-8") == "a file where the home should be"


def test_an_empty_folder_says_there_is_nothing_to_ingest(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["ingest", str(empty)])
    assert result.exit_code == EXIT_NOTHING_TO_INGEST
    assert "Nothing to ingest" in result.stderr and str(empty) in " ".join(result.stderr.split())


def test_a_folder_of_unsupported_files_lists_what_was_skipped_and_why(tmp_path):
    root = tmp_path / "pictures"
    root.mkdir()
    (root / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (root / "tool.exe").write_bytes(b"MZ" + bytes(64))
    result = runner.invoke(app, ["ingest", str(root)])
    assert result.exit_code == EXIT_NOTHING_TO_INGEST
    out = " ".join(result.stdout.split())
    assert "Skipped 2 files" in out and "photo.png: unsupported file type" in out and "tool.exe" in out
    data = json.loads(runner.invoke(app, ["ingest", str(root), "--json"]).stdout)
    assert sorted(Path(s["path"]).name for s in data["skipped"]) == ["photo.png", "tool.exe"]


def test_a_file_over_the_size_limit_is_refused_naming_the_limit(tmp_path, monkeypatch):
    root = tmp_path / "docs"
    root.mkdir()
    (root / "small.txt").write_text("A small file about rivers.", encoding="utf-8")
    (root / "big.txt").write_text("Big file line about lakes.\n" * 400, encoding="utf-8")  # about 10 kB
    monkeypatch.setenv("RAGMEM_MAX_FILE_MB", "0.005")
    result = runner.invoke(app, ["ingest", str(root), "--json"])
    assert result.exit_code == EXIT_SOME_FILES_FAILED
    data = json.loads(result.stdout)
    assert data["added"] == 1
    [failure] = data["failed"]
    assert Path(failure["path"]).name == "big.txt"
    assert "over the size limit of 0.005 MB (setting max_file_mb)" in failure["reason"]
