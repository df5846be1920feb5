"""Rule-based extraction of facts users state about themselves (English and Chinese)."""

from __future__ import annotations

import pytest

from rag_memory.memory.facts import extract_facts


@pytest.mark.parametrize(
    ("text", "facts"),
    [
        ("my project is about solar panels", ["The user's project is about solar panels."]),
        ("My thesis is on battery degradation.", ["The user's thesis is on battery degradation."]),
        ("I work at Acme Corp and I live in Berlin.", ["The user works at Acme Corp.", "The user lives in Berlin."]),
        ("I work on retrieval systems.", ["The user works on retrieval systems."]),
        ("I prefer short answers with code examples.", ["The user prefers short answers with code examples."]),
        ("I'm a data scientist.", ["The user is a data scientist."]),
        ("I am an engineer at a bank", ["The user is an engineer at a bank."]),
        ("Call me Sam.", ["The user wants to be called Sam."]),
        ("Please remember that my deadline is Friday.", ["The user's deadline is Friday."]),
        ("Remember that we meet on Tuesdays with my team.", ["The user asked to remember: we meet on Tuesdays with their team."]),
        ("I'm working on a thesis about RAG.", ["The user is working on a thesis about RAG."]),
        ("I don't like long answers.", ["The user does not like long answers."]),
        (
            "Hi! My project is about solar panels, and I prefer short answers. How do I chunk PDFs?",
            ["The user's project is about solar panels.", "The user prefers short answers."],
        ),
        ("I prefer Python over Java; my name is Ada.", ["The user prefers Python over Java.", "The user's name is Ada."]),
        ("I'm Alice.", ["The user is Alice."]),
    ],
)
def test_english_first_person_statements(text, facts):
    assert extract_facts(text) == facts


@pytest.mark.parametrize(
    ("text", "facts"),
    [
        ("我的项目是关于太阳能电池板的。", ["用户的项目是关于太阳能电池板的。"]),
        ("我在北京工作，我喜欢简洁的回答。", ["用户在北京工作。", "用户喜欢简洁的回答。"]),
        ("我是一名数据科学家", ["用户是一名数据科学家。"]),
        ("我叫小明。", ["用户叫小明。"]),
        ("记住：我的截止日期是周五", ["用户的截止日期是周五。"]),
        ("记住我下周要去上海", ["用户要求记住：用户下周要去上海。"]),
        ("你好，我叫李雷，我在一家银行工作", ["用户叫李雷。", "用户在一家银行工作。"]),
        ("我正在做一个RAG项目", ["用户在做一个RAG项目。"]),
        ("叫我老王就行", ["用户希望被称为老王就行。"]),
    ],
)
def test_chinese_first_person_statements(text, facts):
    assert extract_facts(text) == facts


@pytest.mark.parametrize(
    "text",
    [
        "What is my project?",
        "what is my project about",
        "How do I configure my embedder?",
        "Do I work at Acme?",
        "I like that answer.",
        "I'm working on it.",
        "I'm not sure what chunking does.",
        "I'm tired.",
        "I am a bit confused about chunking.",
        "My question is how to chunk PDFs.",
        "I think the chunker is broken.",
        "If I work at home, can I use it?",
        "I'd like to know how chunking works.",
        "The project is about solar panels.",
        "",
        "   ",
        "我的项目是关于什么？",
        "我的项目是关于什么",
        "我喜欢它",
        "我是说这个不对",
        "我是不是应该用GPU？",
        "ragmem 如何处理中文文档？",
        "这个文件怎么处理",
    ],
)
def test_questions_and_vague_statements_are_not_facts(text):
    assert extract_facts(text) == []


def test_a_fact_said_twice_is_returned_once():
    assert extract_facts("I live in Paris. I live in Paris.") == ["The user lives in Paris."]
