"""Nothing reaches the network: `ragmem ingest`, `search`, `ask` and `chat`, run as real
processes with the real MiniLM embedder and unstructured's loaders, open no connection and
resolve no name other than loopback, with no offline or no-telemetry variable set by the caller.

The pytest fixture that blocks sockets only covers this process, so each command runs under a
``sitecustomize`` that patches the socket module before anything else is imported: every
non-loopback ``connect``/``connect_ex``/``getaddrinfo``/``create_connection`` is written to a log
and refused. Also: a model id missing from the cache is an error naming ``ragmem models pull``,
never a hub look-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers.pdf import write_pdf

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

GUARD = textwrap.dedent(
    '''
    import ipaddress, json, os, socket

    _LOG = os.environ["RAGMEM_TEST_NET_LOG"]

    def _local(host):
        if host in (None, "", "localhost") or isinstance(host, bytes):
            return True
        try:
            return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            return False

    def _refuse(what, target):
        with open(_LOG, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"call": what, "target": repr(target), "pid": os.getpid()}) + "\\n")
        raise OSError(101, f"network blocked by the test: {what} {target!r}")

    _connect, _connect_ex, _gai, _cc = (
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo, socket.create_connection)

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
            _refuse("connect", address)
        return _connect(self, address)

    def connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
            _refuse("connect_ex", address)
        return _connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _local(host):
            _refuse("getaddrinfo", host)
        return _gai(host, *args, **kwargs)

    def create_connection(address, *args, **kwargs):
        if not _local(address[0]):
            _refuse("create_connection", address)
        return _cc(address, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
    socket.getaddrinfo, socket.create_connection = getaddrinfo, create_connection
    '''
)

# Variables that would hide a phone-home: ragmem must not depend on the caller setting them.
SCRUBBED = (
    "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "DO_NOT_TRACK", "SCARF_NO_ANALYTICS",
    "ANONYMIZED_TELEMETRY", "HF_HUB_DISABLE_TELEMETRY", "CHROMA_TELEMETRY", "UNSTRUCTURED_TELEMETRY",
)


@pytest.fixture
def guarded(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(GUARD, encoding="utf-8")
    log = tmp_path / "net.log"
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED and not k.startswith("RAGMEM_")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(site), str(REPO)]),
        RAGMEM_HOME=str(tmp_path / "home"),
        RAGMEM_TEST_NET_LOG=str(log),
        HF_HOME=str(tmp_path / "hf"),  # an empty cache: nothing is found there, so a download would be tried
        HOME=str(tmp_path / "user"),
    )

    def run(*args: str, stdin: str | None = None, check: bool = True, **extra: str):
        result = subprocess.run(
            [sys.executable, "-m", "rag_memory.cli", *args],
            input=stdin, capture_output=True, text=True, timeout=300, env={**env, **extra}, cwd=tmp_path,
        )
        if check:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    def attempts() -> list[dict]:
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]

    run.attempts = attempts
    return run


def test_the_guard_itself_records_and_refuses(guarded, tmp_path):
    code = "import urllib.request\ntry:\n urllib.request.urlopen('http://example.com', timeout=2)\nexcept OSError as e:\n print('refused', e)"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "RAGMEM_TEST_NET_LOG": str(tmp_path / "net.log")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert "refused" in out.stdout
    assert guarded.attempts() and guarded.attempts()[0]["call"] in ("getaddrinfo", "create_connection")


def test_ingest_search_ask_and_chat_open_no_connection(guarded, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "backup.md").write_text("# Backups\n\nThe backup job runs every Sunday at 2 am.\n", encoding="utf-8")
    (docs / "page.html").write_text(
        "<html><head><title>Trains</title></head><body><h1>Trains</h1><p>The night train to Vienna leaves at"
        " 22:10 from platform 4.</p></body></html>",
        encoding="utf-8",
    )
    (docs / "周会.txt").write_text("我们组的周会改到周四下午三点了。会议室在三楼。", encoding="utf-8")
    write_pdf(docs / "manual.pdf", ["The pump must be serviced every 500 hours.", "Use only approved oil."])
    import docx

    document = docx.Document()
    document.add_heading("Parking", level=1)
    document.add_paragraph("Visitors park in the north lot after 6 pm.")
    document.save(docs / "parking.docx")

    ingest = guarded("ingest", str(docs), "--json")
    report = json.loads(ingest.stdout)
    assert report["added"] == 5 and report["failed"] == [], report
    search = guarded("search", "When does the backup job run?", "--json")
    assert "backup.md" in search.stdout
    ask = guarded("ask", "When does the night train leave?", "--session", "s1")
    assert "22:10" in ask.stdout
    chat = guarded("chat", "--session", "c1", stdin="Where do visitors park?\n周会改到周四几点？\n/exit\n")
    assert "north lot" in chat.stdout and "下午三点" in chat.stdout
    assert guarded.attempts() == []

    # A model missing from the (empty) cache is an error naming the explicit way to fetch it,
    # never a hub look-up (tests/generation/test_downloads.py: allow_downloads is what permits one).
    gen = guarded("ask", "capital?", "--generator", "transformers", "--model", "Qwen/Qwen2.5-0.5B-Instruct", check=False)
    assert gen.returncode != 0
    assert "ragmem models pull" in gen.stderr and "allow_downloads" in gen.stderr
    emb = guarded("ingest", str(docs), "--collection", "other", "--embedder",
                  "sentence-transformers/paraphrase-MiniLM-L3-v2", check=False)
    assert emb.returncode != 0 and "ragmem models pull" in emb.stderr
    assert guarded.attempts() == []
