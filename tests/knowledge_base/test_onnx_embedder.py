"""The ONNX Runtime backend: same vectors as torch, exported once, no torch on the query path."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rag_memory.errors import ConfigError, EmbedderError
from rag_memory.knowledge_base.embedders import SentenceTransformerEmbedder, make_embedder, onnx_runtime
from rag_memory.knowledge_base.embedders.onnx_runtime import OnnxEmbedder

TEXTS = [
    "Chroma stores vectors.",
    "长城是中国古代的军事防御工程，绵延上万里。",
    "Files removed from the folder lose their chunks on the next ingest, " * 30,  # past the window
    "x",
    "混合 English 和中文的句子 with punctuation!",
]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def onnx_minilm(onnx_cache):
    embedder = OnnxEmbedder(cache_dir=onnx_cache)
    embedder.warm_up()
    return embedder


@pytest.mark.slow
def test_onnx_vectors_match_torch_within_1e_5(onnx_minilm, minilm):
    got = onnx_minilm.embed_documents(TEXTS)
    want = minilm.embed_documents(TEXTS)
    worst = max(abs(a - b) for u, v in zip(got, want, strict=True) for a, b in zip(u, v, strict=True))
    assert worst < 1e-5
    q_onnx, q_torch = onnx_minilm.embed_query("长城有多长？"), minilm.embed_query("长城有多长？")
    assert max(abs(a - b) for a, b in zip(q_onnx, q_torch, strict=True)) < 1e-5


@pytest.mark.slow
def test_onnx_counts_tokens_and_reads_the_window_like_torch(onnx_minilm, minilm):
    assert onnx_minilm.model_id == minilm.model_id
    assert onnx_minilm.dimension == 384 and onnx_minilm.max_tokens == minilm.max_tokens == 254
    assert onnx_minilm.count_tokens_batch(TEXTS) == [minilm.count_tokens(t) for t in TEXTS]
    assert onnx_minilm.count_tokens(TEXTS[1]) == minilm.count_tokens(TEXTS[1])


@pytest.mark.slow
def test_the_export_is_cached_and_reused(onnx_minilm, onnx_cache, monkeypatch):
    graphs = list(onnx_cache.glob("*.onnx"))
    assert len(graphs) == 1 and not list(onnx_cache.glob("*.tmp"))

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the cache holds the graph")

    monkeypatch.setattr(onnx_runtime, "export", no_export)
    again = OnnxEmbedder(cache_dir=onnx_cache)
    assert again.embed_query("hello") == pytest.approx(onnx_minilm.embed_query("hello"), abs=1e-6)


@pytest.mark.slow
def test_a_search_process_embeds_without_importing_torch(onnx_minilm, onnx_cache):
    code = (
        "import sys\n"
        "from rag_memory.knowledge_base.embedders.onnx_runtime import OnnxEmbedder\n"
        f"e = OnnxEmbedder(cache_dir={str(onnx_cache)!r})\n"
        "v = e.embed_query('长城有多长？')\n"
        "assert len(v) == 384, len(v)\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_bundled_model_goes_to_onnx_on_the_cpu_and_to_torch_on_a_gpu(tmp_path):
    on_cpu = make_embedder("all-MiniLM-L6-v2", device="cpu", cache_dir=tmp_path)
    assert isinstance(on_cpu, OnnxEmbedder) and on_cpu.cache_dir == tmp_path
    on_gpu = make_embedder("all-MiniLM-L6-v2", device="cuda")
    assert isinstance(on_gpu, SentenceTransformerEmbedder)
    # Same id either way: a collection built by one is searched by the other.
    assert on_cpu.model_id == on_gpu.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert isinstance(make_embedder("onnx", cache_dir=tmp_path), OnnxEmbedder)


def test_onnx_refuses_a_gpu_device_and_a_model_it_cannot_find(tmp_path):
    with pytest.raises(ConfigError, match="cuda"):
        make_embedder("onnx", device="cuda")
    with pytest.raises(EmbedderError, match="no-such-folder"):
        OnnxEmbedder(str(tmp_path / "no-such-folder"), cache_dir=tmp_path).warm_up()


@pytest.mark.slow
def test_a_fresh_search_process_embeds_the_query_while_chroma_imports(onnx_minilm, onnx_cache, tmp_path):
    """The prefetch thread and the main thread import nothing at the same time (a numpy
    circular-import error showed up when they did)."""
    code = (
        "import sys\n"
        "from rag_memory.knowledge_base.embedders.onnx_runtime import OnnxEmbedder\n"
        "from rag_memory.knowledge_base.hybrid import HybridRetriever\n"
        f"e = OnnxEmbedder(cache_dir={str(onnx_cache)!r})\n"
        "assert e.background_safe\n"
        "class Dense:\n"
        "    embedder = e\n"
        "r = HybridRetriever.__new__(HybridRetriever)\n"
        "r.mode, r.dense = 'dense', Dense()\n"
        "t = r.prefetch('长城有多长？')\n"
        "import chromadb\n"
        "t.join()\n"
        "assert '长城有多长？' in e._query_cache\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert not OnnxEmbedder(cache_dir=tmp_path).background_safe  # not exported yet: no thread
