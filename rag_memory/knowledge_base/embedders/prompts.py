"""The query/passage prompts known embedding families need, by model id or path.

Retrieval models are trained with a fixed text in front of queries (and some in front of
documents); leaving it out costs several points of recall, and the model card is the only place
that says so. ``prompts_for`` looks a model up here; a model whose own
``config_sentence_transformers.json`` names ``query`` / ``passage`` (or ``document``) prompts
uses those instead (``SentenceTransformerEmbedder`` checks that after loading).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BGE_EN = "Represent this sentence for searching relevant passages: "
_BGE_ZH = "为这个句子生成表示以用于检索相关文章："
_E5_INSTRUCT = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery: "


@dataclass(frozen=True)
class Prompts:
    """Text put in front of a query and of a stored passage (empty: nothing)."""

    query: str = ""
    passage: str = ""


NONE = Prompts()

# First match wins; each pattern is searched in the lower-cased model id or path.
KNOWN_PROMPTS: tuple[tuple[str, Prompts], ...] = (
    # intfloat/multilingual-e5-large-instruct and e5-mistral: an instruction on queries only
    (r"e5-.*instruct|e5-mistral", Prompts(_E5_INSTRUCT, "")),
    # intfloat/e5-*, multilingual-e5-{small,base,large}: "query: " / "passage: " (model card, FAQ 1)
    (r"(^|[/_-])(multilingual-)?e5-(small|base|large)", Prompts("query: ", "passage: ")),
    # BAAI/bge-m3 needs no instruction
    (r"bge-m3", NONE),
    # BAAI/bge-{small,base,large}-zh(-v1.5): the Chinese retrieval instruction on short queries
    (r"bge-(small|base|large)-zh", Prompts(_BGE_ZH, "")),
    # BAAI/bge-*-en(-v1.5), mixedbread mxbai-embed-large, Snowflake arctic-embed (v1): the English one
    (r"bge-(small|base|large)-en|mxbai-embed-large|snowflake-arctic-embed-[xsml]", Prompts(_BGE_EN, "")),
    # nomic-embed-text v1/v1.5: task prefixes on both sides
    (r"nomic-embed-text", Prompts("search_query: ", "search_document: ")),
)


def prompts_for(model: str) -> Prompts:
    """The prompts a known model family needs, from its id or path; ``NONE`` for others.

    Example:
        >>> prompts_for("intfloat/multilingual-e5-small")
        Prompts(query='query: ', passage='passage: ')
        >>> prompts_for("sentence-transformers/all-MiniLM-L6-v2")
        Prompts(query='', passage='')
    """
    name = model.replace("\\", "/").lower()
    for pattern, prompts in KNOWN_PROMPTS:
        if re.search(pattern, name):
            return prompts
    return NONE


def declared_prompts(saved: dict[str, str] | None) -> Prompts | None:
    """The prompts a model's own sentence-transformers config declares, if it names any."""
    saved = {k: v for k, v in (saved or {}).items() if v}
    query = saved.get("query", "")
    passage = saved.get("passage") or saved.get("document") or ""
    return Prompts(query, passage) if query or passage else None
