"""Fixtures for the server tests: a corpus in English and Chinese, and a home per module."""

from __future__ import annotations

from pathlib import Path

CORPUS = {
    "sync.md": "# Sync\n\nWhen a file is deleted, re-ingest removes its chunks from the knowledge base.\n\n"
    "Changed files are re-chunked and their changed chunks are embedded again.",
    "boats.txt": "Boats sail down the river to the sea. Ferries cross the bay every hour.",
    "greatwall.txt": "长城是中国古代的军事防御工程。长城全长两万多公里，东起山海关。",
}


def write_corpus(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in CORPUS.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def server_settings(home: Path, **overrides):
    """Settings for a server test: a private home, the fast hashing embedder, a low gate."""
    from rag_memory.config import Settings

    flags = {"home": home, "embedder": "hashing:1024", "relevance_gate": 0.1, "memory_min_score": 0.1,
             "user": "default-user", **overrides}
    return Settings.load(flags)
