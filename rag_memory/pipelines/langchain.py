"""LangChain adapters: ragmem's stages as LangChain retriever, Runnable, chat model, embeddings
and vector store, so a LangChain app can embed ragmem's knowledge base and memory.

    RagRetriever        BaseRetriever over the knowledge base (and, optionally, user memories)
    pipeline_runnable   the whole pipeline (question in, answer out) as an LCEL Runnable
    RagChatModel        a ragmem Generator (the local transformers model ...) as a BaseChatModel
    RagEmbeddings       a ragmem Embedder as LangChain Embeddings
    chroma_vectorstore  langchain_chroma.Chroma over the knowledge base's own collection

Reach them through ``RagPipeline.as_retriever()``, ``as_runnable()``, ``as_chat_model()``,
``as_embeddings()``, ``as_vectorstore()`` and ``chat_history()``. This module imports
langchain_core, so ``rag_memory`` imports it only on demand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Required, TypedDict

from langchain_core.callbacks import CallbackManagerForLLMRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.messages import ChatMessage as LCChatMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.prompt_values import PromptValue
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import run_in_executor
from langchain_core.runnables.utils import AddableDict
from pydantic import ConfigDict, Field

from rag_memory.errors import ConfigError
from rag_memory.generation.base import ChatMessage, GenerationConfig, Generator
from rag_memory.knowledge_base.embedders import Embedder, make_embedder
from rag_memory.pipelines.rag import AnswerStream, RagPipeline
from rag_memory.schema import Answer, Hit, Memory, Source

if TYPE_CHECKING:
    from langchain_chroma import Chroma

    from rag_memory.pipelines.components import Components

__all__ = [
    "PipelineRunnable",
    "RagChatModel",
    "RagEmbeddings",
    "RagQuestion",
    "RagRetriever",
    "chroma_vectorstore",
    "pipeline_runnable",
]


# -- documents ----------------------------------------------------------------------------
def hit_document(hit: Hit) -> Document:
    """A retrieved knowledge-base chunk as a LangChain ``Document``."""
    meta: dict[str, Any] = {
        "source": hit.source,
        "page": hit.page,
        "score": hit.score,
        "chunk_id": hit.chunk_id,
        "kind": "document",
        "title": hit.title,
    }
    for key in ("chunk_index", "start", "end", "fused_score", "dense_score", "bm25_score", "rerank_score", "coverage"):
        if key in hit.metadata:
            meta[key] = hit.metadata[key]
    return Document(page_content=hit.text, metadata=meta, id=hit.chunk_id)


def memory_document(memory: Memory) -> Document:
    """A recalled long-term memory as a LangChain ``Document`` (``kind="memory"``)."""
    return Document(
        page_content=memory.text,
        metadata={
            "source": f"memory:{memory.session_id}",
            "page": None,
            "score": memory.score,
            "chunk_id": memory.id,
            "kind": "memory",
            "user_id": memory.user_id,
            "session_id": memory.session_id,
            "created_at": memory.created_at,
            "memory_kind": memory.kind,
        },
        id=memory.id,
    )


def source_document(source: Source) -> Document:
    """A source injected into an answer's prompt, with its citation number ``n``."""
    return Document(
        page_content=source.text,
        metadata={
            "n": source.n,
            "source": source.source,
            "page": source.page,
            "score": source.score,
            "chunk_id": source.chunk_id,
            "kind": source.kind,
            "cut": source.cut,
        },
        id=source.chunk_id,
    )


