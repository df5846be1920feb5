"""Metadata filters: Chroma evaluates them for both retrievers, and no SQL is built from them."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag_memory.errors import ConfigError
from rag_memory.knowledge_base.embedders import HashingEmbedder
from rag_memory.knowledge_base.hybrid import HybridRetriever
from rag_memory.knowledge_base.keyword_index import BM25Index
from rag_memory.knowledge_base.retrievers import DenseRetriever
from rag_memory.knowledge_base.store import ChromaStore

# Keys a stranger could put in a filter: quotes, SQL, JSON-path syntax, operators.
HOSTILE_KEYS = [
    "team", "team'", "n", "f", "lang", "source", "a\"b", "$.team", "x') OR 1=1 --",
    "x') OR 1=1 OR json_extract(d.metadata, '$.y", "team\"') OR 1=1 OR ('", "(SELECT 1)", "",
]
RECORDS = [
    ("r1", "alpha one", {"source": "/d/a.md", "team": "a", "n": 1, "f": True, "lang": "en"}),
    ("r2", "alpha two", {"source": "/d/b.md", "team": "b", "n": 2, "f": False, "lang": "en"}),
    ("r3", "alpha three", {"source": "/d/c.md", "team'": "a", "n": 3.5, "lang": "zh"}),
    ("r4", "alpha 四 首都", {"source": "/d/中文.txt", "team": "a'b", "a\"b": "q", "n": -7, "lang": "zh"}),
    ("r5", "alpha five", {"source": "/d/e.md", "x') OR 1=1 --": "a", "n": 0}),
]


def _build(folder) -> tuple[ChromaStore, HybridRetriever, HybridRetriever]:
    embedder = HashingEmbedder(32)
    store = ChromaStore("filters", path=folder / "chroma")
    texts = [t for _, t, _ in RECORDS]
    store.upsert_records(
        [i for i, _, _ in RECORDS], texts, embedder.embed_documents(texts), [m for _, _, m in RECORDS],
        embedder_id=embedder.model_id,
    )
    lexical = BM25Index(folder / "lexical.sqlite3", "filters")
    lexical.upsert_records([i for i, _, _ in RECORDS], texts, [m for _, _, m in RECORDS])
    dense = DenseRetriever(store, embedder, top_k=10)
    return (
        store,
        HybridRetriever(dense, lexical, mode="bm25", candidates=10),
        HybridRetriever(dense, lexical, mode="hybrid", candidates=10),
    )


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("filters"))


def _chroma_ids(store: ChromaStore, where) -> set[str]:
    """Chroma's own evaluation of a filter, straight from the collection."""
    col = store._existing()
    return set(col.get(where=where, include=[])["ids"])


def test_a_key_with_a_quote_is_data_not_sql(kb):
    store, bm25, hybrid = kb
    # On the SQL translator this was "unrecognized token" (reported as a damaged index file).
    assert [h.chunk_id for h in bm25.retrieve("alpha", top_k=10, where={"team'": "a"})] == ["r3"]
    assert [h.chunk_id for h in hybrid.retrieve("alpha", top_k=10, where={"team'": "a"})] == ["r3"]


@pytest.mark.parametrize("key", [k for k in HOSTILE_KEYS if k not in ("", "x') OR 1=1 --", "$.team")])
def test_an_injection_key_matches_only_records_that_have_it(kb, key):
    store, bm25, _ = kb
    got = {h.chunk_id for h in bm25.retrieve("alpha", top_k=10, where={key: "a"})}
    assert got == _chroma_ids(store, {key: "a"})
    assert got <= {"r1", "r3"}  # never "every row"


def test_a_key_that_only_one_record_has_keeps_that_record(kb):
    _, bm25, _ = kb
    assert [h.chunk_id for h in bm25.retrieve("alpha", top_k=10, where={"x') OR 1=1 --": "a"})] == ["r5"]


def test_a_bad_filter_is_a_config_error_naming_it(kb):
    _, bm25, hybrid = kb
    for retriever in (bm25, hybrid):
        with pytest.raises(ConfigError, match=r"\$like"):
            retriever.retrieve("alpha", where={"source": {"$like": "x"}})
        with pytest.raises(ConfigError, match="metadata filter"):
            retriever.retrieve("alpha", where={"team": None})
        with pytest.raises(ConfigError, match="metadata filter"):
            retriever.retrieve("alpha", where=["team"])  # type: ignore[arg-type]


def test_chinese_values_filter_both_sides(kb):
    _, bm25, hybrid = kb
    for retriever in (bm25, hybrid):
        got = retriever.retrieve("首都", top_k=10, where={"source": "/d/中文.txt"})
        assert [h.chunk_id for h in got] == ["r4"]


# -- fuzz: arbitrary filters never change which rows match, never raise anything else ------------

SCALARS = (
    st.text(max_size=4)
    | st.sampled_from(["a", "b", "a'b", "en", "zh", "/d/a.md"])
    | st.integers()
    | st.floats(allow_nan=True)
    | st.booleans()
    | st.none()
)
OPS = st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$contains", "$like", "$or"])
OPERAND = SCALARS | st.lists(SCALARS, max_size=3)
FIELD_VALUE = SCALARS | st.lists(SCALARS, max_size=2) | st.dictionaries(OPS, OPERAND, min_size=0, max_size=2)
KEYS = st.sampled_from(HOSTILE_KEYS + ["$and", "$or", "$in", "$foo"]) | st.text(max_size=6)
LEAF = st.dictionaries(KEYS, FIELD_VALUE, min_size=0, max_size=2)
WHERE = st.recursive(
    LEAF,
    lambda inner: st.dictionaries(st.sampled_from(["$and", "$or"]), st.lists(inner, max_size=3), min_size=1, max_size=1),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=WHERE)
def test_fuzzed_filters_match_exactly_what_chroma_matches(kb, where):
    store, bm25, hybrid = kb
    try:
        expected = _chroma_ids(store, where) if where else {i for i, _, _ in RECORDS}
    except Exception:  # Chroma refuses the filter: ragmem must say so as a ConfigError
        expected = None
    for retriever in (bm25, hybrid):
        if expected is None:
            with pytest.raises(ConfigError):
                retriever.retrieve("alpha", top_k=10, where=where)
        else:
            got = {h.chunk_id for h in retriever.retrieve("alpha", top_k=10, where=where)}
            assert got == expected, (retriever.mode, where)
