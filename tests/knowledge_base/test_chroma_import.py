"""``import_chromadb``: chromadb without its embedding functions, OTLP exporter or signature checks.

Each check runs in a fresh interpreter: the test process has imported chromadb long before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_fresh(code: str, tmp_path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ANONYMIZED_TELEMETRY": "False"}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_leaves_out_the_embedding_functions_exporter_and_signature_checks(tmp_path):
    result = run_fresh(
        """
        import json, sys
        from rag_memory.knowledge_base.chroma_import import import_chromadb
        chromadb = import_chromadb()
        loaded = {m: m in sys.modules for m in (
            "chromadb.utils.embedding_functions", "jsonschema",
            "opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "httpx._main", "click")}
        same = import_chromadb() is chromadb is sys.modules["chromadb"]
        # overrides checks signatures again for everyone else once chromadb is in
        from overrides import override
        class Base:
            def f(self, x): ...
        try:
            class Bad(Base):
                @override
                def f(self): ...
            checked = False
        except TypeError:
            checked = True
        # what chromadb bound from the deferred registry loads the real one on first use
        from chromadb.api import collection_configuration
        default = collection_configuration.known_embedding_functions["default"]
        from chromadb.utils import embedding_functions
        real = embedding_functions.known_embedding_functions["default"]
        import httpx, httpx._main
        cli = httpx.main.callback is httpx._main.main.callback is not None  # httpx's own CLI, loaded on use
        print(json.dumps({"loaded": loaded, "same": same, "checked": checked,
                          "client": hasattr(chromadb, "PersistentClient"),
                          "registry": default is real and type(embedding_functions).__name__ == "module" and cli}))
        """,
        tmp_path,
    )
    assert result["loaded"] == {
        "chromadb.utils.embedding_functions": False,
        "jsonschema": False,
        "opentelemetry.exporter.otlp.proto.grpc.trace_exporter": False,
        "httpx._main": False,
        "click": False,
    }
    assert result["same"] and result["client"] and result["registry"]
    assert result["checked"], "overrides' signature check stayed off after the import"


def test_a_collection_configured_with_a_chroma_embedding_function_still_opens(tmp_path):
    # The deferred registry loads on first use: a collection whose configuration names a
    # (registered) Chroma embedding function is written and read back through it.
    result = run_fresh(
        """
        import json, sys
        from rag_memory.knowledge_base.chroma_import import import_chromadb
        chromadb = import_chromadb()
        from chromadb.api.types import EmbeddingFunction
        from chromadb.utils.embedding_functions import register_embedding_function

        @register_embedding_function
        class WordLengths(EmbeddingFunction):
            def __init__(self): pass
            def __call__(self, input): return [[float(len(w)) for w in t.split()[:3]] + [0.0] * (3 - len(t.split()[:3])) for t in input]
            @staticmethod
            def name(): return "word_lengths_test"
            @staticmethod
            def build_from_config(config): return WordLengths()
            def get_config(self): return {}

        client = chromadb.PersistentClient(path="store")
        client.create_collection("words", embedding_function=WordLengths()).add(ids=["a"], documents=["长城 很 长"])
        reopened = chromadb.PersistentClient(path="store").get_collection("words")
        ids = reopened.query(query_texts=["长城 很 长"], n_results=1)["ids"]  # embedded by the rebuilt function
        print(json.dumps({"ids": ids, "ef": type(reopened.configuration["embedding_function"]).__name__}))
        """,
        tmp_path,
    )
    assert result == {"ids": [["a"]], "ef": "WordLengths"}


def test_the_plain_import_is_the_fallback_when_the_fast_one_fails(tmp_path):
    result = run_fresh(
        """
        import json, sys
        from rag_memory.knowledge_base import chroma_import

        def broken():
            import chromadb.config  # a partial import that then fails
            raise RuntimeError("a chromadb release that imports differently")

        chroma_import._fast_import = broken
        chromadb = chroma_import.import_chromadb()
        stand_ins = [m for m in chroma_import.DEFERRED if isinstance(sys.modules.get(m), chroma_import._StandIn)]
        print(json.dumps({"client": hasattr(chromadb, "PersistentClient"), "stand_ins": stand_ins,
                          "registry": "chromadb.utils.embedding_functions" in sys.modules}))
        """,
        tmp_path,
    )
    assert result == {"client": True, "stand_ins": [], "registry": True}
