"""Hybrid retrieval: fusion, language-aware weighting, filters on both sides, MMR, reranking."""

from __future__ import annotations

import hashlib
import random

import pytest

from rag_memory.errors import ConfigError
from rag_memory.knowledge_base.embedders import Embedder, HashingEmbedder
from rag_memory.knowledge_base.hybrid import (
    ALL,
    CHINESE,
    HybridRetriever,
    embedder_languages,
    fuse,
    fusion_weight,
    language_coverage,
    minmax,
)
from rag_memory.knowledge_base.hybrid import ENGLISH as ENGLISH_ONLY
from rag_memory.knowledge_base.keyword_index import BM25Index
from rag_memory.knowledge_base.retrievers import DenseRetriever
from rag_memory.knowledge_base.store import ChromaStore
from rag_memory.schema import Chunk, Hit


def chunk(cid: str, text: str, source: str = "/docs/a.txt", index: int = 0) -> Chunk:
    return Chunk(
        id=cid, text=text, source=source, title="T", index=index, start=0, end=len(text), page=None,
        content_hash="h" + cid, file_hash="f", n_tokens=len(text),
    )


class NoiseEmbedder(Embedder):
    """An English-only model's view of Chinese: vectors unrelated to the meaning."""

    model_id = "sentence-transformers/all-MiniLM-L6-v2"

    @property
    def dimension(self) -> int:
        return 16

    def _embed_batch(self, texts):
        out = []
        for t in texts:
            rng = random.Random(hashlib.sha256(t.encode()).digest())
            out.append([rng.gauss(0, 1) for _ in range(16)])
        return out


ZH_CHUNKS = [
    chunk("game", "《战国无双3》是由光荣和ω-force开发的战国无双系列的正统第三续作。", "/docs/game.txt"),
    chunk("capital", "北京是中华人民共和国的首都，也是全国的政治和文化中心。", "/docs/beijing.txt"),
    chunk("river", "长江是中国第一长河，全长约6300公里，流经十一个省级行政区。", "/docs/river.txt"),
    chunk("panda", "大熊猫主要生活在四川、陕西和甘肃的山区，以竹子为食。", "/docs/panda.txt"),
    chunk("tea", "龙井茶产于浙江杭州西湖一带，是中国十大名茶之一。", "/docs/tea.txt"),
    chunk("wall", "长城始建于春秋战国时期，是古代中国的军事防御工程。", "/docs/wall.txt"),
]
EN_CHUNKS = [
    chunk("paris", "Paris is the capital and largest city of France.", "/docs/france.md"),
    chunk("berlin", "Berlin is the capital of Germany and its largest city.", "/docs/germany.md"),
    chunk("broncos", "The Denver Broncos defeated the Carolina Panthers to win Super Bowl 50.", "/docs/nfl.txt"),
    chunk("rhine", "The Rhine flows through Germany and the Netherlands to the North Sea.", "/docs/germany.md", 1),
]


def build(settings, chunks, embedder, **options) -> HybridRetriever:
    store = ChromaStore(settings.collection, path=settings.chroma_path)
    store.upsert(chunks, embedder.embed_documents([c.text for c in chunks]), embedder_id=embedder.model_id)
    lexical = BM25Index(settings.home / "lexical.sqlite3", settings.collection)
    lexical.upsert(chunks, embedder_id=embedder.model_id)
    sources = sorted({c.source for c in chunks})
    dense = DenseRetriever(store, embedder, top_k=3, sources=lambda: sources)
    return HybridRetriever(dense, lexical, **options)


