"""The cross-encoder reranker, run for real on a tiny random-weight BERT built in the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_memory.errors import ConfigError, EmbedderError
from rag_memory.knowledge_base.rerank import CrossEncoderReranker
from rag_memory.schema import Hit

_WORDS = (
    "the capital of france is paris berlin germany city river rhine north sea denver broncos won super bowl"
    " what which who where team largest"
).split()
_CHARS = list("北京是中国的首都长江大熊猫吃竹子什么哪里")


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory) -> Path:
    """A one-layer BERT with a one-logit head and a WordPiece vocabulary written here."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-cross-encoder")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_WORDS, *_CHARS, *".,?!0123456789"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, num_labels=1,
    )
    model = BertForSequenceClassification(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def hits() -> list[Hit]:
    texts = ["Paris is the capital of France.", "Berlin is the capital of Germany.",
             "The Rhine river flows to the North Sea.", "北京是中国的首都。"]
    return [Hit(f"c{i}", t, 1.0 - i / 10, f"/docs/{i}.txt", None, "T", {"source": f"/docs/{i}.txt"})
            for i, t in enumerate(texts)]


def test_init_loads_nothing_and_warm_up_is_idempotent(tiny_cross_encoder):
    reranker = CrossEncoderReranker(str(tiny_cross_encoder), device="cpu")
    assert reranker._model is None
    reranker.warm_up()
    model = reranker._model
    reranker.warm_up()
    assert model is not None and reranker._model is model


def test_rerank_orders_by_the_cross_encoders_scores(tiny_cross_encoder):
    reranker = CrossEncoderReranker(str(tiny_cross_encoder), device="cpu", batch_size=2)
    query = "what is the capital of france?"
    got = reranker.rerank(query, hits())
    expected = reranker.score(query, [h.text for h in hits()])
    assert sorted(expected, reverse=True) == pytest.approx([h.score for h in got])
    assert [h.metadata["rerank_score"] for h in got] == [h.score for h in got]
    first_stage = {h.chunk_id: h.score for h in hits()}
    assert all(h.metadata["retrieval_score"] == first_stage[h.chunk_id] for h in got)
    assert all(h.metadata["source"] == h.source for h in got)
    assert len(reranker.rerank(query, hits(), top_k=2)) == 2
    assert reranker.rerank(query, []) == []


def test_scores_do_not_depend_on_batching(tiny_cross_encoder):
    texts = [h.text for h in hits()]
    one = CrossEncoderReranker(str(tiny_cross_encoder), device="cpu", batch_size=1).score("paris", texts)
    four = CrossEncoderReranker(str(tiny_cross_encoder), device="cpu", batch_size=4).score("paris", texts)
    assert one == pytest.approx(four, abs=1e-5)


def test_missing_model_is_an_embedder_error_naming_it(tmp_path):
    missing = tmp_path / "no-such-cross-encoder"
    missing.mkdir()
    reranker = CrossEncoderReranker(str(missing), device="cpu")
    with pytest.raises(EmbedderError, match="no-such-cross-encoder"):
        reranker.warm_up()


def test_bad_arguments_are_config_errors(tiny_cross_encoder):
    with pytest.raises(ConfigError):
        CrossEncoderReranker("")
    with pytest.raises(ConfigError):
        CrossEncoderReranker("x", batch_size=0)
    with pytest.raises(ConfigError):
        CrossEncoderReranker(str(tiny_cross_encoder), device="cpu").rerank("q", hits(), top_k=0)
