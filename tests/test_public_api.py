"""The public API: what ``rag_memory`` exports, and that importing it stays cheap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import rag_memory
from rag_memory.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

PUBLIC = [
    "Answer",
    "AnswerStream",
    "Chunk",
    "ConfigError",
    "EmbedderError",
    "EmbedderMismatchError",
    "GenerationError",
    "Hit",
    "IngestError",
    "IngestReport",
    "LoaderError",
    "Memory",
    "MemoryStoreError",
    "RagMemoryError",
    "RagPipeline",
    "Settings",
    "Source",
    "StoreError",
    "StoreStatus",
    "Turn",
    "__version__",
]

HEAVY = ["torch", "transformers", "sentence_transformers", "chromadb", "langchain", "langchain_core",
         "langchain_chroma", "numpy", "unstructured"]


def test_all_is_pinned():
    assert sorted(rag_memory.__all__) == PUBLIC


def test_every_public_name_resolves_to_the_object_it_names():
    from rag_memory.config import Settings
    from rag_memory.pipelines.rag import AnswerStream, RagPipeline
    from rag_memory.schema import Answer, Hit

    for name in PUBLIC:
        assert getattr(rag_memory, name) is not None, name
    assert rag_memory.RagPipeline is RagPipeline and rag_memory.AnswerStream is AnswerStream
    assert rag_memory.Answer is Answer and rag_memory.Hit is Hit and rag_memory.Settings is Settings
    assert set(PUBLIC) <= set(dir(rag_memory))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        rag_memory.Nope  # noqa: B018


def _python(code: str, tmp_path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "RAGMEM_HOME": str(tmp_path / "home"), "RAGMEM_EMBEDDER": "hashing"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_importing_the_package_and_building_a_pipeline_loads_no_heavy_library(tmp_path):
    code = f"""
import json, sys
import rag_memory
imported = [m for m in {HEAVY!r} if m in sys.modules]
from rag_memory import *
rag = RagPipeline()
built = [m for m in {HEAVY!r} if m in sys.modules]
print(json.dumps({{"file": rag_memory.__file__, "imported": imported, "built": built,
                  "embedder": rag.settings.embedder, "home": str(rag.settings.home)}}))
"""
    out = _python(code, tmp_path)

    assert out["file"] == str(REPO / "rag_memory" / "__init__.py")  # the package itself, not a namespace
    assert out["imported"] == [] and out["built"] == []
    assert out["embedder"] == "hashing" and out["home"] == str(tmp_path / "home")


def test_a_pipeline_from_settings_or_components(settings):
    from rag_memory.pipelines.components import Components

    parts = Components(settings)
    assert rag_memory.RagPipeline(settings).settings is settings
    assert rag_memory.RagPipeline(components=parts).components is parts
    assert rag_memory.RagPipeline(settings, components=parts).components is parts
    with pytest.raises(ConfigError, match="not both"):
        rag_memory.RagPipeline(settings.replace(top_k=2), components=parts)
