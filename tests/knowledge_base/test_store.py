from __future__ import annotations

import math

import pytest

from rag_memory.errors import ConfigError, StoreError
from rag_memory.knowledge_base.retrievers import DenseRetriever
from rag_memory.knowledge_base.store import ChromaStore, distance_to_score
from rag_memory.schema import Chunk


def chunk(i: int, text: str, source: str = "/docs/a.txt", page: int | None = None) -> Chunk:
    return Chunk(
        id=f"id{i}", text=text, source=source, title="t", index=i, start=0, end=len(text), page=page,
        content_hash=f"h{i}", file_hash="f", n_tokens=3,
    )


def unit(*xs: float) -> list[float]:
    n = math.sqrt(sum(x * x for x in xs))
    return [x / n for x in xs]


class VectorEmbedder:
    """Maps a query to a fixed vector: the query text names the axis."""

    model_id = "axes"

    def embed_query(self, text: str) -> list[float]:
        return {"x": [1.0, 0.0, 0.0], "y": [0.0, 1.0, 0.0], "xy": unit(1, 1, 0)}[text]


def test_scores_are_cosine_similarity():
    assert distance_to_score(0.0) == 1.0
    assert distance_to_score(1.0) == 0.0
    assert distance_to_score(2.0) == -1.0


def test_query_ranks_by_cosine_and_respects_min_score_and_filters(store_settings):
    store = ChromaStore(store_settings.collection, path=store_settings.chroma_path, url=store_settings.chroma_url)
    chunks = [chunk(0, "x axis"), chunk(1, "y axis", source="/docs/b.md", page=2), chunk(2, "diagonal")]
    store.upsert(chunks, [[1, 0, 0], [0, 1, 0], unit(1, 1, 0)], embedder_id="axes")
    retriever = DenseRetriever(store, VectorEmbedder(), top_k=3, sources=lambda: ["/docs/a.txt", "/docs/b.md"])
    hits = retriever.retrieve("x")
    assert [h.chunk_id for h in hits] == ["id0", "id2", "id1"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[1].score == pytest.approx(math.sqrt(0.5), abs=1e-5)
    assert hits[2].score == pytest.approx(0.0, abs=1e-5)
    assert [h.chunk_id for h in retriever.retrieve("x", min_score=0.5)] == ["id0", "id2"]
    only_md = retriever.retrieve("x", source_glob="*.md")
    assert [(h.chunk_id, h.page, h.source) for h in only_md] == [("id1", 2, "/docs/b.md")]
    assert retriever.retrieve("x", source_glob="*.pdf") == []


def test_rank_gives_the_ids_and_cosines_of_retrieve_without_reading_chunks(store_settings):
    store = ChromaStore(store_settings.collection, path=store_settings.chroma_path, url=store_settings.chroma_url)
    chunks = [chunk(0, "x axis"), chunk(1, "y 轴", source="/docs/b.md"), chunk(2, "对角线 diagonal")]
    store.upsert(chunks, [[1, 0, 0], [0, 1, 0], unit(1, 1, 0)], embedder_id="axes")
    retriever = DenseRetriever(store, VectorEmbedder(), top_k=3, sources=lambda: ["/docs/a.txt", "/docs/b.md"])
    # More asked for than stored: all three, best first, as retrieve() ranks them.
    ranked = retriever.rank("xy", top_k=50)
    hits = retriever.retrieve("xy", top_k=50)
    assert [cid for cid, _ in ranked] == [h.chunk_id for h in hits] and ranked[0][0] == "id2"
    assert [s for _, s in ranked] == pytest.approx([h.score for h in hits])
    assert retriever.rank("x", source_glob="*.md") == [("id1", pytest.approx(0.0, abs=1e-5))]
    assert retriever.rank("x", where={"source": "/docs/none.txt"}) == []
    assert DenseRetriever(ChromaStore("absent-one", path=store_settings.chroma_path,
                                      url=store_settings.chroma_url), VectorEmbedder()).rank("x") == []


def test_writes_are_batched_under_the_clients_limit(settings, monkeypatch):
    store = ChromaStore("batched", path=settings.chroma_path)
    monkeypatch.setattr(store, "_batch_size", lambda: 3)
    sizes = []
    col = store.open_for_writing("axes", 3)
    real = col.upsert

    def spy(**kwargs):
        sizes.append(len(kwargs["ids"]))
        return real(**kwargs)

    monkeypatch.setattr(col, "upsert", spy)
    store.upsert([chunk(i, f"t{i}") for i in range(10)], [unit(1, i + 1, 0) for i in range(10)], embedder_id="axes")
    assert sizes == [3, 3, 3, 1]
    assert store.count() == 10
    store.delete([f"id{i}" for i in range(7)])
    assert store.ids() == {"id7", "id8", "id9"}


def test_empty_store_returns_nothing_and_bad_queries_are_refused(settings):
    store = ChromaStore("empty", path=settings.chroma_path)
    retriever = DenseRetriever(store, VectorEmbedder())
    assert retriever.retrieve("x") == []
    with pytest.raises(ConfigError, match="top_k"):
        retriever.retrieve("x", top_k=0)
    with pytest.raises(ConfigError, match="empty"):
        retriever.retrieve("   ")
    with pytest.raises(ConfigError, match="top_k must be at least 1, got 0"):
        DenseRetriever(store, VectorEmbedder(), top_k=0)


def test_unreachable_server_is_a_store_error_naming_the_url():
    store = ChromaStore("x", url="http://127.0.0.1:9")
    with pytest.raises(StoreError, match=r"http://127.0.0.1:9.*chroma run"):
        store.count()
