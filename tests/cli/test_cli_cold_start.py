"""What a fresh `ragmem search` process loads and how it ends (its start-up is the wait).

Speed itself is measured by benchmarks/cold_start.py; these pin the behaviour behind it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag_memory.cli import app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ingested(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGMEM_EMBEDDER", "hashing:64")
    root = tmp_path / "docs"
    root.mkdir()
    (root / "sync.md").write_text("# Sync\n\nRe-ingest removes a deleted file's chunks.", encoding="utf-8")
    (root / "zh.txt").write_text("删除的文件在重新导入时会被移除。记忆可以导出。", encoding="utf-8")
    result = CliRunner().invoke(app, ["ingest", str(root)])
    assert result.exit_code == 0, result.output
    return root


def fresh(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def test_search_loads_no_ingest_machinery_progress_bars_or_chroma_extras(ingested, tmp_path):
    out = fresh(
        """
        import sys
        sys.argv = ["app-embedding-ragmem", "search", "删除的文件"]
        from rag_memory.cli import app
        try:
            app()
        except SystemExit as exc:
            assert not exc.code, exc.code
        loaded = [m for m in ("rag_memory.ingest.run", "rag_memory.ingest.loaders", "rich.progress", "rich.table",
                              "chromadb.utils.embedding_functions", "jsonschema", "torch", "transformers")
                  if m in sys.modules]
        print("LOADED", loaded, "chromadb" in sys.modules)
        """,
        tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "zh.txt" in out.stdout  # it did search the store
    assert "LOADED [] True" in out.stdout, out.stdout + out.stderr


def test_the_ragmem_process_prints_everything_then_skips_the_interpreter_teardown(ingested, tmp_path):
    # As the `ragmem` script: atexit handlers run and the output is complete, but objects are
    # not torn down (the teardown of chromadb and friends is a fifth of a search's CPU time).
    out = fresh(
        """
        import atexit, runpy, sys

        class Finalised:
            def __del__(self):
                sys.__stdout__.write("TORN DOWN\\n")

        keep = Finalised()
        atexit.register(lambda: print("ATEXIT RAN", file=sys.stderr))
        sys.argv = ["/usr/local/bin/ragmem", "search", "删除的文件 导出", "--json", "-k", "2"]
        runpy.run_module("rag_memory.cli", run_name="__main__")
        """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)  # complete: flushed before the process ended
    assert data["query"] == "删除的文件 导出" and Path(data["hits"][0]["source"]).name == "zh.txt"
    assert "ATEXIT RAN" in out.stderr
    assert "TORN DOWN" not in out.stdout


def test_a_program_calling_the_app_keeps_its_process(ingested):
    # In-process (tests, an app embedding the CLI), search returns instead of ending the process.
    result = CliRunner().invoke(app, ["search", "记忆 导出", "--json"])
    assert result.exit_code == 0, result.output
    assert Path(json.loads(result.stdout)["hits"][0]["source"]).name == "zh.txt"
