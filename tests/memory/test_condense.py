"""Follow-up detection and condensation into standalone questions (English and Chinese)."""

from __future__ import annotations

import pytest

from rag_memory.errors import GenerationError
from rag_memory.memory.condense import condense_prompt, condense_question, is_follow_up
from rag_memory.schema import Turn


def turns(*pairs: tuple[str, str]) -> list[Turn]:
    return [
        Turn(role=role, content=content, user_id="u", session_id="s", created_at="2024-01-01T00:00:00+00:00", id=i)
        for i, (role, content) in enumerate(pairs)
    ]


DELETED = turns(
    ("user", "What happens to deleted files on re-ingest?"),
    ("assistant", "Their chunks are removed from the knowledge base."),
)
ZH = turns(("user", "重新导入时删除的文件会怎样？"), ("assistant", "它们的分块会从知识库中移除。"))


@pytest.mark.parametrize(
    "question",
    [
        "And changed files?", "What about PDFs?", "How about the Chinese version?", "Why?", "Why is that?",
        "How does it work?", "What does that mean?", "Can you explain this in more detail?", "Is it configurable?",
        "How do I make it use the GPU?", "Does this approach work for Chinese?", "Tell me more", "also for docx?",
        "But what if the file is huge?", "What does ragmem do with it?", "Why not?",
        "那 PDF 呢？", "它是怎么工作的？", "这个怎么配置？", "那个参数是什么意思？", "为什么？", "为什么", "还有呢？",
        "PDF呢？", "它们会被删除吗", "还有别的办法吗？",
    ],
)
def test_follow_ups_are_detected(question):
    assert is_follow_up(question)


@pytest.mark.parametrize(
    "question",
    [
        "How does ragmem chunk PDF files?", "What happens to deleted files on re-ingest?",
        "If I delete a file, does ragmem remove its chunks?", "Can ragmem read PDFs and index them?",
        "Is it possible to use a Chroma server?", "What is the default embedder?",
        "Why does ragmem use cosine similarity for scoring?", "Is it true that ragmem works offline?",
        "How long does it take to ingest 1000 files?", "What is my project about?",
        "How do I set the chunk size in ragmem.toml?", "", "   ",
        "ragmem 如何处理中文文档？", "如果删除一个文件，ragmem 会删除它的分块吗？", "ragmem 默认使用哪个嵌入模型？",
    ],
)
def test_standalone_questions_are_not_follow_ups(question):
    assert not is_follow_up(question)


def test_standalone_question_passes_through_unchanged_even_with_history():
    question = "How does ragmem chunk PDF files?"
    called = []
    assert condense_question(question, DELETED, rewrite=lambda p: called.append(p) or "x?") == question
    assert called == []


def test_follow_up_without_history_passes_through_unchanged():
    assert condense_question("And changed files?", []) == "And changed files?"
    # Only the question itself stored so far is no history either.
    assert condense_question("And changed files?", turns(("user", "And changed files?"))) == "And changed files?"


def test_a_follow_up_naming_a_new_subject_swaps_it_into_the_previous_question():
    assert condense_question("And changed files?", DELETED) == "What happens to changed files on re-ingest?"
    pdf = turns(("user", "How does ragmem chunk PDF files?"), ("assistant", "By page."))
    assert condense_question("And DOCX?", pdf) == "How does ragmem chunk DOCX files?"


def test_a_follow_up_that_is_a_whole_question_keeps_only_itself():
    normans = turns(("user", "Who were the Normans?"), ("assistant", "A people of France."))
    assert condense_question("And what year did the Vikings reach Iceland?", normans) == (
        "What year did the Vikings reach Iceland?"
    )


def test_a_pronoun_borrows_the_previous_subject():
    chicago = turns(("user", "Who founded the University of Chicago?"), ("assistant", "John D. Rockefeller."))
    assert condense_question("When was it built?", chicago) == "When was University of Chicago built?"


def test_a_bare_follow_up_borrows_the_whole_previous_question():
    assert condense_question("Why?", DELETED) == "Why? (following up on: What happens to deleted files on re-ingest?)"
    assert condense_question("What about it?", DELETED).endswith(
        "(following up on: What happens to deleted files on re-ingest?)"
    )


