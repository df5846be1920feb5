"""The BM25 keyword index: persistence, incremental updates, filters, English and Chinese."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rag_memory.errors import ConfigError, StoreError
from rag_memory.knowledge_base import keyword_index as lexical
from rag_memory.knowledge_base.keyword_index import BM25Index
from rag_memory.schema import Chunk, Hit
from rag_memory.text.terms import lexical_terms


def chunk(cid: str, text: str, source: str = "/docs/a.txt", page: int | None = None, index: int = 0) -> Chunk:
    return Chunk(
        id=cid, text=text, source=source, title="T", index=index, start=0, end=len(text), page=page,
        content_hash="h" + cid, file_hash="f", n_tokens=len(text.split()),
    )


@pytest.fixture
def index(tmp_path) -> BM25Index:
    return BM25Index(tmp_path / "lexical.sqlite3", "knowledge")


ENGLISH = [
    chunk("paris", "Paris is the capital and largest city of France.", "/docs/france.md"),
    chunk("berlin", "Berlin is the capital of Germany and its largest city.", "/docs/germany.md"),
    chunk("broncos", "The Denver Broncos defeated the Carolina Panthers to win Super Bowl 50.", "/docs/nfl.txt"),
    chunk("rivers", "The Rhine flows through Germany and the Netherlands to the North Sea.", "/docs/germany.md", index=1),
]
CHINESE = [
    chunk("zh-game", "《战国无双3》是由光荣和ω-force开发的战国无双系列的正统第三续作。", "/docs/game.txt"),
    chunk("zh-capital", "北京是中华人民共和国的首都，也是全国的政治和文化中心。", "/docs/beijing.txt"),
    chunk("zh-river", "长江是中国第一长河，全长约6300公里，流经十一个省级行政区。", "/docs/river.txt"),
    chunk("zh-panda", "大熊猫主要生活在四川、陕西和甘肃的山区，以竹子为食。", "/docs/panda.txt"),
]


# -- writes and persistence ------------------------------------------------------------------


def test_index_survives_a_new_instance_and_is_queried_without_rebuilding(tmp_path, index):
    index.upsert(ENGLISH, embedder_id="e")
    index.close()
    again = BM25Index(tmp_path / "lexical.sqlite3", "knowledge")
    assert again.count() == 4
    assert again.ids() == {"paris", "berlin", "broncos", "rivers"}
    hit = again.search("capital of France", k=1)[0]
    assert hit.chunk_id == "paris"


def test_init_is_cheap_and_an_absent_index_is_empty(tmp_path):
    path = tmp_path / "nowhere" / "lexical.sqlite3"
    idx = BM25Index(path, "knowledge")
    assert not path.exists()
    assert idx.db._conn is None


def test_incremental_add_overwrite_and_delete(index):
    index.upsert(ENGLISH[:2])
    assert index.count() == 2
    index.upsert(ENGLISH[2:])
    assert index.count() == 4
    # Same id, new text: the old terms are gone, the new ones match.
    index.upsert([chunk("paris", "Lyon is a city on the Rhone.", "/docs/france.md")])
    assert index.count() == 4
    assert [h.chunk_id for h in index.search("Rhone Lyon", k=5)] == ["paris"]
    assert "paris" not in [h.chunk_id for h in index.search("capital France", k=5)]
    assert index.delete(["berlin", "not-there"]) == 1
    assert index.count() == 3
    assert all(h.chunk_id != "berlin" for h in index.search("capital Germany largest city", k=5))


def test_drop_forgets_only_its_collection(tmp_path, index):
    other = BM25Index(tmp_path / "lexical.sqlite3", "other")
    index.upsert(ENGLISH)
    other.upsert(CHINESE)
    assert [h.chunk_id for h in index.search("北京 首都", k=3)] == []
    assert index.drop() is True
    assert index.count() == 0 and index.search("Paris", k=3) == []
    assert index.drop() is False
    assert other.count() == 4
    assert other.search("北京的首都", k=1)[0].chunk_id == "zh-capital"


def test_terms_are_rebuilt_from_stored_text_when_the_tokeniser_changes(tmp_path, index, monkeypatch):
    index.upsert(ENGLISH)
    index.close()
    monkeypatch.setattr(lexical, "TERMS_VERSION", "test-next")
    monkeypatch.setattr(lexical, "lexical_terms", lambda text: text.lower().split())
    again = BM25Index(tmp_path / "lexical.sqlite3", "knowledge")
    # Unstemmed now: only the exact word form matches.
    assert [h.chunk_id for h in again.search("france.", k=3)] == ["paris"]


def test_sync_with_store_adds_missing_and_removes_extra_chunks(index):
    class FakeStore:
        records = [Hit(c.id, c.text, 0.0, c.source, None, "T", c.metadata("e")) for c in ENGLISH]

        def ids(self):
            return {h.chunk_id for h in self.records}

        def get_records(self, *, ids=None, where=None, limit=None):
            return [h for h in self.records if ids is None or h.chunk_id in ids]

    index.upsert([chunk("stray", "an orphan chunk")])
    assert index.sync_with(FakeStore()) == 5
    assert index.ids() == {"paris", "berlin", "broncos", "rivers"}
    assert index.sync_with(FakeStore()) == 0


def test_unwritable_location_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    idx = BM25Index(blocker / "lexical.sqlite3", "knowledge")
    with pytest.raises(StoreError, match="keyword index"):
        idx.upsert(ENGLISH)


# -- search ------------------------------------------------------------------------------------


def test_hits_carry_bm25_scores_and_the_dense_stores_metadata(index):
    index.upsert([chunk("p", "Paris is the capital of France.", "/docs/france.md", page=3, index=2)], embedder_id="e")
    hit = index.search("What is the capital of France?", k=5)[0]
    assert hit.score > 0
    assert (hit.source, hit.page, hit.title) == ("/docs/france.md", 3, "T")
    assert hit.metadata["chunk_index"] == 2 and hit.metadata["embedder"] == "e"


def test_scores_are_fts5_bm25_with_k1_1_2_and_b_0_75(index):
    docs = ["apple banana", "apple apple cherry date", "banana kiwi", "elder fig grape", "lemon lime", "mango"]
    index.upsert([chunk(f"d{i}", t) for i, t in enumerate(docs)])
    terms = [lexical_terms(d) for d in docs]
    n, avgdl = len(docs), sum(len(t) for t in terms) / len(docs)

    def idf(term: str) -> float:
        df = sum(term in t for t in terms)
        return max(math.log((n - df + 0.5) / (df + 0.5)), 1e-6)

    def bm25(words: list[str], query: list[str]) -> float:
        total = 0.0
        for term in query:
            tf = words.count(term)
            total += idf(term) * tf * 2.2 / (tf + 1.2 * (1 - 0.75 + 0.75 * len(words) / avgdl))
        return total

    query = lexical_terms("apple cherry")
    hits = index.search("apple cherry", k=4)
    assert [h.chunk_id for h in hits] == ["d1", "d0"]
    for h in hits:
        assert h.score == pytest.approx(bm25(terms[int(h.chunk_id[1:])], query), rel=1e-6)
    assert index.max_score("apple cherry") == pytest.approx(2.2 * (idf(query[0]) + idf(query[1])), rel=1e-6)


def test_english_query_ranks_the_matching_chunk_first(index):
    index.upsert(ENGLISH)
    assert index.search("Who won Super Bowl 50?", k=2)[0].chunk_id == "broncos"
    assert index.search("rivers flowing to the North Sea", k=1)[0].chunk_id == "rivers"


def test_chinese_query_finds_the_right_chunk_among_distractors(index):
    index.upsert(CHINESE + ENGLISH)
    assert index.search("《战国无双3》是由哪两个公司合作开发的？", k=3)[0].chunk_id == "zh-game"
    assert index.search("中国的首都是哪个城市", k=3)[0].chunk_id == "zh-capital"
    assert index.search("大熊猫吃什么", k=3)[0].chunk_id == "zh-panda"
    assert index.search("长江全长多少公里", k=3)[0].chunk_id == "zh-river"


def test_source_filter_keeps_only_listed_sources(index):
    index.upsert(ENGLISH)
    hits = index.search("capital largest city", k=5, sources=["/docs/germany.md"])
    assert {h.source for h in hits} == {"/docs/germany.md"}
    assert index.search("capital", k=5, sources=[]) == []


def test_id_restriction_keeps_only_the_allowed_chunks(index):
    index.upsert(ENGLISH)
    only = index.search("capital city Germany Rhine", k=5, ids={"rivers"})
    assert [h.chunk_id for h in only] == ["rivers"]
    both = index.search("capital city", k=5, ids=["paris", "berlin", "not-indexed"])
    assert {h.chunk_id for h in both} == {"paris", "berlin"}
    assert index.search("capital city", k=5, ids=set()) == []
    # An id is data, bound as a parameter: quotes in it change nothing.
    assert index.search("capital city", k=5, ids=["paris') OR 1=1 --", '" OR ""="']) == []


def test_query_without_indexable_terms_returns_nothing(index):
    index.upsert(ENGLISH)
    assert index.search("what is it?", k=3) == []
    assert index.search("?!", k=3) == []
    with pytest.raises(ConfigError):
        index.search("Paris", k=0)


def test_search_before_anything_was_indexed_is_empty(tmp_path):
    assert BM25Index(Path(tmp_path) / "x.sqlite3", "knowledge").search("Paris", k=3) == []


def test_max_score_follows_writes_from_this_and_other_connections(tmp_path, index):
    index.upsert(ENGLISH)
    before = index.max_score("Rhine")
    other = BM25Index(tmp_path / "lexical.sqlite3", "knowledge")
    other.upsert([chunk(f"x{i}", f"filler text number {i}") for i in range(6)])
    assert index.max_score("Rhine") > before  # rarer among more chunks: a higher idf
    more = index.max_score("Rhine")
    index.upsert([chunk("r2", "The Rhine again")])
    assert index.max_score("Rhine") < more  # commoner now: a lower idf, seen by both connections
    assert other.max_score("Rhine") == pytest.approx(index.max_score("Rhine"))
    assert index.max_score("zzz unknown") == 0.0


# -- two-step search on a large index -------------------------------------------------------

# Many chunks sharing common terms (Chinese 国/人/中, English "city"/"year"), a few holding rare
# ones: the shape that makes a one-step FTS5 query score tens of thousands of matches.
_ZH_FILLER = ["中国人在国内的城市生活", "国家的人民和中国文化", "中国城市人口增长很快", "人们在国内旅行"]
_EN_FILLER = ["the city grew every year", "a city of many people in that year", "people move to the city"]
CROWD = [
    chunk(f"crowd{i}", f"{_ZH_FILLER[i % 4]}。{_EN_FILLER[i % 3]} {i}", f"/docs/crowd{i % 7}.txt", index=i)
    for i in range(120)
] + [
    chunk("zh-needle", "长江流经中国的十一个省级行政区，人口众多的城市沿江分布。", "/docs/river.txt"),
    chunk("zh-near", "长江中国城市人口", "/docs/river.txt", index=1),
    chunk("en-needle", "The Rhine city of Basel grew every year as people came for its bridges.", "/docs/rhine.txt"),
    chunk("en-near", "Basel bridges", "/docs/rhine.txt", index=1),
]


def _two_indexes(tmp_path) -> tuple[BM25Index, BM25Index]:
    """The same file read in one step (never prunes) and in two (always, with few postings)."""
    path = tmp_path / "crowd.sqlite3"
    BM25Index(path, "knowledge").upsert(CROWD)
    return BM25Index(path, "knowledge", prune_above=10**9), BM25Index(path, "knowledge", prune_above=0, candidate_postings=3)


@pytest.mark.parametrize(
    ("query", "needle"), [("长江流经中国的哪些城市？", "zh-needle"), ("长江中国城市人口的 census", "zh-near")]
)
def test_two_step_search_scores_exactly_as_fts5_and_finds_the_rare_terms_chunk(tmp_path, query, needle):
    one_step, two_step = _two_indexes(tmp_path)
    exact = dict(one_step.rank(query, 200))
    assert len(exact) > 100  # the common terms match nearly every chunk
    ranked = two_step.rank(query, 5)
    assert ranked[0][0] == needle == one_step.rank(query, 1)[0][0]
    # The candidates are rescored on every term, as bm25() scores them (to the last bit).
    assert all(score == exact[cid] for cid, score in ranked)
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    hits = two_step.search(query, 3)
    assert [h.chunk_id for h in hits] == [cid for cid, _ in ranked[:3]]
    assert hits[0].text == next(c.text for c in CROWD if c.id == needle) and hits[0].source.endswith(".txt")


def test_english_queries_are_always_ranked_in_one_fts5_query(tmp_path):
    one_step, two_step = _two_indexes(tmp_path)
    # English words are not redundant the way CJK characters and pairs are: no pruning.
    for query in ("Which city on the Rhine grew every year for its bridges?", "people in the city grew every year 长江"):
        assert two_step.rank(query, 60) == one_step.rank(query, 60)
    assert two_step.rank("Which city on the Rhine grew every year for its bridges?", 1)[0][0] == "en-needle"


def test_two_step_search_misses_only_chunks_without_a_rare_term(tmp_path):
    one_step, two_step = _two_indexes(tmp_path)
    query = "长江流经中国的哪些城市？"
    # Only chunks holding one of the rarest terms (长, 江, 长江 ...) can be candidates.
    assert {cid for cid, _ in two_step.rank(query, 10)} <= {"zh-needle", "zh-near"}
    assert {"zh-needle", "zh-near"} <= {cid for cid, _ in one_step.rank(query, 200)}


def test_two_step_statistics_follow_writes_from_another_connection(tmp_path):
    one_step, two_step = _two_indexes(tmp_path)
    query = "长江流经中国的哪些城市？"
    before = dict(two_step.rank(query, 3))
    other = BM25Index(tmp_path / "crowd.sqlite3", "knowledge")
    other.upsert([chunk(f"more{i}", f"中国城市人口 长江 {i} " * (i + 1)) for i in range(30)])
    after = two_step.rank(query, 3)
    assert dict(after) != before  # more chunks, longer on average: every score moves
    exact = dict(one_step.rank(query, 300))
    assert all(score == exact[cid] for cid, score in after)


def test_records_reads_chunks_by_id(index):
    index.upsert(ENGLISH + CHINESE)
    got = index.records(["paris", "zh-panda", "missing"])
    assert set(got) == {"paris", "zh-panda"}
    assert got["zh-panda"].text.startswith("大熊猫") and got["paris"].metadata["source"] == "/docs/france.md"
    assert index.records([]) == {}


def test_pruning_settings_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="candidate_postings"):
        BM25Index(tmp_path / "x.sqlite3", "knowledge", candidate_postings=0)
