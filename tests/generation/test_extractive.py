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


def test_abbreviations_decimals_and_inline_code_do_not_end_a_sentence():
    text = (
        "Dr. Smith arrived at 3 p.m. and paid 3.5 dollars, e.g. in cash vs. by card. "
        "Use `a?b` to match one optional character. It had 12,500 users in 2019."
    )
    assert split_sentences(text) == [
        "Dr. Smith arrived at 3 p.m. and paid 3.5 dollars, e.g. in cash vs. by card.",
        "Use `a?b` to match one optional character.",
        "It had 12,500 users in 2019.",
    ]


def test_chinese_sentences_keep_closing_quotes_and_drop_the_sources_own_questions():
    text = "一个常见的问题是：Promise 和回调到底是什么关系？Promise 对象有三种状态。他说：“状态一旦改变就不会再变。”价格是3.5元。"
    assert split_sentences(text) == [
        "Promise 对象有三种状态。",
        "他说：“状态一旦改变就不会再变。”",
        "价格是3.5元。",
    ]


def test_markdown_and_html_debris_never_reach_an_answer():
    text = (
        "<!-- a comment that mentions chunk overlap -->\n[overlap]: https://example.com/overlap\n\n"
        "See [the chunking guide](https://example.com) for **chunk overlap** settings.<br>\n"
    )
    assert split_sentences(text) == ["See the chunking guide for chunk overlap settings."]


def test_code_stays_with_the_sentence_that_introduces_it():
    text = "To install ragmem, run the following command:\n\n```sh\npip install ragmem\n```\n"
    answer = ExtractiveAnswerer().answer("How do I install ragmem?", [src(1, text)])
    assert answer.startswith("To install ragmem, run the following command: [1]")
    assert "pip install ragmem" in answer


def test_a_list_question_gets_the_whole_list():
    text = "Intro text about style.\n\nThere are three rules:\n\n- Keep it short.\n- Keep it clear.\n- Keep it kind.\n"
    answer = ExtractiveAnswerer().answer("What are the three rules?", [src(1, text)])
    assert all(rule in answer for rule in ("Keep it short.", "Keep it clear.", "Keep it kind."))


def test_a_how_many_question_prefers_the_sentence_with_a_number():
    text = "The library has many readers and a large reading room. The library holds 40,000 books in its stacks."
    answer = ExtractiveAnswerer(max_sentences=1).answer("How many books does the library hold?", [src(1, text)])
    assert answer == "The library holds 40,000 books in its stacks. [1]"


def test_answers_stay_within_the_length_limits():
    long_en = " ".join(f"Sentence {i} talks about solar panels and their efficiency in winter." for i in range(30))
    answer = ExtractiveAnswerer().answer("How efficient are solar panels in winter?", [src(1, long_en)])
    assert len(answer.replace("[1]", "").split()) <= 60
    long_zh = "".join(f"第{i}句讲的是太阳能电池板在冬天的效率问题。" for i in range(30))
    answer = ExtractiveAnswerer().answer("太阳能电池板冬天的效率怎么样？", [src(1, long_zh)])
    assert len(answer.replace("[1]", "")) <= 120


def test_a_question_about_the_user_answers_from_memory_first():
    docs = src(1, "The name of the project is set in pyproject.toml under [project].")
    fact = src(2, "The user's name is Alice.", kind="memory", memory_kind="fact", score=0.4)
    assert ExtractiveAnswerer().answer("What is my name?", [docs, fact]).startswith("The user's name is Alice. [2]")
    zh_fact = src(2, "用户叫小明。", kind="memory", memory_kind="fact", score=0.4)
    zh_doc = src(1, "项目的名字叫 ragmem，写在配置文件里。")
    assert ExtractiveAnswerer().answer("我叫什么名字？", [zh_doc, zh_fact]).startswith("用户叫小明。 [2]")


def test_json_lines_of_a_fence_cut_off_by_chunking_are_not_prose():
    # The chunk starts inside a ```json block, so no fence marks it as code.
    text = (
        '  "answer": "When you re-ingest a folder, deleted files are removed.",\n'
        '  "text": "## Using a server\\n\\nBy default the store is embedded.",\n'
        "}\n```\n\nA Chroma server is named by the chroma_url setting."
    )
    assert split_sentences(text) == ["A Chroma server is named by the chroma_url setting."]


