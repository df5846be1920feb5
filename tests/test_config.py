from __future__ import annotations

from pathlib import Path

import pytest

from rag_memory.config import Settings
from rag_memory.errors import ConfigError


def test_defaults_come_from_nowhere_else(ragmem_home):
    s = Settings.load()
    assert s.home == ragmem_home
    assert s.sources["home"] == "env RAGMEM_HOME"
    assert s.embedder == "all-MiniLM-L6-v2" and s.sources["embedder"] == "default"
    assert s.chroma_path == ragmem_home / "chroma"


def test_precedence_is_default_home_file_project_file_env_cli(ragmem_home, monkeypatch):
    ragmem_home.mkdir(parents=True)
    (ragmem_home / "ragmem.toml").write_text('collection = "from-home"\ntop_k = 7\nchunk_tokens = 100\n')
    Path("ragmem.toml").write_text('[retrieval]\ntop_k = 9\nmin_score = 0.25\n')
    monkeypatch.setenv("RAGMEM_MIN_SCORE", "0.5")
    monkeypatch.setenv("RAGMEM_CHUNK_TOKENS", "120")
    s = Settings.load({"chunk_tokens": 150, "top_k": None})
    assert (s.collection, s.top_k, s.min_score, s.chunk_tokens) == ("from-home", 9, 0.5, 150)
    assert s.sources["collection"] == str(ragmem_home / "ragmem.toml")
    assert s.sources["top_k"] == str(Path.cwd() / "ragmem.toml")
    assert s.sources["min_score"] == "env RAGMEM_MIN_SCORE"
    assert s.sources["chunk_tokens"] == "cli"


def test_home_can_be_moved_by_env_and_takes_its_config_along(tmp_path, monkeypatch):
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "ragmem.toml").write_text('collection = "moved"\n')
    monkeypatch.setenv("RAGMEM_HOME", str(other))
    s = Settings.load()
    assert s.home == other and s.collection == "moved"


def test_lists_and_optional_values_parse_from_env(monkeypatch):
    monkeypatch.setenv("RAGMEM_EXCLUDE", "*.log, drafts/*")
    monkeypatch.setenv("RAGMEM_CHROMA_URL", "http://127.0.0.1:9000")
    s = Settings.load()
    assert s.exclude == ["*.log", "drafts/*"]
    assert s.chroma_url == "http://127.0.0.1:9000"
    assert s.store_location == "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("RAGMEM_TOP_K", "many", "top_k"),
        ("RAGMEM_TOP_K", "0", "top_k must be at least 1"),
        ("RAGMEM_MIN_SCORE", "-3", "min_score"),
        ("RAGMEM_RETRIEVAL_MODE", "fuzzy", "retrieval_mode"),
        ("RAGMEM_CHROMA_URL", "localhost:8000", "http://"),
        ("RAGMEM_COLLECTION", "a", "collection name"),
        ("RAGMEM_CHUNK_OVERLAP", "500", "chunk_overlap"),
    ],
)
def test_bad_values_name_the_setting(monkeypatch, env, value, message):
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=message):
        Settings.load()


def test_unknown_or_broken_config_file_is_refused_with_its_path():
    Path("ragmem.toml").write_text("colection = 'typo'\n")
    with pytest.raises(ConfigError, match="colection.*Valid settings"):
        Settings.load()
    Path("ragmem.toml").write_text("top_k = [\n")
    with pytest.raises(ConfigError, match="ragmem.toml is not valid TOML"):
        Settings.load()


def test_an_env_error_names_the_variable(monkeypatch):
    monkeypatch.setenv("RAGMEM_TOP_K", "abc")
    with pytest.raises(ConfigError, match="RAGMEM_TOP_K"):
        Settings.load()


def test_choosing_only_a_small_chunk_size_scales_the_overlap():
    s = Settings.load({"chunk_tokens": 50})
    assert (s.chunk_tokens, s.chunk_overlap) == (50, 12)
    assert s.sources["chunk_overlap"] == "default, scaled to chunk_tokens"
    with pytest.raises(ConfigError, match="chunk_overlap"):
        Settings.load({"chunk_tokens": 50, "chunk_overlap": 40})
