"""Every test runs offline, in a temp ragmem home, from an empty working folder."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("SCARF_NO_ANALYTICS", "true")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class NetworkBlocked(RuntimeError):
    pass


def _is_local(address) -> bool:
    if isinstance(address, str | bytes):  # AF_UNIX
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _block_network(monkeypatch):
    """Any connection that is not to loopback fails loudly (and is recorded)."""
    attempts: list = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def connect(self, address):
        if not _is_local(address):
            attempts.append(address)
            raise NetworkBlocked(f"test tried to reach {address!r}")
        return real_connect(self, address)

    def connect_ex(self, address):
        if not _is_local(address):
            attempts.append(address)
            raise NetworkBlocked(f"test tried to reach {address!r}")
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in (None, "localhost") and not _is_local((host,)):
            attempts.append(host)
            raise NetworkBlocked(f"test tried to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts


@pytest.fixture(autouse=True)
def ragmem_home(tmp_path, monkeypatch) -> Path:
    """A fresh ragmem home per test, and a working folder with no ragmem.toml."""
    for key in list(os.environ):
        if key.startswith("RAGMEM_"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("RAGMEM_HOME", str(home))
    monkeypatch.chdir(work)
    return home


@pytest.fixture
def settings(ragmem_home):
    """Settings with the fast hashing embedder."""
    from rag_memory.config import Settings

    return Settings.load({"embedder": "hashing:64"})


@pytest.fixture(scope="session")
def minilm():
    """The real bundled MiniLM, loaded once per session."""
    from rag_memory.knowledge_base.embedders import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(device="cpu")
    embedder.warm_up()
    return embedder


@pytest.fixture(scope="session")
def chroma_url(tmp_path_factory):
    """A real `chroma run` server on loopback, shared by the session's server-mode tests."""
    from tests.helpers.chroma_server import chroma_server

    with chroma_server(tmp_path_factory.mktemp("chroma-server") / "data") as url:
        yield url


@pytest.fixture(params=["embedded", "server"])
def store_settings(request, settings):
    """The same settings against embedded Chroma and against a Chroma server."""
    if request.param == "embedded":
        return settings
    url = request.getfixturevalue("chroma_url")
    # Each test gets its own collection on the shared server.
    import uuid

    name = f"t-{uuid.uuid4().hex[:12]}"
    return settings.replace(chroma_url=url, collection=name)


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory) -> Path:
    """A folder holding a two-layer random Qwen2 with a ChatML template and an English+Chinese tokenizer."""
    from tests.helpers.tiny_model import build_tiny_chat_model

    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat-model"))