def test_a_parenthetical_split_off_its_sentence_is_not_quoted_alone():
    from rag_memory.generation.extractive import split_sentences

    text = (
        "A fragment takes the previous question with its subject swapped in.\n"
        "(\"What happens to deleted files?\" then \"And changed files?\" becomes a new question.)\n"
        "Deleted files lose their chunks on the next ingest. 删除的文件在下次导入时失去它们的片段。"
    )
    sentences = split_sentences(text)
    assert not any(s.startswith(("(", "（")) for s in sentences)
    assert "Deleted files lose their chunks on the next ingest." in sentences


def test_english_splitter_keeps_citation_marks_and_initials_and_splits_after_a_plain_no():
    text = (
        "He left Colorado Springs.[citation needed] His lab was torn down.:121,154 "
        "Examiner H.W. Wembley and J. K. Rowling met at No. 5 Main Street. The answer is no. Then it rained."
    )
    assert split_sentences(text) == [
        "He left Colorado Springs.[citation needed]",
        "His lab was torn down.:121,154",
        "Examiner H.W. Wembley and J. K. Rowling met at No. 5 Main Street.",
        "The answer is no.",
        "Then it rained.",
    ]


class _WordEmbedder:
    """Vectors from a few words' presence, so the cosine says which sentence is about 'harbour'."""

    model_id = "fake-multilingual"
    words = ("harbour", "ships", "city", "river")

    def _vec(self, text: str) -> list[float]:
        v = [float(w in text.lower()) for w in self.words] + [0.1]
        norm = sum(x * x for x in v) ** 0.5
        return [x / norm for x in v]

    def embed_query(self, text: str) -> list[float]:
        return self._vec(text.replace("port", "harbour ships"))

    def embed_documents(self, texts) -> list[list[float]]:
        return [self._vec(t) for t in texts]


def test_the_embedders_cosine_picks_the_sentence_that_answers_where_terms_tie():
    text = "The port of Hamburg lies on the river Elbe in the city. Ships reach the harbour through a deep channel."
    question = "How do ships reach the port of Hamburg?"
    plain = ExtractiveAnswerer(max_sentences=1).answer(question, [src(1, text)])
    with_cosine = ExtractiveAnswerer(max_sentences=1, embedder=_WordEmbedder()).answer(question, [src(1, text)])
    assert plain.startswith("The port of Hamburg")
    assert with_cosine == "Ships reach the harbour through a deep channel. [1]"


def test_an_english_only_embedder_is_not_asked_about_a_chinese_question():
    class Refuses(_WordEmbedder):
        model_id = "sentence-transformers/all-MiniLM-L6-v2"

        def embed_documents(self, texts):
            raise AssertionError("MiniLM does not read Chinese: its cosine must not count")

    answer = ExtractiveAnswerer(embedder=Refuses()).answer("汉堡港在哪条河上？", [src(1, "汉堡港位于易北河畔。")])
    assert answer == "汉堡港位于易北河畔。 [1]"


def test_a_long_chinese_sentence_is_quoted_by_whole_clauses_that_fit():
    clause = "对当地植物群落进行了深入考察"
    sentence = "，".join([clause] * 5) + "，并将多种植物样本带回西方，今天位于波士顿南部的阿诺德植物园保留了许多标本。"
    pieces = split_sentences(sentence)
    assert len(pieces) >= 2 and all(len(p) <= 82 for p in pieces)
    assert pieces[0].endswith("…") and pieces[-1].startswith("…") and pieces[-1].endswith("标本。")
    # Nothing lost or cut inside a clause: the pieces, without the marks, are the sentence.
    assert "".join(p.strip("…") for p in pieces).replace("，", "") == sentence.replace("，", "")
    answer = ExtractiveAnswerer().answer("阿诺德植物园保留了什么？", [src(1, sentence)])
    assert "阿诺德植物园保留了许多标本" in answer and len(answer.replace("[1]", "").strip()) <= 120


def test_an_ellipsis_inside_a_quote_ends_no_sentence():
    text = 'They read "1... 2... 3...". Tesla said, "It is not an experiment ... I have built it." Then he left.'
    assert split_sentences(text) == [
        'They read "1... 2... 3...".', 'Tesla said, "It is not an experiment ... I have built it."', "Then he left.",
    ]
