"""The home is private to its owner: folders 0700, files 0600, whatever the umask; an existing
home that others can read is named in one warning. (Tests run as root, so modes are checked,
not access.)"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag_memory.cli import app
from rag_memory.home import private_dir, write_private
from rag_memory.sqlite import Database

runner = CliRunner()


@pytest.fixture
def open_umask():
    """The worst umask a user can have: everything the process creates is world-writable."""
    old = os.umask(0)
    yield
    os.umask(old)


@pytest.fixture(autouse=True)
def _fresh_warning(monkeypatch):
    import rag_memory.home as home

    monkeypatch.setattr(home, "_warned", set())


def modes(root: Path) -> dict[str, str]:
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            p = Path(folder, name)
            out[str(p.relative_to(root))] = oct(stat.S_IMODE(p.lstat().st_mode))
    out["."] = oct(stat.S_IMODE(root.stat().st_mode))
    return out


def test_everything_ingest_ask_and_memory_write_is_owner_only(ragmem_home, tmp_path, monkeypatch, open_umask):
    monkeypatch.setenv("RAGMEM_EMBEDDER", "hashing")
    monkeypatch.setenv("RAGMEM_GENERATOR", "extractive")
    monkeypatch.setenv("RAGMEM_RELEVANCE_GATE", "0.1")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.md").write_text("The backup job runs every Sunday at 2 am.\n", encoding="utf-8")
    (docs / "zh.txt").write_text("我们组的周会改到周四下午了。", encoding="utf-8")
    for args in (
        ["ingest", str(docs)],
        ["ask", "When does the backup job run?", "--session", "s1"],
        ["ask", "周会什么时候开？", "--session", "s2"],
        ["search", "backup"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    found = modes(ragmem_home)
    assert any(name.startswith("chroma/") and name.endswith(".bin") for name in found), found  # segment files
    assert {"manifest.sqlite3", "memory.sqlite3", "lexical.sqlite3", "chroma/chroma.sqlite3"} <= set(found)
    for name, mode in found.items():
        is_dir = (ragmem_home / name).is_dir()
        assert mode == ("0o700" if is_dir else "0o600"), (name, mode)


def test_sqlite_files_and_their_wal_are_owner_only_while_open(tmp_path, open_umask):
    db = Database(tmp_path / "new" / "deep" / "x.sqlite3", "a test file", migrations=[
        ("0001", "CREATE TABLE IF NOT EXISTS t (v TEXT)"),
    ])
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES ('secret')")
    files = modes(tmp_path / "new")
    assert files["deep/x.sqlite3-wal"] == "0o600" and files["deep/x.sqlite3"] == "0o600"
    assert files["."] == files["deep"] == "0o700"
    db.close()


def test_an_existing_shared_home_gets_one_warning_naming_the_fix(ragmem_home, caplog):
    ragmem_home.mkdir(mode=0o755)
    os.chmod(ragmem_home, 0o755)
    with caplog.at_level(logging.WARNING, logger="rag_memory.home"):
        Database(ragmem_home / "a.sqlite3", "a test file").conn.execute("SELECT 1")
        assert len(caplog.records) == 1  # opening a store in it warns
        Database(ragmem_home / "b.sqlite3", "a test file").conn.execute("SELECT 1")
        private_dir(ragmem_home)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert str(ragmem_home) in warnings[0] and "chmod -R go-rwx" in warnings[0]
    assert stat.S_IMODE(ragmem_home.stat().st_mode) == 0o755  # left as the user made it


def test_a_private_home_gets_no_warning(ragmem_home, caplog):
    ragmem_home.mkdir(mode=0o700)
    with caplog.at_level(logging.WARNING, logger="rag_memory.home"):
        Database(ragmem_home / "a.sqlite3", "a test file").conn.execute("SELECT 1")
    assert not caplog.records


def test_write_private_makes_a_0600_file_atomically(tmp_path, open_umask):
    target = tmp_path / "keys" / "api-keys.toml"
    write_private(target, 'alice = "k1"\n')
    write_private(target, 'alice = "k2"\n')
    assert target.read_text() == 'alice = "k2"\n'
    assert oct(stat.S_IMODE(target.stat().st_mode)) == "0o600"
    assert oct(stat.S_IMODE(target.parent.stat().st_mode)) == "0o700"
    assert [p.name for p in target.parent.iterdir()] == ["api-keys.toml"]
