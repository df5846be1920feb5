"""`ragmem ingest / search / status / config show` through typer's CliRunner."""

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
def _fast_embedder(monkeypatch):
    monkeypatch.setenv("RAGMEM_EMBEDDER", "hashing:64")


def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "sync.md").write_text(
        "# Sync\n\nWhen a file is deleted, re-ingest removes its chunks from the knowledge base.", encoding="utf-8"
    )
    (root / "zh.txt").write_text("删除的文件在重新导入时会被移除。", encoding="utf-8")
    return root


def run(*args: str):
    result = runner.invoke(app, list(args))
    return result


def test_ingest_json_summary_and_second_run_adds_nothing(tmp_path):
    root = docs(tmp_path)
    first = run("ingest", str(root), "--json")
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    assert {"added", "updated", "removed", "unchanged", "chunks_added", "chunks_removed", "failed", "seconds"} <= set(data)
    assert data["added"] == 2 and data["chunks_added"] >= 2 and data["failed"] == []
    second = json.loads(run("ingest", str(root), "--json").stdout)
    assert (second["added"], second["updated"], second["chunks_added"], second["unchanged"]) == (0, 0, 0, 2)


def test_ingest_exits_3_and_lists_failed_files(tmp_path):
    root = docs(tmp_path)
    (root / "bad.pdf").write_bytes(b"not a pdf at all")
    result = run("ingest", str(root), "--json")
    assert result.exit_code == 3
    data = json.loads(result.stdout)
    assert [Path(f["path"]).name for f in data["failed"]] == ["bad.pdf"]
    assert data["added"] == 2
    table = run("ingest", str(root))
    assert table.exit_code == 3 and "bad.pdf" in table.stdout


def test_ingest_of_a_missing_path_exits_1_with_a_clear_error(tmp_path):
    result = run("ingest", str(tmp_path / "missing"))
    assert result.exit_code == 1
    assert "Error:" in result.stderr and "missing" in result.stderr


def test_dry_run_lists_what_would_change(tmp_path):
    root = docs(tmp_path)
    result = run("ingest", str(root), "--dry-run")
    assert result.exit_code == 0
    assert "would add" in result.stdout and "sync.md" in result.stdout
    status = json.loads(run("status", "--json").stdout)
    assert status["chunks"] == 0 and status["documents"] == 0