# -- the language table ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "langs"),
    [
        ("sentence-transformers/all-MiniLM-L6-v2", ENGLISH_ONLY),
        ("BAAI/bge-small-en-v1.5", ENGLISH_ONLY),
        ("intfloat/e5-base-v2", ENGLISH_ONLY),
        ("BAAI/bge-m3", ALL),
        ("intfloat/multilingual-e5-large", ALL),
        ("sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2", ALL),
        ("sentence-transformers/LaBSE", ALL),
        ("Alibaba-NLP/gte-multilingual-base", ALL),
        ("BAAI/bge-large-zh-v1.5", CHINESE),
        ("hashing:64", ALL),
        ("/models/my-own-model", ALL),
        ("acme/retriever-english", ENGLISH_ONLY),
    ],
)
def test_embedder_languages_from_the_model_name(model, langs):
    assert embedder_languages(model) == langs


def test_embedder_languages_setting_overrides_the_name():
    assert embedder_languages("sentence-transformers/all-MiniLM-L6-v2", "multilingual") == ALL
    assert embedder_languages("BAAI/bge-m3", "english") == ENGLISH_ONLY
    assert embedder_languages("x", "latin, cjk") == CHINESE
    assert embedder_languages("x", "latin,cjk,other") == ALL
    with pytest.raises(ConfigError, match="embedder_languages"):
        embedder_languages("x", "klingon")


def test_language_coverage_counts_words_and_cjk_characters():
    assert language_coverage("Who won Super Bowl 50?", ENGLISH_ONLY) == 1.0
    assert language_coverage("谁赢得了超级碗？", ENGLISH_ONLY) == 0.0
    mixed = language_coverage("Python 的 GIL 是什么", ENGLISH_ONLY)
    assert 0.0 < mixed < 0.5
    assert language_coverage("谁赢得了超级碗？", ALL) == 1.0
    assert language_coverage("Кто выиграл Супербоул?", ENGLISH_ONLY) == 0.0
    assert language_coverage("Кто выиграл Супербоул?", ALL) == 1.0
    assert language_coverage("Ça coûte combien, naïve?", ENGLISH_ONLY) == 1.0


def test_a_query_is_read_in_its_main_language():
    from rag_memory.knowledge_base.hybrid import language_factor

    assert language_factor(0.1) == 0.0  # a Chinese question naming one English term
    assert language_factor(1 / 3) == 0.0
    assert language_factor(0.5) == pytest.approx(0.5)
    assert language_factor(0.9) == 1.0


# -- fusion ------------------------------------------------------------------------------------


def hits(*pairs: tuple[str, float]) -> list[Hit]:
    return [Hit(cid, cid, score, f"/{cid}") for cid, score in pairs]


def test_a_chunk_both_retrievers_rank_high_beats_one_only_one_likes():
    dense = hits(("a", 0.9), ("c", 0.8), ("b", 0.1))
    lexical = hits(("b", 10.0), ("c", 9.0), ("a", 1.0))
    fused = fuse(dense, lexical, 0.5)
    assert [h.chunk_id for h in fused] == ["c", "a", "b"]
    top = fused[0]
    assert top.score == top.metadata["fused_score"]
    assert (top.metadata["dense_score"], top.metadata["bm25_score"]) == (0.8, 9.0)


def test_fused_scores_are_in_0_1_and_missing_scores_are_none():
    fused = fuse(hits(("a", 0.7), ("b", 0.2)), hits(("c", 3.0), ("a", 1.0)), 0.5)
    by_id = {h.chunk_id: h for h in fused}
    assert by_id["a"].score == pytest.approx(0.5)
    assert by_id["b"].metadata["bm25_score"] is None and by_id["c"].metadata["dense_score"] is None
    assert all(0.0 <= h.score <= 1.0 for h in fused)


def test_fusion_weight_follows_the_prior_and_each_lists_separation():
    peaked, flat = [9.0, 2.0, 1.9, 1.8, 1.7], [0.5, 0.5, 0.5, 0.5]
    assert fusion_weight(0.0, peaked, peaked) == 0.0
    assert fusion_weight(0.5, peaked, peaked) == pytest.approx(0.5)
    assert fusion_weight(0.5, flat, peaked) == 0.0  # an undecided dense list counts for nothing
    assert fusion_weight(0.5, peaked, []) == 1.0  # nothing matched the keywords
    assert fusion_weight(0.5, [0.9, 0.8], [3.0, 1.0]) == 0.5  # too few candidates to judge