def test_heuristic_ignores_the_question_itself_when_already_stored():
    history = [*DELETED, *turns(("user", "And changed files?"))]
    assert condense_question("And changed files?", history) == "What happens to changed files on re-ingest?"


def test_a_chain_of_follow_ups_keeps_the_original_subject():
    history = [*DELETED, *turns(("user", "What about PDFs?"), ("assistant", "The same."))]
    condensed = condense_question("Why?", history)
    assert condensed.startswith("Why? (following up on: What happens to deleted files on re-ingest?")


def test_chinese_follow_ups_keep_their_own_subject():
    assert condense_question("那修改过的文件呢？", ZH) == "重新导入修改过的文件会怎样？"
    promise = turns(("user", "Promise 对象有哪三种状态？"), ("assistant", "pending、fulfilled 和 rejected。"))
    assert condense_question("那 Set 呢？", promise) == "Set 对象有哪三种状态？"
    assert condense_question("为什么？", ZH) == "为什么？（接上一个问题：重新导入时删除的文件会怎样？）"


def test_a_chinese_pronoun_borrows_the_previous_subject():
    book = turns(("user", "《战国无双3》是由谁开发的？"), ("assistant", "光荣。"))
    assert condense_question("它是哪一年发售的？", book) == "《战国无双3》是哪一年发售的？"


def test_rewrite_is_used_with_a_prompt_built_from_recent_turns():
    prompts: list[str] = []

    def rewrite(prompt: str) -> str:
        prompts.append(prompt)
        return "Standalone question: What happens to changed files on re-ingest?\n"

    out = condense_question("And changed files?", DELETED, rewrite=rewrite)
    assert out == "What happens to changed files on re-ingest?"
    [prompt] = prompts
    assert "User: What happens to deleted files on re-ingest?" in prompt
    assert "Assistant: Their chunks are removed from the knowledge base." in prompt
    assert "Follow-up question: And changed files?" in prompt
    assert "Do not answer" in prompt and prompt.rstrip().endswith("Standalone question:")


def test_rewrite_prompt_asks_for_chinese_for_a_chinese_question():
    prompt = condense_prompt("那修改过的文件呢？", ZH)
    assert "Chinese" in prompt and "用中文" in prompt and "重新导入时删除的文件会怎样？" in prompt
    out = condense_question("那修改过的文件呢？", ZH, rewrite=lambda p: "「重新导入时修改过的文件会怎样？」")
    assert out == "重新导入时修改过的文件会怎样？"


def test_prompt_uses_only_the_last_few_turns():
    history = turns(*[("user" if i % 2 == 0 else "assistant", f"message number {i}") for i in range(20)])
    prompt = condense_prompt("And why?", history)
    assert "message number 19" in prompt and "message number 13" not in prompt


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   \n ",
        "What happens to changed files on re-ingest? " * 20,  # far too long
        "Yes, changed files are re-chunked and their old chunks replaced.",  # an answer
        "Changed files are re-chunked. Their old chunks are deleted. Nothing else changes.",
        "What happens to changed files?\nThey are re-chunked on the next run.",
    ],
)
def test_bad_rewrite_output_falls_back_to_the_heuristic(bad):
    out = condense_question("And changed files?", DELETED, rewrite=lambda p: bad)
    assert out == "What happens to changed files on re-ingest?"


def test_a_rewrite_in_the_wrong_language_falls_back():
    out = condense_question("那修改过的文件呢？", ZH, rewrite=lambda p: "What happens to changed files?")
    assert out == "重新导入修改过的文件会怎样？"


def test_a_failing_llm_falls_back():
    def rewrite(prompt: str) -> str:
        raise GenerationError("the model is not loaded")

    assert condense_question("And changed files?", DELETED, rewrite=rewrite) == "What happens to changed files on re-ingest?"


def test_a_chinese_request_opening_is_not_taken_for_the_subject():
    bcpl = turns(("user", "能给我介绍一下什么是BCPL么？"), ("assistant", "一种编程语言。"))
    assert condense_question("它由谁提出来的？", bcpl) == "BCPL由谁提出来的？"


def test_a_question_word_after_an_adverb_still_makes_a_whole_question():
    museum = turns(("user", "Which department sponsors the Victoria and Albert Museum?"), ("assistant", "DCMS."))
    assert condense_question("And approximately how many paintings does the museum have?", museum) == (
        "Approximately how many paintings does the museum have?"
    )
