"""``ragmem serve`` start-up: keys from flags and the keys file, and no open bind without keys."""

from __future__ import annotations

import stat

import pytest
from typer.testing import CliRunner

from rag_memory.cli import app
from rag_memory.errors import ConfigError
from rag_memory.server.auth import ApiKeys, keys_file, new_key

runner = CliRunner()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::"])
def test_serve_refuses_a_non_loopback_address_without_api_keys(host):
    result = runner.invoke(app, ["serve", "--host", host, "--embedder", "hashing:64"])
    assert result.exit_code != 0
    assert f"refusing to listen on {host} without API keys" in result.output
    assert "--new-key" in result.output


def test_new_key_writes_a_private_keys_file_the_server_reads(ragmem_home):
    result = runner.invoke(app, ["serve", "--new-key", "王芳"])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    path = keys_file(ragmem_home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = new_key(path, "bob")
    keys = ApiKeys.from_file(path)
    assert keys.user_for(key) == "王芳" and keys.user_for(second) == "bob"
    assert keys.user_for(key[:-1]) is None and keys.user_for("") is None
    assert key not in repr(keys)  # only hashes are kept


def test_bad_keys_are_refused_without_echoing_them(tmp_path):
    with pytest.raises(ConfigError, match="at least 16") as err:
        ApiKeys.from_flags(["short=alice"])
    assert "short" not in str(err.value)
    with pytest.raises(ConfigError, match="KEY=USER"):
        ApiKeys.from_flags(["a-key-without-any-user-given"])
    with pytest.raises(ConfigError, match="two users"):
        ApiKeys.from_flags(["k" * 20 + "=alice", "k" * 20 + "=bob"])
    broken = tmp_path / "keys.toml"
    broken.write_text("[keys\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=str(broken)):
        ApiKeys.from_file(broken)


@pytest.mark.slow
def test_ragmem_serve_starts_answers_and_stops_on_sigterm(tmp_path, ragmem_home):
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    import httpx

    key = "dave-key-0123456789abcdef"
    env = {**os.environ, "RAGMEM_EMBEDDER": "hashing:64", "RAGMEM_GENERATOR": "extractive"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag_memory.cli", "serve", "--port", "0", "--api-key", f"{key}=dave"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        url, lines, deadline = None, [], time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            lines.append(line)
            found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
            url = found.group(1) if found else None
        assert url, "".join(lines)
        assert "1 API keys for users dave" in "".join(lines) and key not in "".join(lines)
        assert httpx.get(url + "/healthz").json() == {"status": "ok"}
        status = httpx.get(url + "/api/status", headers={"Authorization": f"Bearer {key}"}).json()
        assert status["user"] == "dave" and status["generator"]["backend"] == "extractive"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert proc.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in out, out
    assert key not in out


def test_a_model_that_cannot_load_is_an_error_line_before_listening(tmp_path):
    result = runner.invoke(app, ["serve", "--embedder", "hashing:64", "--generator", "transformers",
                                 "--model", str(tmp_path / "no-such-model")])
    assert result.exit_code == 1
    assert "Error:" in result.output and "no-such-model" in result.output
    assert "Traceback" not in result.output