def test_search_json_has_ranked_hits_with_sources(tmp_path):
    root = docs(tmp_path)
    run("ingest", str(root))
    result = run("search", "deleted file re-ingest chunks", "-k", "2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["query"] == "deleted file re-ingest chunks"
    assert Path(data["hits"][0]["source"]).name == "sync.md"
    assert {"score", "source", "page", "chunk_id", "text"} <= set(data["hits"][0])
    assert data["hits"][0]["score"] >= data["hits"][-1]["score"]
    zh = json.loads(run("search", "删除的文件", "--json").stdout)
    assert Path(zh["hits"][0]["source"]).name == "zh.txt"


def test_search_prints_score_source_and_excerpt(tmp_path):
    root = docs(tmp_path)
    run("ingest", str(root))
    result = run("search", "deleted file", "-k", "1")
    assert result.exit_code == 0
    assert "sync.md" in result.stdout and "re-ingest removes its chunks" in result.stdout


def test_search_on_an_empty_knowledge_base_says_to_ingest(tmp_path):
    result = run("search", "anything")
    assert result.exit_code == 0
    assert "ragmem ingest" in result.stderr


def test_status_json_reports_the_collection(tmp_path, ragmem_home):
    run("ingest", str(docs(tmp_path)))
    data = json.loads(run("status", "--json").stdout)
    assert data["collection"] == "knowledge"
    assert data["embedder"] == "hashing:64"
    assert data["documents"] == 2 and data["chunks"] >= 2
    assert data["keyword_index_chunks"] == data["chunks"]
    assert data["store_path"] == str(ragmem_home / "chroma")
    assert data["last_ingest"]


def test_embedder_mismatch_from_the_cli_says_how_to_rebuild(tmp_path, monkeypatch):
    root = docs(tmp_path)
    run("ingest", str(root))
    monkeypatch.setenv("RAGMEM_EMBEDDER", "hashing:32")
    result = run("search", "deleted")
    assert result.exit_code == 1 and "--rebuild" in result.stderr
    rebuilt = run("ingest", str(root), "--rebuild", "--json")
    assert rebuilt.exit_code == 0 and json.loads(rebuilt.stdout)["added"] == 2


def test_config_show_says_where_each_value_came_from(monkeypatch):
    Path("ragmem.toml").write_text("top_k = 8\n")
    result = run("config", "show", "--json", "--collection", "notes")
    data = json.loads(result.stdout)
    assert data["top_k"] == {"value": 8, "source": str(Path.cwd() / "ragmem.toml")}
    assert data["collection"] == {"value": "notes", "source": "cli"}
    assert data["embedder"]["source"] == "env RAGMEM_EMBEDDER"
    assert data["chunk_overlap"]["source"] == "default"


def test_bad_setting_is_an_error_not_a_traceback(monkeypatch):
    monkeypatch.setenv("RAGMEM_TOP_K", "lots")
    result = run("status")
    assert result.exit_code == 1 and "top_k" in result.stderr and "Traceback" not in result.output


def test_help_imports_no_heavy_module():
    code = (
        "import sys, runpy\n"
        "sys.argv = ['ragmem', '--help']\n"
        "try:\n"
        "    from rag_memory.cli import app; app()\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'chromadb', 'sentence_transformers', 'unstructured',"
        " 'fastapi', 'uvicorn', 'openai', 'matplotlib')"
        " if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def _documented_hit_fields() -> dict[str, str]:
    """The ``hits[].X`` rows of the search --json table in docs/cli.md: field -> meaning."""
    import re

    text = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    section = text.split("### search --json", 1)[1].split("\n## ", 1)[0]
    return {m.group(1): m.group(2) for m in re.finditer(r"^\| `hits\[\]\.(\w+)` \| [^|]+ \| ([^|]+) \|$", section, re.M)}


def test_every_score_the_docs_name_exists_with_that_meaning(tmp_path):
    documented = _documented_hit_fields()
    scores = {name for name in documented if name.endswith("score") or name == "coverage"}
    assert {"score", "fused_score", "dense_score", "bm25_score", "rerank_score", "coverage"} <= scores
    root = docs(tmp_path)
    run("ingest", str(root))
    by_mode = {}
    for mode in ("hybrid", "dense", "bm25"):
        result = run("search", "deleted file re-ingest chunks", "--mode", mode, "--json")
        assert result.exit_code == 0, result.output
        by_mode[mode] = json.loads(result.stdout)["hits"]
        for hit in by_mode[mode]:
            assert set(documented) <= set(hit), f"search --json lacks {set(documented) - set(hit)}"
    # "score" is what the mode ranks by, as the docs say; the others keep their own meaning.
    top = by_mode["hybrid"][0]
    assert top["score"] == top["fused_score"] == 1.0
    assert -1.0 <= top["dense_score"] <= 1.0 and top["bm25_score"] > 0 and 0 <= top["coverage"] <= 1
    assert all(h["score"] == h["dense_score"] and h["fused_score"] is None for h in by_mode["dense"])
    assert all(h["score"] == h["bm25_score"] and h["fused_score"] is None for h in by_mode["bm25"])
    # --min-score filters on "score": in hybrid mode the fused score, so a floor of 1 keeps the best hit only.
    best = json.loads(run("search", "deleted file re-ingest chunks", "--min-score", "1", "--json").stdout)["hits"]
    assert [h["chunk_id"] for h in best] == [top["chunk_id"]]
