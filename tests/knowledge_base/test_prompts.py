"""Known embedding families get the query/passage prompts their model cards require."""

from __future__ import annotations

import numpy as np
import pytest

from rag_memory.knowledge_base.embedders import SentenceTransformerEmbedder
from rag_memory.knowledge_base.embedders.prompts import NONE, Prompts, declared_prompts, prompts_for

BGE_ZH = "为这个句子生成表示以用于检索相关文章："


@pytest.mark.parametrize(
    "model, query, passage",
    [
        ("intfloat/multilingual-e5-small", "query: ", "passage: "),
        ("intfloat/multilingual-e5-base", "query: ", "passage: "),
        ("/models/multilingual-e5-large", "query: ", "passage: "),  # a local folder, by its name
        ("intfloat/e5-base-v2", "query: ", "passage: "),
        ("BAAI/bge-small-zh-v1.5", BGE_ZH, ""),
        ("BAAI/bge-large-zh", BGE_ZH, ""),
        ("BAAI/bge-base-en-v1.5", "Represent this sentence for searching relevant passages: ", ""),
        ("BAAI/bge-m3", "", ""),
        ("nomic-ai/nomic-embed-text-v1.5", "search_query: ", "search_document: "),
        ("sentence-transformers/all-MiniLM-L6-v2", "", ""),
        ("C:\\models\\multilingual-e5-small", "query: ", "passage: "),
    ],
)
def test_the_prompt_table(model, query, passage):
    assert prompts_for(model) == Prompts(query, passage)


def test_instruct_e5_puts_an_instruction_on_queries_only():
    p = prompts_for("intfloat/multilingual-e5-large-instruct")
    assert p.query.startswith("Instruct: ") and p.query.endswith("Query: ") and p.passage == ""


def test_a_models_own_declared_prompts_win():
    assert declared_prompts({"query": "q> ", "document": "d> "}) == Prompts("q> ", "d> ")
    assert declared_prompts({"query": "", "passage": ""}) is None
    assert declared_prompts(None) is None


class _FakeST:
    """Records what sentence-transformers' encode was asked to prepend."""

    def __init__(self):
        self.calls = []
        self.prompts = {}

    def encode(self, texts, *, prompt=None, **kwargs):
        self.calls.append((list(texts), prompt))
        return np.ones((len(texts), 4), dtype=np.float32)


@pytest.mark.parametrize(
    "model, query, passage",
    [("intfloat/multilingual-e5-small", "query: ", "passage: "), ("BAAI/bge-small-zh-v1.5", BGE_ZH, ""),
     ("all-MiniLM-L6-v2", "", "")],
)
def test_the_sentence_transformers_backend_applies_them(model, query, passage):
    embedder = SentenceTransformerEmbedder(model)
    fake = _FakeST()
    embedder._model = fake  # loaded: skip warm_up's download
    embedder.embed_query("长期记忆是什么？")
    embedder.embed_documents(["长期记忆机制", "chunking"])
    assert fake.calls == [(["长期记忆是什么？"], query), (["长期记忆机制", "chunking"], passage)]


def test_minilm_vectors_are_unchanged_by_the_empty_prompt(minilm):
    raw = minilm.model.encode(["hello world"], normalize_embeddings=True)[0]
    assert minilm.prompts == NONE
    assert np.allclose(minilm.embed_documents(["hello world"])[0], raw, atol=1e-6)