def test_minmax():
    assert minmax([2.0, 4.0, 3.0]) == [0.0, 1.0, 0.5]
    assert minmax([1.0, 1.0]) == [1.0, 1.0]
    assert minmax([]) == []


# -- the retriever ------------------------------------------------------------------------------


def test_noise_dense_retriever_on_chinese_keeps_bm25s_top_hit(settings):
    retriever = build(settings, ZH_CHUNKS + EN_CHUNKS, NoiseEmbedder(), candidates=10)
    for query, want in [
        ("《战国无双3》是由哪两个公司合作开发的？", "game"),
        ("中国的首都是哪个城市？", "capital"),
        ("大熊猫吃什么？", "panda"),
        ("长江全长多少公里？", "river"),
        ("龙井茶产于哪里？", "tea"),
    ]:
        lexical_top = retriever.lexical.search(query, 1)[0].chunk_id
        top = retriever.retrieve(query, top_k=3)[0]
        assert top.chunk_id == lexical_top == want
        assert top.metadata["dense_weight"] == 0.0
    assert retriever.dense_prior("Who won Super Bowl 50?") == 0.5


def test_agreeing_retrievers_put_their_common_top_hit_first(settings):
    retriever = build(settings, EN_CHUNKS + ZH_CHUNKS, HashingEmbedder(64))
    top = retriever.retrieve("Denver Broncos Super Bowl", top_k=3)[0]
    assert top.chunk_id == "broncos"
    assert top.metadata["dense_rank"] == top.metadata["bm25_rank"] == 1
    assert top.score == pytest.approx(1.0)
    assert top.metadata["fused_score"] == top.score
    assert top.metadata["dense_score"] > 0 and top.metadata["bm25_score"] > 0


def test_modes_return_each_retrievers_own_scores(settings):
    retriever = build(settings, EN_CHUNKS, HashingEmbedder(64))
    dense = HybridRetriever(retriever.dense, retriever.lexical, mode="dense").retrieve("capital of France")
    assert dense[0].metadata["bm25_score"] is None and dense[0].score == dense[0].metadata["dense_score"]
    bm25 = HybridRetriever(retriever.dense, retriever.lexical, mode="bm25").retrieve("capital of France")
    assert bm25[0].chunk_id == "paris" and bm25[0].metadata["dense_score"] is None
    assert bm25[0].score == bm25[0].metadata["bm25_score"] > 0
    with pytest.raises(ConfigError, match="retrieval mode"):
        HybridRetriever(retriever.dense, retriever.lexical, mode="sparse")


def test_source_glob_and_where_filter_both_retrievers(settings):
    retriever = build(settings, EN_CHUNKS, HashingEmbedder(64), candidates=10)
    for mode in ("hybrid", "dense", "bm25"):
        r = HybridRetriever(retriever.dense, retriever.lexical, mode=mode, candidates=10)
        got = r.retrieve("capital largest city Germany France", top_k=5, source_glob="germany.md")
        assert got and {h.source for h in got} == {"/docs/germany.md"}, mode
        got = r.retrieve("capital largest city Germany France Rhine", top_k=5, where={"chunk_index": 1})
        assert [h.chunk_id for h in got] == ["rhine"], mode
        assert r.retrieve("capital", source_glob="*.pdf") == []


def test_min_score_applies_to_the_fused_score(settings):
    retriever = build(settings, EN_CHUNKS, HashingEmbedder(64))
    got = retriever.retrieve("Denver Broncos Super Bowl", top_k=4, min_score=0.99)
    assert [h.chunk_id for h in got] == ["broncos"]