# -- retriever ----------------------------------------------------------------------------
class RagRetriever(BaseRetriever):
    """The knowledge base (and optionally the user's long-term memory) as a LangChain retriever.

    Documents carry metadata ``source``, ``page``, ``score`` (the fused score in hybrid mode, the
    cosine in dense mode), ``fused_score``, ``dense_score`` (cosine), ``bm25_score``,
    ``coverage``, ``chunk_id``, ``kind`` (``document`` or ``memory``) and ``title``; memories also ``user_id``,
    ``session_id``, ``created_at`` and ``memory_kind``.

    Args:
        pipeline: The pipeline whose stages to search (default: ``RagPipeline()``).
        top_k: Chunks to return (default: the ``top_k`` setting).
        min_score: Drop chunks whose score is below this: the fused score in hybrid mode (the
            default; 0 to 1, the best hit is 1), the cosine in dense mode (default: the
            ``min_score`` setting).
        source_glob: Only chunks from sources matching this glob, e.g. ``*.md``.
        include_memory: Also return the user's recalled memories, after the chunks.
        user_id: Whose memories (default: the ``user`` setting).
        memory_top_k: Memories to return (default: the ``memory_top_k`` setting).
        memory_min_score: Drop memories scoring below this (default: ``memory_min_score``).

    ``top_k``, ``min_score``, ``source_glob`` and ``user_id`` can also be given per call:
    ``retriever.invoke(query, top_k=3)``.

    Example:
        >>> retriever = RagPipeline().as_retriever(top_k=3)
        >>> [d.metadata["source"] for d in retriever.invoke("how are deleted files handled?")]
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")  # a misspelt option fails

    pipeline: RagPipeline = Field(default_factory=RagPipeline)
    top_k: int | None = Field(default=None, ge=1)
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0)
    source_glob: str | None = None
    include_memory: bool = False
    user_id: str | None = None
    memory_top_k: int | None = Field(default=None, ge=0)
    memory_min_score: float | None = Field(default=None, ge=-1.0, le=1.0)

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        top_k: int | None = None,
        min_score: float | None = None,
        source_glob: str | None = None,
        user_id: str | None = None,
    ) -> list[Document]:
        parts = self.pipeline.components
        s = self.pipeline.settings
        hits = parts.retriever.retrieve(
            query,
            top_k=top_k or self.top_k,
            min_score=self.min_score if min_score is None else min_score,
            source_glob=source_glob or self.source_glob,
        )
        docs = [hit_document(h) for h in hits]
        k = s.memory_top_k if self.memory_top_k is None else self.memory_top_k
        if self.include_memory and k:
            floor = s.memory_min_score if self.memory_min_score is None else self.memory_min_score
            memories = [m for m in parts.memory.recall(user_id or self.user_id or s.user, query) if m.score >= floor][:k]
            docs.extend(memory_document(m) for m in memories)
        return docs


# -- the pipeline as a Runnable -------------------------------------------------------------
class RagQuestion(TypedDict, total=False):
    """A question for the pipeline Runnable; a plain string is a question too."""

    question: Required[str]
    session_id: str
    user_id: str
    top_k: int


_QUESTION_KEYS = tuple(RagQuestion.__annotations__)


def _merge(chunks: Iterator[Any]) -> Any:
    """One input from a stream of input chunks (strings and dicts add up)."""
    final: Any = None
    for chunk in chunks:
        final = chunk if final is None else final + chunk
    return final


class PipelineRunnable(Runnable[str | RagQuestion, Any]):
    """The RAG pipeline as an LCEL Runnable: a question in, the answer text out.

    The input is a string, a chat message or prompt value (its last message is the question),
    or a ``RagQuestion`` dict. ``session_id`` and ``user_id`` may also come from
    ``config={"configurable": {...}}``. ``stream`` yields the answer's pieces as the generator
    produces them; with ``return_sources=True`` the output is ``{"answer": str, "sources":
    [Document]}`` and the stream yields ``{"answer": piece}`` chunks then one ``{"sources": ...}``.
    Each call stores the exchange in the session, as ``RagPipeline.ask`` does.
    """

    name = "ragmem"

    def __init__(self, pipeline: RagPipeline, *, return_sources: bool = False) -> None:
        self.pipeline = pipeline
        self.return_sources = return_sources

    @property
    def InputType(self) -> Any:  # noqa: N802 - LangChain's name
        return str | RagQuestion

    @property
    def OutputType(self) -> Any:  # noqa: N802 - LangChain's name
        return dict if self.return_sources else str

    # -- input -----------------------------------------------------------------------------
    def _request(self, value: Any, config: RunnableConfig | None) -> dict[str, Any]:
        configurable = (config or {}).get("configurable", {})
        if isinstance(value, PromptValue):
            value = value.to_messages()[-1] if value.to_messages() else ""
        if isinstance(value, BaseMessage):
            value = value.text
        if isinstance(value, str):
            value = {"question": value}
        if not isinstance(value, dict):
            raise ConfigError(
                f"the ragmem Runnable takes a question string or a dict with keys {', '.join(_QUESTION_KEYS)},"
                f" got {type(value).__name__}"
            )
        unknown = sorted(set(value) - set(_QUESTION_KEYS))
        if unknown:
            raise ConfigError(
                f"unknown input key(s) {', '.join(map(repr, unknown))} for the ragmem Runnable;"
                f" valid keys: {', '.join(_QUESTION_KEYS)}"
            )
        if not isinstance(value.get("question"), str):
            raise ConfigError(f"the ragmem Runnable needs a 'question' string, got {value.get('question')!r}")
        return {
            "question": value["question"],
            "session_id": value.get("session_id") or configurable.get("session_id"),
            "user_id": value.get("user_id") or configurable.get("user_id"),
            "top_k": value.get("top_k"),
        }

    def _output(self, answer: Answer) -> Any:
        if self.return_sources:
            return {"answer": answer.answer, "sources": [source_document(s) for s in answer.sources]}
        return answer.answer

    # -- sync ------------------------------------------------------------------------------
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(self._ask, input, config, run_type="chain", **kwargs)

    def _ask(self, value: Any, config: RunnableConfig) -> Any:
        return self._output(self.pipeline.ask(**self._request(value, config)))

    def batch(
        self, inputs: list[Any], config: RunnableConfig | list[RunnableConfig] | None = None, *,
        return_exceptions: bool = False, **kwargs: Any,
    ) -> list[Any]:
        """Answer several questions; with the local transformers generator their answers are
        generated in one batched ``generate`` (``RagPipeline.ask_batch``), else one by one."""
        if len(inputs) < 2:
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        return self._batch_with_config(
            self._ask_all, inputs, config, return_exceptions=return_exceptions, run_type="chain", **kwargs
        )

    def _ask_all(self, values: list[Any], config: list[RunnableConfig]) -> list[Any]:
        requests = [self._request(v, c) for v, c in zip(values, config, strict=True)]
        return [self._output(a) for a in self.pipeline.ask_batch(requests)]

    def transform(
        self, input: Iterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        yield from self._transform_stream_with_config(input, self._pieces, config, run_type="chain", **kwargs)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        yield from self.transform(iter([input]), config, **kwargs)

    def _pieces(self, inputs: Iterator[Any], config: RunnableConfig) -> Iterator[Any]:
        stream = self.pipeline.stream(**self._request(_merge(inputs), config))
        yield from self._chunks(stream)

    def _chunks(self, stream: AnswerStream) -> Iterator[Any]:
        any_piece = False
        for piece in stream:
            any_piece = True
            yield AddableDict(answer=piece) if self.return_sources else piece
        if not any_piece:
            yield AddableDict(answer="") if self.return_sources else ""
        if self.return_sources:
            yield AddableDict(sources=[source_document(s) for s in stream.answer.sources])

    # -- async: the sync stream, stepped in an executor so the event loop stays free ----------
    async def atransform(
        self, input: AsyncIterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        async for chunk in self._atransform_stream_with_config(
            input, self._apieces, config, run_type="chain", **kwargs
        ):
            yield chunk

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        async def one() -> AsyncIterator[Any]:
            yield input

        async for chunk in self.atransform(one(), config, **kwargs):
            yield chunk

    async def _apieces(self, inputs: AsyncIterator[Any], config: RunnableConfig) -> AsyncIterator[Any]:
        final: Any = None
        async for chunk in inputs:
            final = chunk if final is None else final + chunk
        request = self._request(final, config)
        stream = await run_in_executor(config, lambda: self.pipeline.stream(**request))
        chunks = self._chunks(stream)
        done = object()
        while True:
            chunk = await run_in_executor(config, next, chunks, done)
            if chunk is done:
                return
            yield chunk


def pipeline_runnable(pipeline: RagPipeline, *, return_sources: bool = False) -> PipelineRunnable:
    """The pipeline as a Runnable; see ``PipelineRunnable``."""
    return PipelineRunnable(pipeline, return_sources=return_sources)


# -- chat model -----------------------------------------------------------------------------
_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "ai": "assistant", "system": "system"}


def to_chat_messages(messages: Sequence[BaseMessage]) -> list[ChatMessage]:
    """LangChain messages as ragmem chat messages (system, user and assistant text only)."""
    out = []
    for m in messages:
        if isinstance(m, SystemMessage):
            role = "system"
        elif isinstance(m, HumanMessage):
            role = "user"
        elif isinstance(m, AIMessage) and not m.tool_calls:
            role = "assistant"
        elif isinstance(m, LCChatMessage) and m.role.lower() in _ROLES:
            role = _ROLES[m.role.lower()]
        else:
            raise ConfigError(
                f"a ragmem chat model reads system, human and AI text messages, not a {type(m).__name__}"
                f"{' with tool calls' if isinstance(m, AIMessage) else ''}; it has no tool calling"
            )
        out.append(ChatMessage(role, m.text))
    return out


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first stop sequence, and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


class RagChatModel(BaseChatModel):
    """A ragmem generator (the local transformers model, an OpenAI-compatible server ...) as a
    LangChain chat model.

    It reads system, human and AI text messages; it has no tool calling or structured output.
    ``stop`` sequences are applied to the generated text (the stream stops at the first one).

    Args:
        generator: The ragmem ``Generator``.
        max_tokens: The most tokens an answer may have.
        temperature: 0 decodes greedily; above 0 samples.
        top_p: Nucleus sampling cut-off, with ``temperature`` above 0.
        stop: Stop sequences applied to every call.

    Example:
        >>> llm = RagPipeline().as_chat_model()
        >>> llm.invoke("Say hello").content
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    generator: Generator
    max_tokens: int = Field(default=512, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: list[str] | None = None

    @property
    def _llm_type(self) -> str:
        return f"ragmem-{self.generator.backend}"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "backend": self.generator.backend,
            "model": self.generator.model_id,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop or self.stop, **kwargs)
        params["ls_provider"] = "ragmem"
        params.setdefault("ls_model_name", self.generator.model_id)
        return params

    def _config(self, kwargs: dict[str, Any]) -> GenerationConfig:
        return GenerationConfig(
            max_new_tokens=kwargs.get("max_tokens") or self.max_tokens,
            temperature=kwargs.get("temperature", self.temperature),
            top_p=kwargs.get("top_p", self.top_p),
        )

    def _usage(self, before: Any, messages: list[ChatMessage], text: str) -> UsageMetadata:
        # The generator's own count when it finished this call. (Calls running at once on one
        # generator share last_usage; no lock here, as a stalled consumer would block the others.)
        usage = self.generator.last_usage
        if usage is not None and usage is not before:
            prompt, completion = usage.prompt_tokens, usage.completion_tokens
        else:  # cut short at a stop sequence: the generator did not finish its accounting
            prompt = self.generator.count_message_tokens(messages)
            completion = self.generator.count_tokens(text) if text else 0
        return UsageMetadata(input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        chunks = list(self._stream(messages, stop, None, **kwargs))
        text = "".join(c.text for c in chunks)
        last = chunks[-1].message
        message = AIMessage(
            content=text, usage_metadata=last.usage_metadata, response_metadata=last.response_metadata
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        chat = to_chat_messages(messages)
        config = self._config(kwargs)
        stops = [s for s in (stop if stop is not None else self.stop or []) if s]
        hold = max((len(s) for s in stops), default=1) - 1  # text that may be the start of a stop
        before = self.generator.last_usage
        pieces = self.generator.stream(chat, config)
        text = sent = ""
        stopped = False
        try:
            for piece in pieces:
                text += piece
                if stops:
                    text, stopped = _cut_at_stop(text, stops)
                ready = text if stopped else text[: max(len(text) - hold, len(sent))]
                if len(ready) > len(sent):
                    yield self._chunk(ready[len(sent) :], run_manager)
                    sent = ready
                if stopped:
                    break
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()  # stops a local model's generation thread
        if len(text) > len(sent):
            yield self._chunk(text[len(sent) :], run_manager)
        usage = self._usage(before, chat, text)
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=usage,
                response_metadata={
                    "model_name": self.generator.model_id,
                    "backend": self.generator.backend,
                    "finish_reason": "stop" if stopped else None,
                },
                chunk_position="last",
            )
        )

    @staticmethod
    def _chunk(text: str, run_manager: CallbackManagerForLLMRun | None) -> ChatGenerationChunk:
        chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
        if run_manager is not None:
            run_manager.on_llm_new_token(text, chunk=chunk)
        return chunk


