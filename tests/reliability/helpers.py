"""Shared by the reliability tests: run the real CLI in a subprocess, and compare whole stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from rag_memory.config import Settings
from rag_memory.ingest.run import MANIFEST_KEY
from rag_memory.knowledge_base.embedders import HashingEmbedder
from rag_memory.pipelines.components import Components

# Small chunks and embedding batches, so one small tree passes every checkpoint many times.
FAST = {
    "RAGMEM_EMBEDDER": "hashing:64",
    "RAGMEM_CHUNK_TOKENS": "16",
    "RAGMEM_CHUNK_OVERLAP": "0",
    "RAGMEM_EMBED_BATCH_SIZE": "8",
}


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGMEM_")}
    return {**env, **FAST, "RAGMEM_HOME": str(home), **extra}


def ragmem(home: Path, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """``ragmem ARGS`` in a fresh process (the real console entry point)."""
    return subprocess.run(
        [sys.executable, "-m", "rag_memory.cli", *args], env=cli_env(home, **env), capture_output=True,
        text=True, timeout=timeout,
    )


def components(home: Path, **overrides: Any) -> Components:
    settings = Settings.load({"home": home, "embedder": "hashing:64", "chunk_tokens": 16, "chunk_overlap": 0,
                              "embed_batch_size": 8, **overrides})
    return Components(settings, embedder=HashingEmbedder(64))


def snapshot(parts: Components) -> dict[str, Any]:
    """Everything a knowledge base holds, minus what names the home: chunks with text and
    metadata in Chroma and in the keyword index, and the manifest's files."""

    def clean(meta: dict) -> dict:
        return {k: v for k, v in meta.items() if k not in (MANIFEST_KEY, "bm25_score", "bm25_match")}

    ids = parts.store.ids()
    chroma = {h.chunk_id: (h.text, clean(h.metadata)) for h in parts.store.get_records(ids=sorted(ids))} if ids else {}
    keyword: dict[str, Any] = {}
    tables = parts.lexical._lookup() if parts.settings.lexical_path.exists() else None
    if tables:
        for cid, text, meta in parts.lexical.db.read(f"SELECT chunk_id, text, metadata FROM {tables[0]}"):
            assert cid not in keyword, f"duplicate keyword row {cid}"
            keyword[cid] = (text, clean(json.loads(meta)))
    files = {p: (r.content_hash, sorted(r.chunk_ids)) for p, r in parts.manifest.files().items()}
    return {"chroma": chroma, "keyword": keyword, "files": files, "pending": parts.manifest.pending()}


def assert_consistent(snap: dict[str, Any]) -> None:
    """No orphans, no gaps, no duplicates: manifest, Chroma and keyword index hold one set."""
    recorded = [cid for _, ids in snap["files"].values() for cid in ids]
    assert len(recorded) == len(set(recorded)), "a chunk id is recorded twice"
    assert set(snap["chroma"]) == set(recorded), "Chroma and the manifest disagree"
    assert snap["keyword"] == snap["chroma"], "the keyword index and Chroma disagree"
    assert snap["pending"] == {}
    texts = [(meta["source"], text) for text, meta in snap["chroma"].values()]
    assert len(texts) == len(set(texts)), "a chunk is stored twice"
