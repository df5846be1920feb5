"""LangChain's standard test suites (``langchain_tests``) run against ragmem's adapters.

Each suite checks an adapter against LangChain's interface contract. Tests a suite cannot apply
to ragmem (tool calling, multimodal inputs, per-call model override ...) are switched off
through the suite's documented properties below, each with the reason; the suite itself then
skips them with its own message.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import (
    ChatModelIntegrationTests,
    EmbeddingsIntegrationTests,
    RetrieversIntegrationTests,
    VectorStoreIntegrationTests,
)
from langchain_tests.unit_tests import ChatModelUnitTests, EmbeddingsUnitTests

from rag_memory.generation.select import Selection
from rag_memory.pipelines.components import Components
from rag_memory.pipelines.langchain import RagChatModel, RagEmbeddings, RagRetriever, chroma_vectorstore
from rag_memory.pipelines.rag import RagPipeline
from tests.helpers.fakes import RecordingGenerator

# The suites' async tests run on asyncio through anyio's pytest plugin (sync tests ignore it).
pytestmark = pytest.mark.anyio

DOCS = {
    "sync.md": "# Sync\n\nWhen a file is deleted, re-ingest removes its chunks from the knowledge base.",
    "changes.md": "# Changes\n\nChanged files are re-chunked and their changed chunks are embedded again.",
    "boats.txt": "Boats sail down the river to the sea. Ferries cross the bay every hour.",
    "greatwall.txt": "长城是中国古代的军事防御工程。长城全长两万多公里。",
    "beijing.txt": "北京是中国的首都。故宫在北京的中心。",
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _knowledge_base(settings, root) -> RagPipeline:
    root.mkdir()
    for name, text in DOCS.items():
        (root / name).write_text(text, encoding="utf-8")
    parts = Components(settings.replace(embedder="hashing:1024"))
    parts.ingestor().run([root])
    parts.generation = Selection(RecordingGenerator())
    return RagPipeline(components=parts)


# -- retriever --------------------------------------------------------------------------------
class TestRagRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _pipeline(self, settings, tmp_path) -> None:
        self.pipeline = _knowledge_base(settings, tmp_path / "docs")

    @property
    def retriever_constructor(self) -> type[RagRetriever]:
        return RagRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline}

    @property
    def retriever_query_example(self) -> str:
        return "What happens to deleted files on re-ingest?"

    @property
    def num_results_arg_name(self) -> str:
        return "top_k"  # ragmem's name for it, as in the top_k setting


class TestRagRetrieverChineseStandard(TestRagRetrieverStandard):
    @property
    def retriever_query_example(self) -> str:
        return "长城有多长？"


# -- embeddings -------------------------------------------------------------------------------
class TestRagEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[RagEmbeddings]:
        return RagEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"embedder": "hashing:64"}


class TestRagEmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[RagEmbeddings]:
        return RagEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"embedder": "hashing:64"}


@pytest.mark.slow
class TestRagEmbeddingsMiniLMIntegration(EmbeddingsIntegrationTests):
    """The bundled MiniLM (ragmem's default embedder), loaded once for the session."""

    @pytest.fixture(autouse=True)
    def _minilm(self, minilm) -> None:
        self.minilm = minilm

    @property
    def embeddings_class(self) -> type[RagEmbeddings]:
        return RagEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"embedder": self.minilm}


# -- vector store -----------------------------------------------------------------------------
class TestChromaVectorStoreStandard(VectorStoreIntegrationTests):
    """``langchain_chroma.Chroma`` over the knowledge base's collection, on a fresh home per test."""

    @pytest.fixture
    def vectorstore(self, settings) -> VectorStore:
        return chroma_vectorstore(Components(settings.replace(embedder="hashing:1024")))


# -- chat model -------------------------------------------------------------------------------
class _ChatModelProperties:
    """What a ragmem chat model does not do, for both chat-model suites."""

    @property
    def chat_model_class(self) -> type[RagChatModel]:
        return RagChatModel

    @property
    def has_tool_calling(self) -> bool:
        return False  # ragmem generators produce text only: no tool calls

    @property
    def has_structured_output(self) -> bool:
        return False  # no tool calling and no JSON mode, so no structured output

    @property
    def supports_json_mode(self) -> bool:
        return False

    @property
    def supports_model_override(self) -> bool:
        return False  # a RagChatModel wraps one loaded generator; it cannot switch models per call


class TestRagChatModelUnit(_ChatModelProperties, ChatModelUnitTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"generator": RecordingGenerator("Hello there.")}


class TestRagChatModelIntegration(_ChatModelProperties, ChatModelIntegrationTests):
    """Against the real transformers generator on the tiny random-weight Qwen2 (greedy)."""

    @pytest.fixture(autouse=True)
    def _generator(self, tiny_chat_model) -> None:
        from rag_memory.generation.transformers_generator import TransformersGenerator

        self.generator = TransformersGenerator(str(tiny_chat_model), device="cpu")

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"generator": self.generator, "max_tokens": 12}
