from __future__ import annotations

import math

import pytest

from rag_memory.errors import ConfigError, EmbedderError
from rag_memory.knowledge_base.embedders import HashingEmbedder, SentenceTransformerEmbedder, make_embedder


def norm(v):
    return math.sqrt(sum(x * x for x in v))


def cos(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_bundled_minilm_loads_offline_and_returns_unit_vectors(minilm, _block_network):
    vectors = minilm.embed_documents(["Chroma stores vectors.", "长城很长。"])
    assert minilm.dimension == 384 and len(vectors) == 2 and all(len(v) == 384 for v in vectors)
    assert all(norm(v) == pytest.approx(1.0, abs=1e-5) for v in vectors)
    assert minilm.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert minilm.max_tokens == 254  # 256 minus [CLS] and [SEP]
    assert _block_network == []


def test_minilm_ranks_the_related_sentence_first(minilm):
    q = minilm.embed_query("How are deleted files handled when I ingest again?")
    docs = minilm.embed_documents(
        ["Files removed from the folder lose their chunks on the next ingest.", "The weather is sunny today."]
    )
    assert cos(q, docs[0]) > cos(q, docs[1]) + 0.2


def test_batches_report_progress(minilm):
    minilm.batch_size = 2
    try:
        seen = []
        minilm.embed_documents([f"text {i}" for i in range(5)], progress=seen.append)
        assert seen == [2, 2, 1]
    finally:
        minilm.batch_size = 64


def test_missing_model_is_an_embedder_error_naming_it(tmp_path):
    with pytest.raises(EmbedderError, match="no-such-model"):
        SentenceTransformerEmbedder(str(tmp_path / "no-such-model")).warm_up()


def test_hashing_embedder_is_deterministic_and_handles_chinese():
    e = make_embedder("hashing:32")
    assert isinstance(e, HashingEmbedder) and e.dimension == 32
    a = e.embed_query("长城 great wall")
    assert a == e.embed_query("长城 great wall")
    assert norm(a) == pytest.approx(1.0)
    assert e.count_tokens("长城 great wall") == 4
    with pytest.raises(ConfigError, match="hashing:x"):
        make_embedder("hashing:x")


def test_a_query_asked_twice_is_embedded_once():
    calls = []

    class Counting(HashingEmbedder):
        def _embed_query(self, text):
            calls.append(text)
            return super()._embed_query(text)

    e = Counting(32)
    first = e.embed_query("deleted files")
    first[0] = 99.0  # callers may mutate what they get
    assert e.embed_query("deleted files")[0] != 99.0
    e.embed_query("other")
    assert calls == ["deleted files", "other"]


def test_loading_the_model_prints_no_progress_bar(capfd):
    # The library prints nothing of its own: transformers' "Loading weights" bar stays off.
    SentenceTransformerEmbedder().warm_up()
    out, err = capfd.readouterr()
    assert "Loading weights" not in err and "%|" not in err and out == ""


def test_batches_are_cut_by_token_count_and_vectors_keep_the_input_order():
    batches = []

    class Recording(HashingEmbedder):
        def _embed_batch(self, texts):
            batches.append([self.count_tokens(t) for t in texts])
            return super()._embed_batch(texts)

    e = Recording(32)
    e.batch_size = 2
    texts = ["one", "one two three four five", "长城", "one two three", "a b c d e f g h", "x y"]
    vectors = e.embed_documents(texts)
    assert batches == [[8, 5], [3, 2], [2, 1]]  # longest first, neighbours in length together
    assert vectors == [e.embed_query(t) for t in texts]


def test_a_query_being_embedded_on_another_thread_is_waited_for_not_embedded_again():
    import threading
    import time

    class Slow(HashingEmbedder):
        calls: list[str] = []

        def _embed_query(self, text):
            self.calls.append(text)
            time.sleep(0.2)
            return super()._embed_query(text)

    embedder = Slow(dimension=64)
    results = []
    threads = [threading.Thread(target=lambda: results.append(embedder.embed_query("长城有多长？"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert embedder.calls == ["长城有多长？"]
    assert len(results) == 3 and results[0] == results[1] == results[2]
