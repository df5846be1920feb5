"""Keyword terms: stemmed English words, CJK unigrams and bigrams, question words dropped."""

from __future__ import annotations

import pytest

from rag_memory.text.stemmer import porter_stem
from rag_memory.text.terms import lexical_terms


def test_english_terms_are_stemmed_lowercase_words_without_stop_words():
    assert lexical_terms("Which cities HOST the Olympics?") == ["citi", "host", "olymp"]
    assert lexical_terms("connected connecting connection") == ["connect"] * 3


def test_chinese_terms_are_characters_and_bigrams_without_question_words():
    terms = lexical_terms("长江有多长")
    assert terms[:4] == ["长", "江", "有", "多"]
    assert {"长江", "江有", "有多", "多长"} <= set(terms)
    # 什么 (what) and its characters carry no topic
    assert not {"什", "么", "什么"} & set(lexical_terms("长江是什么"))


def test_full_width_and_accented_letters_match_their_plain_forms():
    assert lexical_terms("ＡＢＣ １２３ Café") == lexical_terms("abc 123 cafe")


@pytest.mark.parametrize(
    ("word", "stem"),
    [("caresses", "caress"), ("ponies", "poni"), ("relational", "relat"), ("conditional", "condit"),
     ("hopping", "hop"), ("filing", "file"), ("happy", "happi"), ("generalization", "gener"),
     ("agreed", "agre"), ("controlling", "control"), ("roll", "roll"), ("is", "is")],
)
def test_porter_stems_match_the_published_examples(word, stem):
    assert porter_stem(word) == stem


def test_question_phrases_of_ordinary_characters_are_dropped_whole():
    from rag_memory.text.terms import lexical_terms

    assert lexical_terms("周会什么时候开？") == ["周", "会", "周会", "开"]
    assert "时候" not in lexical_terms("他是什么时候出生的") and "出生" in lexical_terms("他是什么时候出生的")
    # Outside a question phrase the same characters stay terms.
    assert "时候" in lexical_terms("小时候的事")