def test_index_behind_the_store_is_filled_from_stored_chunks_once(settings):
    embedder = HashingEmbedder(64)
    store = ChromaStore(settings.collection, path=settings.chroma_path)
    store.upsert(EN_CHUNKS, embedder.embed_documents([c.text for c in EN_CHUNKS]), embedder_id=embedder.model_id)
    lexical = BM25Index(settings.home / "lexical.sqlite3", settings.collection)
    retriever = HybridRetriever(DenseRetriever(store, embedder), lexical)
    assert lexical.count() == 0
    assert retriever.retrieve("Denver Broncos")[0].chunk_id == "broncos"
    assert lexical.count() == 4
    assert retriever.retrieve("Denver Broncos")[0].metadata["bm25_score"] > 0


def test_mmr_trades_near_duplicates_for_diversity(settings):
    chunks = [chunk(f"dup{i}", f"apple pie recipe with baked apples and cinnamon, version {i}", f"/docs/d{i}.txt")
              for i in range(3)] + [
        chunk("orchard", "apple orchard harvest in the autumn season", "/docs/orchard.txt"),
        chunk("cars", "electric cars need charging stations", "/docs/cars.txt"),
    ]
    plain = build(settings, chunks, HashingEmbedder(256), candidates=10)
    top = [h.chunk_id for h in plain.retrieve("apple pie recipe", top_k=2)]
    assert set(top) <= {"dup0", "dup1", "dup2"}
    diverse = HybridRetriever(plain.dense, plain.lexical, candidates=10, mmr=True, mmr_lambda=0.5)
    picked = [h.chunk_id for h in diverse.retrieve("apple pie recipe", top_k=2)]
    assert picked[0].startswith("dup") and picked[1] == "orchard"


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
@pytest.mark.parametrize("mmr", [False, True])
def test_identical_chunks_collapse_to_one_hit(settings, mode, mmr):
    same = "The warranty covers parts and labour for two years."
    chunks = [chunk(f"copy{i}", same, "/docs/manual.docx", i) for i in range(4)] + [
        chunk("copy-elsewhere", same, "/docs/other.docx"),
        chunk("returns", "Returns are accepted within thirty days with a receipt.", "/docs/manual.docx", 9),
    ]
    retriever = build(settings, chunks, HashingEmbedder(256), candidates=10, mode=mode, mmr=mmr)
    hits = retriever.retrieve("How long does the warranty cover parts?", top_k=5)
    texts = [h.text for h in hits]
    assert texts.count(same) == 1
    kept = next(h for h in hits if h.text == same)
    assert len(kept.metadata["duplicates"]) == 4


def test_the_gate_abstains_on_off_topic_questions_in_both_languages(settings):
    from rag_memory.knowledge_base.hybrid import passes_gate

    rust = [
        chunk("point", "A Point<f32> struct holds x and y coordinates; the point is generic over T.", "/docs/rust.md"),
        chunk("scope", "变量的作用域从声明开始，到所在的代码块结束；块级作用域由 let 和 const 声明。", "/docs/es6.md"),
        chunk("promise", "Promise 对象有三种状态：pending、fulfilled 和 rejected，状态一旦改变就不会再变。", "/docs/es6.md", 1),
    ] + ZH_CHUNKS + EN_CHUNKS
    retriever = build(settings, rust, HashingEmbedder(256), candidates=10)

    def answered(question):
        return any(passes_gate(h, dense_gate=0.99) for h in retriever.retrieve(question, top_k=5))

    assert not answered("What is the boiling point of tungsten?")
    assert not answered("谁发明了电话？")
    assert not answered("Which river flows through Vienna?")
    assert answered("What does a Point<f32> struct hold?")
    assert answered("Promise 对象有哪几种状态？")
    assert answered("大熊猫吃什么？")
    # "Which team won Super Bowl 50?" covers 0.5 (team and won are in no chunk): under the
    # calibrated 0.54, like the 1.3% of held-out SQuAD questions that no longer answer.
    assert answered("Who won Super Bowl 50?")