# -- embeddings -----------------------------------------------------------------------------
class RagEmbeddings(Embeddings):
    """A ragmem embedder as LangChain ``Embeddings`` (unit-length vectors).

    Args:
        embedder: A ragmem ``Embedder``, or a name as in the ``embedder`` setting
            (``all-MiniLM-L6-v2``, ``hashing``, a model path ...); default: the configured one.
        device: Where a named model runs (``auto``, ``cpu``, ``cuda`` ...).

    Example:
        >>> emb = RagEmbeddings("hashing")
        >>> len(emb.embed_query("hello"))
        1024
    """

    def __init__(self, embedder: Embedder | str | None = None, *, device: str = "auto") -> None:
        if embedder is None:
            from rag_memory.config import Settings

            s = Settings.load()
            embedder = make_embedder(
                s.embedder, device=s.device, batch_size=s.embed_batch_size, cache_dir=s.cache_path / "onnx",
                allow_downloads=s.allow_downloads,
            )
        elif isinstance(embedder, str):
            embedder = make_embedder(embedder, device=device)
        elif not isinstance(embedder, Embedder):
            raise ConfigError(f"RagEmbeddings needs a ragmem Embedder or an embedder name, got {embedder!r}")
        self.embedder = embedder

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed_documents(list(texts))

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.embed_query(text)


# -- vector store ---------------------------------------------------------------------------
def chroma_vectorstore(components: Components) -> Chroma:
    """The knowledge base's own Chroma collection as a ``langchain_chroma.Chroma`` store.

    Same client (embedded folder or server), same collection, ragmem's embedder, and cosine
    similarity as relevance; a missing collection is created in cosine space and bound to the
    embedder exactly as ``ragmem ingest`` would. Documents added through it live beside the
    ingested chunks: ragmem's retriever finds them, and ``ragmem ingest`` leaves them alone.

    Raises:
        EmbedderMismatchError: The collection was built with another embedder.
    """
    from langchain_chroma import Chroma

    from rag_memory.knowledge_base.store import distance_to_score

    store, embedder = components.store, components.embedder
    store.open_for_writing(embedder.model_id, embedder.dimension)
    return Chroma(
        client=store.client,
        collection_name=store.name,
        embedding_function=RagEmbeddings(embedder),
        relevance_score_fn=distance_to_score,
    )
