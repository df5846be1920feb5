from __future__ import annotations

from rag_memory.generation.extractive import ExtractiveAnswerer, split_sentences
from rag_memory.schema import Source

DOC = """# Deleted files

When you re-ingest a folder, every file that no longer exists is
removed: its chunks are deleted from the store.

```sh
ragmem search "what happens to deleted files on re-ingest?"
```

| deleted files | removed |
"""


def src(n: int, text: str, *, kind: str = "document", memory_kind: str | None = None, score: float = 0.6) -> Source:
    return Source(n=n, kind=kind, source=f"/d/{n}.md", page=None, score=score, text=text, memory_kind=memory_kind)


def test_sentences_skip_headings_code_and_tables_and_join_wrapped_lines():
    assert split_sentences(DOC) == [
        "When you re-ingest a folder, every file that no longer exists is removed: its chunks are deleted from the store."
    ]


def test_chinese_wrapped_lines_join_without_spaces():
    text = "中文文本文件不需要事先转换编码。ragmem 按以下顺序判断编码：先看字节顺序标记，\n有 BOM 的文件直接解码。"
    assert split_sentences(text) == [
        "中文文本文件不需要事先转换编码。",
        "ragmem 按以下顺序判断编码：先看字节顺序标记，有 BOM 的文件直接解码。",
    ]


def test_answer_cites_the_matching_sentence_and_never_quotes_a_past_exchange():
    answer = ExtractiveAnswerer().answer(
        "What happens to deleted files on re-ingest?",
        [
            src(1, DOC),
            src(2, "User: What happens to deleted files on re-ingest?\nAssistant: They vanish entirely forever.",
                kind="memory", memory_kind="exchange", score=0.9),
        ],
    )
    assert answer.startswith("When you re-ingest a folder") and answer.endswith("[1]")
    assert "vanish" not in answer and "[2]" not in answer


def test_the_same_sentence_from_two_sources_is_quoted_once():
    sentence = "Deleted files lose their chunks on the next ingest of their folder."
    answer = ExtractiveAnswerer().answer("deleted files chunks", [src(1, sentence), src(2, sentence)])
    assert answer == f"{sentence} [1]"


def test_a_stated_fact_can_answer_a_question_about_the_user():
    answer = ExtractiveAnswerer().answer(
        "What did I say my project was about?",
        [src(1, "The user's project is about solar panels.", kind="memory", memory_kind="fact")],
    )
    assert answer == "The user's project is about solar panels. [1]"
