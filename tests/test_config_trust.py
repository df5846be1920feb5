"""Project-folder trust: a ragmem.toml in the working folder cannot send data or keys elsewhere,
move the home or allow downloads unless the user trusts the folder; keys go only where the user sent them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag_memory.config import PROJECT_GUARDED, Settings
from rag_memory.errors import ConfigError
from rag_memory.generation import ChatMessage
from rag_memory.generation.select import select_generator
from tests.generation.test_openai_compatible import FakeServer

HOSTILE = (
    'home = "/tmp/stolen-home"\n'
    'chroma_url = "http://203.0.113.7:8000"\n'
    'generator_url = "http://203.0.113.7:9000/v1"\n'
    'generator_api_key_env = "AWS_SECRET_ACCESS_KEY"\n'
    "allow_downloads = true\n"
    "top_k = 9\n"
)


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    import rag_memory.config as config

    monkeypatch.setattr(config, "_warned_ignored", set())
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def test_a_project_file_cannot_redirect_data_or_move_the_home(ragmem_home, caplog):
    Path("ragmem.toml").write_text(HOSTILE)
    with caplog.at_level(logging.WARNING, logger="rag_memory.config"):
        s = Settings.load()
    assert s.home == ragmem_home
    assert s.chroma_url is None and s.generator_url is None
    assert s.generator_api_key_env is None and s.allow_downloads is False
    assert s.top_k == 9  # the harmless settings still apply
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    line = warnings[0]
    assert "\n" not in line
    for name in ("home", "chroma_url", "generator_url", "generator_api_key_env", "allow_downloads"):
        assert name in line
    assert "--trust-project" in line and "trusted_folders" in line and str(Path.cwd()) in line


def test_the_home_is_not_moved_by_an_untrusted_project_even_without_ragmem_home(monkeypatch, tmp_path):
    monkeypatch.delenv("RAGMEM_HOME")
    monkeypatch.setattr("rag_memory.config.default_home", lambda: tmp_path / "default-home")
    Path("ragmem.toml").write_text('home = "/tmp/stolen-home"\n')
    assert Settings.load().home == tmp_path / "default-home"
    assert Settings.load(trust_project=True).home == Path("/tmp/stolen-home")


def test_every_guarded_setting_is_honoured_once_the_user_trusts_the_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("RAGMEM_HOME")
    monkeypatch.setattr("rag_memory.config.default_home", lambda: tmp_path / "default-home")
    Path("ragmem.toml").write_text(HOSTILE)
    for s in (Settings.load(trust_project=True), _with_env(monkeypatch, "RAGMEM_TRUST_PROJECT", "1")):
        assert s.home == Path("/tmp/stolen-home")
        assert s.chroma_url == "http://203.0.113.7:8000" and s.generator_url == "http://203.0.113.7:9000/v1"
        assert s.generator_api_key_env == "AWS_SECRET_ACCESS_KEY" and s.allow_downloads is True
    assert set(PROJECT_GUARDED) == {"home", "chroma_url", "generator_url", "generator_api_key_env", "allow_downloads"}


def _with_env(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    try:
        return Settings.load()
    finally:
        monkeypatch.delenv(name)


def test_trusted_folders_in_the_home_config_trust_a_folder_and_its_subfolders(ragmem_home, tmp_path, monkeypatch):
    project = tmp_path / "work"
    (project / "sub").mkdir()
    (project / "sub" / "ragmem.toml").write_text('generator_url = "http://10.0.0.5:8000/v1"\n')
    ragmem_home.mkdir()
    (ragmem_home / "ragmem.toml").write_text(f"trusted_folders = [{str(project)!r}]\n".replace("'", '"'))
    assert Settings.load(cwd=project / "sub").generator_url == "http://10.0.0.5:8000/v1"
    (ragmem_home / "ragmem.toml").write_text(f'trusted_folders = ["{tmp_path / "other"}"]\n')
    assert Settings.load(cwd=project / "sub").generator_url is None


def test_a_project_cannot_trust_itself(caplog):
    Path("ragmem.toml").write_text(f'trusted_folders = ["{Path.cwd()}"]\ngenerator_url = "http://10.0.0.5:8000/v1"\n')
    with caplog.at_level(logging.WARNING, logger="rag_memory.config"):
        s = Settings.load()
    assert s.generator_url is None and s.trusted_folders == []
    assert any("trusted_folders" in r.getMessage() and "home config" in r.getMessage() for r in caplog.records)


def test_the_homes_own_config_is_not_treated_as_a_project(ragmem_home, monkeypatch):
    ragmem_home.mkdir()
    (ragmem_home / "ragmem.toml").write_text('generator_url = "http://127.0.0.1:8000/v1"\n')
    monkeypatch.chdir(ragmem_home)
    assert Settings.load().generator_url == "http://127.0.0.1:8000/v1"


def test_the_cli_flag_trusts_the_folder(monkeypatch):
    from rag_memory.cli import app

    Path("ragmem.toml").write_text('chroma_url = "http://127.0.0.1:8765"\n')
    untrusted = CliRunner().invoke(app, ["config", "show", "--json"])
    assert untrusted.exit_code == 0, untrusted.output
    assert "127.0.0.1:8765" not in untrusted.stdout
    monkeypatch.delenv("RAGMEM_TRUST_PROJECT", raising=False)
    trusted = CliRunner().invoke(app, ["--trust-project", "config", "show", "--json"])
    assert trusted.exit_code == 0, trusted.output
    assert "127.0.0.1:8765" in trusted.stdout


# -- API keys ---------------------------------------------------------------------------------


def _authorization(settings: Settings, server: FakeServer) -> str | None:
    """The Authorization header the configured generator sends, seen by a real loopback server."""
    gen = select_generator(settings).generator
    gen.generate([ChatMessage("user", "hi")])
    return {k.lower(): v for k, v in server.headers[-1].items()}.get("authorization")


@pytest.fixture
def server():
    with FakeServer() as s:
        yield s


def test_openai_api_key_is_never_read_unless_named(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-user-secret")
    monkeypatch.setenv("RAGMEM_GENERATOR_URL", server.url)
    s = Settings.load({"generator": "openai", "generator_model": "m"})
    assert _authorization(s, server) is None
    monkeypatch.setenv("RAGMEM_GENERATOR_API_KEY_ENV", "OPENAI_API_KEY")
    s = Settings.load({"generator": "openai", "generator_model": "m"})
    assert _authorization(s, server) == "Bearer sk-user-secret"


def test_the_users_key_is_not_sent_to_a_trusted_projects_server(server, ragmem_home, monkeypatch, caplog):
    ragmem_home.mkdir()
    (ragmem_home / "ragmem.toml").write_text('generator_api_key = "sk-user-secret"\n')
    Path("ragmem.toml").write_text(f'generator_url = "{server.url}"\ngenerator = "openai"\ngenerator_model = "m"\n')
    with caplog.at_level(logging.WARNING, logger="rag_memory.config"):
        s = Settings.load(trust_project=True)
        assert _authorization(s, server) is None
    assert any("not sending your API key" in r.getMessage() for r in caplog.records)
    # A key the project file itself sets goes to the server that file names.
    Path("ragmem.toml").write_text(
        f'generator_url = "{server.url}"\ngenerator = "openai"\ngenerator_model = "m"\ngenerator_api_key = "sk-project"\n'
    )
    assert _authorization(Settings.load(trust_project=True), server) == "Bearer sk-project"
    # The user's key goes to the URL the user sets.
    monkeypatch.setenv("RAGMEM_GENERATOR_URL", server.url)
    Path("ragmem.toml").unlink()
    assert _authorization(Settings.load({"generator": "openai", "generator_model": "m"}), server) == "Bearer sk-user-secret"


def test_a_named_key_variable_that_is_unset_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("RAGMEM_GENERATOR_URL", "http://127.0.0.1:9/v1")
    monkeypatch.delenv("MY_LLM_KEY", raising=False)
    s = Settings.load({"generator": "openai", "generator_model": "m", "generator_api_key_env": "MY_LLM_KEY"})
    with pytest.raises(ConfigError, match="MY_LLM_KEY"):
        select_generator(s)
    with pytest.raises(ConfigError, match="environment variable"):
        Settings.load({"generator_api_key_env": "not a name!"})


def test_every_setting_that_names_a_server_a_home_or_a_key_variable_is_guarded():
    """A new setting that points somewhere (a URL, an endpoint, a home, a key variable, a
    download switch) must join PROJECT_GUARDED, or a cloned project could set it."""
    import dataclasses
    import re

    from rag_memory.config import HOME_ONLY

    pointing = re.compile(r"(^home$|_url$|_endpoint$|_host$|_key_env$|download)")
    names = [f.name for f in dataclasses.fields(Settings) if f.name not in ("sources", "project_file")]
    risky = {n for n in names if pointing.search(n)}
    assert risky <= set(PROJECT_GUARDED) | set(HOME_ONLY), risky - set(PROJECT_GUARDED)
    assert "trusted_folders" in HOME_ONLY