def test_coverage_weighs_rare_and_unknown_terms_most(settings):
    retriever = build(settings, EN_CHUNKS, HashingEmbedder(256), candidates=10)
    hit = retriever.retrieve("capital of France tungsten", top_k=1)[0]
    assert hit.chunk_id == "paris"
    # "tungsten" is in no chunk: it weighs most, so the capital of France covers under half.
    assert 0.2 < hit.metadata["coverage"] < 0.5
    assert retriever.retrieve("capital of France", top_k=1)[0].metadata["coverage"] == pytest.approx(1.0)


def test_reranker_reorders_the_fused_head(settings):
    class ReverseReranker:
        def rerank(self, query, hits, top_k=None):
            out = [
                Hit(h.chunk_id, h.text, float(i), h.source, h.page, h.title, {**h.metadata, "rerank_score": float(i)})
                for i, h in enumerate(hits)
            ]
            return sorted(out, key=lambda h: -h.score)[:top_k]

    base = build(settings, EN_CHUNKS, HashingEmbedder(64), candidates=10)
    fused = [h.chunk_id for h in base.retrieve("capital city of France", top_k=4)]
    reranked = HybridRetriever(base.dense, base.lexical, reranker=ReverseReranker(), rerank_candidates=4)
    got = reranked.retrieve("capital city of France", top_k=4)
    assert [h.chunk_id for h in got] == fused[::-1]
    assert "rerank_score" in got[0].metadata and "fused_score" in got[0].metadata


def test_bad_options_are_config_errors(settings):
    base = build(settings, EN_CHUNKS[:1], HashingEmbedder(64))
    for kwargs in ({"candidates": 0}, {"dense_weight": 1.5}, {"mmr_lambda": -0.1}, {"top_k": 0},
                   {"languages": "martian"}, {"rerank_candidates": 0}):
        with pytest.raises(ConfigError):
            HybridRetriever(base.dense, base.lexical, **kwargs)
    with pytest.raises(ConfigError, match="empty"):
        base.retrieve("  ")


def test_the_gate_reads_coverage_and_ignores_a_cosine_the_embedder_cannot_give(settings):
    from rag_memory.knowledge_base.hybrid import passes_gate

    retriever = build(settings, ZH_CHUNKS + EN_CHUNKS, NoiseEmbedder(), candidates=10)
    got = retriever.retrieve("大熊猫吃什么？", top_k=10)
    top = got[0]
    assert 0.2 <= top.metadata["bm25_match"] <= 1.0
    assert top.metadata["dense_prior"] == 0.0
    assert top.metadata["coverage"] > 0.5 and passes_gate(top, dense_gate=0.25)
    # the English-only model's cosine says nothing about a Chinese query: dense-only hits fail
    dense_only = [h for h in got if h.metadata["bm25_score"] is None]
    assert dense_only and not any(passes_gate(h, dense_gate=-1.0) for h in dense_only)
    english = retriever.retrieve("Denver Broncos Super Bowl", top_k=10)
    assert english[0].chunk_id == "broncos" and passes_gate(english[0], dense_gate=0.99)


def test_index_without_a_store_is_treated_as_leftovers(settings):
    lexical = BM25Index(settings.home / "lexical.sqlite3", settings.collection)
    lexical.upsert(EN_CHUNKS)
    store = ChromaStore(settings.collection, path=settings.chroma_path)
    retriever = HybridRetriever(DenseRetriever(store, HashingEmbedder(64)), lexical, mode="bm25")
    assert retriever.retrieve("Denver Broncos") == []
    assert lexical.count() == 0


def test_a_zero_dense_weight_keeps_bm25s_order_even_on_ties():
    from rag_memory.knowledge_base.hybrid import fuse
    from rag_memory.schema import Hit

    def hit(cid, score):
        return Hit(chunk_id=cid, text=cid, score=score, source=f"/{cid}")

    lexical = [hit("a", 5.0), hit("b", 3.0), hit("c", 3.0), hit("d", 1.0)]
    dense = [hit("c", 0.9), hit("e", 0.8), hit("b", 0.1)]
    assert [h.chunk_id for h in fuse(dense, lexical, 0.0)][:4] == ["a", "b", "c", "d"]
    assert [h.chunk_id for h in fuse(dense, lexical, 1.0)][:3] == ["c", "e", "b"]


def test_dense_side_is_skipped_when_it_cannot_move_the_ranking(settings):
    class CountingNoise(NoiseEmbedder):
        queries = 0

        def embed_query(self, text):
            CountingNoise.queries += 1
            return super().embed_query(text)

    embedder = CountingNoise()
    retriever = build(settings, ZH_CHUNKS + EN_CHUNKS, embedder, candidates=10)
    alone = [h.chunk_id for h in retriever.lexical.search("中国的首都和长江", 3)]
    got = retriever.retrieve("中国的首都和长江", top_k=3)
    assert [h.chunk_id for h in got] == alone and CountingNoise.queries == 0
    # too few keyword matches: the dense side fills the list, after them
    few = retriever.retrieve("大熊猫", top_k=5)
    assert CountingNoise.queries == 1
    assert few[0].chunk_id == "panda" and len(few) == 5
    assert retriever.retrieve("Denver Broncos", top_k=3)[0].chunk_id == "broncos"
    assert CountingNoise.queries == 2


@pytest.mark.parametrize(
    ("query", "expected"),
    [("长江流经多少个省级行政区？", "river"), ("Which river flows to the North Sea?", "rhine")],
)
def test_hits_read_only_after_ranking_carry_the_stored_text_and_metadata(settings, query, expected):
    # Many near-duplicate fillers push the answer's rivals through fusion; only the returned
    # hits are read, and they come back whole (text, source, stored metadata, fusion scores).
    fillers = [chunk(f"f{i}", f"中国的城市 {i} and a city in Germany {i}", f"/docs/f{i}.txt") for i in range(60)]
    retriever = build(settings, ZH_CHUNKS + EN_CHUNKS + fillers, HashingEmbedder(256), candidates=50)
    retriever.lexical.prune_above = 0  # the two-step keyword search a large index uses
    hits = retriever.retrieve(query, top_k=3)
    assert hits[0].chunk_id == expected and len(hits) == 3
    source = next(c for c in ZH_CHUNKS + EN_CHUNKS if c.id == expected)
    assert (hits[0].text, hits[0].source, hits[0].title) == (source.text, source.source, "T")
    meta = hits[0].metadata
    assert meta["chunk_index"] == source.index and meta["bm25_score"] > 0 and meta["fused_score"] > 0
    assert meta["coverage"] > 0.5
    dense_only = HybridRetriever(retriever.dense, retriever.lexical, mode="dense").retrieve(query, top_k=2)
    assert all(h.text and h.source for h in dense_only)


class ThreadNotingEmbedder(HashingEmbedder):
    """A hashing embedder that may embed in the background and notes which thread embeds."""

    background_safe = True

    def __init__(self) -> None:
        super().__init__(256)
        self.threads: list[str] = []

    def _embed_query(self, text):
        import threading

        self.threads.append(threading.current_thread().name)
        return super()._embed_query(text)


@pytest.mark.parametrize("query", ["Which river flows to the North Sea?", "长江流经多少个省级行政区？"])
def test_hybrid_embeds_the_query_once_beside_the_keyword_search(settings, query):
    embedder = ThreadNotingEmbedder()
    retriever = build(settings, ZH_CHUNKS + EN_CHUNKS, embedder, candidates=10)
    hits = retriever.retrieve(query, top_k=2)
    assert hits[0].chunk_id in ("rhine", "river") and hits[0].metadata["dense_score"] is not None
    assert len(embedder.threads) == 1 and embedder.threads[0].startswith("ragmem-query-embed")  # once, beside
    bm25_only = HybridRetriever(retriever.dense, retriever.lexical, mode="bm25")
    bm25_only.retrieve("Which team won Super Bowl 50?")
    assert len(embedder.threads) == 1  # BM25 alone embeds nothing
