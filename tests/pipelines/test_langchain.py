"""ragmem inside LangChain apps: retriever, Runnable, chat model, chat history, embeddings, Chroma."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory

from rag_memory.errors import ConfigError, EmbedderMismatchError
from rag_memory.generation.extractive import ExtractiveAnswerer
from rag_memory.generation.select import Selection
from rag_memory.knowledge_base.store import EMBEDDER_KEY
from rag_memory.pipelines.components import Components
from rag_memory.pipelines.langchain import RagChatModel, RagEmbeddings, RagRetriever
from rag_memory.pipelines.rag import RagPipeline
from tests.helpers.fakes import RecordingGenerator
from tests.helpers.pdf import write_pdf

DOCS = {
    "sync.md": "# Sync\n\nWhen a file is deleted, re-ingest removes its chunks from the knowledge base.\n\n"
    "Changed files are re-chunked and their changed chunks are embedded again.",
    "boats.txt": "Boats sail down the river to the sea. Ferries cross the bay every hour.",
    "greatwall.txt": "长城是中国古代的军事防御工程。长城全长两万多公里。",
}
DELETED = "What happens to deleted files on re-ingest?"
ANSWER = "Deleted files lose their chunks [1]."


class SteppingGenerator(RecordingGenerator):
    """Records each piece at the moment it is produced, to tell streaming from buffering."""

    def __init__(self, answer: str = ANSWER) -> None:
        super().__init__(answer)
        self.produced: list[str] = []

    def stream(self, messages, config=None):
        for piece in super().stream(messages, config):
            self.produced.append(piece)
            yield piece


@pytest.fixture
def docs_dir(tmp_path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    for name, text in DOCS.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def parts(settings, docs_dir) -> Components:
    s = settings.replace(embedder="hashing:1024", relevance_gate=0.1, memory_min_score=0.15)
    parts = Components(s)
    parts.ingestor().run([docs_dir])
    return parts


@pytest.fixture
def gen(parts) -> SteppingGenerator:
    gen = SteppingGenerator()
    parts.generation = Selection(gen)
    return gen


@pytest.fixture
def rag(parts, gen) -> RagPipeline:
    return RagPipeline(components=parts)


def names(docs: list[Document]) -> list[str]:
    return [Path(d.metadata["source"]).name for d in docs]


# -- retriever --------------------------------------------------------------------------------
def test_retriever_documents_carry_source_page_score_chunk_id_and_kind(rag, parts):
    retriever = rag.as_retriever(top_k=2)
    docs = retriever.invoke(DELETED)

    assert isinstance(retriever, BaseRetriever)
    assert names(docs)[0] == "sync.md" and len(docs) == 2
    hits = parts.retriever.retrieve(DELETED, top_k=2)
    for doc, hit in zip(docs, hits, strict=True):
        assert doc.page_content == hit.text and doc.id == hit.chunk_id
        assert doc.metadata["source"] == hit.source and doc.metadata["page"] is None
        assert doc.metadata["score"] == pytest.approx(hit.score) and doc.metadata["chunk_id"] == hit.chunk_id
        assert doc.metadata["kind"] == "document"
    assert docs[0].metadata["score"] > docs[1].metadata["score"]
    assert parts.store.has_ids([d.metadata["chunk_id"] for d in docs]) == {d.id for d in docs}


def test_retriever_batch_and_ainvoke_agree_with_invoke(rag):
    retriever = rag.as_retriever(top_k=2)
    queries = [DELETED, "长城有多长？"]

    batched = retriever.batch(queries)
    awaited = asyncio.run(retriever.ainvoke(queries[1]))

    assert batched == [retriever.invoke(q) for q in queries]
    assert awaited == batched[1]
    assert names(batched[1])[0] == "greatwall.txt"


def test_a_source_filtered_retriever_works_from_other_threads_and_event_loops(rag, parts):
    # source_glob reads the manifest (SQLite, opened by the ingest in this thread) from
    # batch()'s worker threads and ainvoke()'s executor: once a sqlite3.ProgrammingError.
    assert parts.manifest.sources()  # the connection exists, made in this thread
    retriever = rag.as_retriever(top_k=3, source_glob="*.txt")
    queries = [DELETED, "长城有多长？", "ferries boats", "长城"]

    batched = retriever.batch(queries, config={"max_concurrency": 4})
    awaited = asyncio.run(_gather(retriever, queries))

    assert batched == awaited == [retriever.invoke(q) for q in queries]
    assert all(set(names(docs)) <= {"boats.txt", "greatwall.txt"} and docs for docs in batched)
    assert names(batched[1])[0] == "greatwall.txt"


async def _gather(retriever, queries):
    return list(await asyncio.gather(*(retriever.ainvoke(q) for q in queries)))


def test_chinese_question_retrieves_the_chinese_chunk_first(rag):
    docs = rag.as_retriever().invoke("长城有多长？")
    assert names(docs)[0] == "greatwall.txt"
    assert "两万多公里" in docs[0].page_content


def test_top_k_min_score_and_source_glob_work_in_the_constructor_and_per_call(rag):
    assert len(rag.as_retriever(top_k=1).invoke(DELETED)) == 1
    assert len(rag.as_retriever().invoke(DELETED, top_k=2)) == 2
    assert set(names(rag.as_retriever(source_glob="*.txt").invoke(DELETED))) == {"boats.txt", "greatwall.txt"}
    assert names(rag.as_retriever().invoke(DELETED, source_glob="sync.*")) == ["sync.md"]
    # in hybrid mode min_score applies to the fused score, whose best hit is 1.0 by construction
    strict_docs = rag.as_retriever(min_score=0.99).invoke(DELETED)
    assert 1 <= len(strict_docs) < len(DOCS) and all(d.metadata["score"] >= 0.99 for d in strict_docs)
    strict = rag.as_retriever(min_score=0.99).invoke(DELETED, min_score=-1.0)
    assert len(strict) == len(DOCS)


def test_bad_retriever_options_are_refused(rag):
    with pytest.raises(ValueError, match="top_k"):
        rag.as_retriever(top_k=0)
    with pytest.raises(ValueError, match="min_score"):
        rag.as_retriever(min_score=2.0)
    with pytest.raises(ValueError, match="topk"):
        rag.as_retriever(topk=3)


def test_pdf_chunks_carry_their_page(settings, tmp_path):
    root = tmp_path / "pdfs"
    root.mkdir()
    write_pdf(root / "manual.pdf", ["Cover page of the manual.", "Ferries cross the bay every hour."])
    parts = Components(settings.replace(embedder="hashing:1024"))
    parts.ingestor().run([root])

    doc = RagPipeline(components=parts).as_retriever(top_k=1).invoke("how often do ferries cross the bay?")[0]

    assert doc.metadata["page"] == 2 and names([doc]) == ["manual.pdf"]


def test_include_memory_adds_the_users_own_memories_as_memory_documents(rag):
    rag.ask("My project is about solar panels on boats.", session_id="a1", user_id="alice")

    alice = rag.as_retriever(include_memory=True, user_id="alice").invoke("What is my project about? solar panels")
    bob = rag.as_retriever(include_memory=True, user_id="bob").invoke("What is my project about? solar panels")
    plain = rag.as_retriever().invoke("What is my project about? solar panels")

    memories = [d for d in alice if d.metadata["kind"] == "memory"]
    assert memories and any("solar panels" in d.page_content for d in memories)
    assert all(d.metadata["user_id"] == "alice" and d.metadata["source"] == "memory:a1" for d in memories)
    assert {"score", "chunk_id", "page", "created_at"} <= set(memories[0].metadata)
    assert all(d.metadata["kind"] == "document" for d in bob + plain)
    # the per-call user wins over the constructor's
    per_call = rag.as_retriever(include_memory=True, user_id="bob").invoke("solar panels project", user_id="alice")
    assert any(d.metadata["kind"] == "memory" for d in per_call)


def test_retriever_with_no_pipeline_uses_the_effective_configuration(settings, docs_dir, monkeypatch):
    monkeypatch.setenv("RAGMEM_EMBEDDER", "hashing:1024")
    Components(settings.replace(embedder="hashing:1024")).ingestor().run([docs_dir])

    docs = RagRetriever(top_k=1).invoke(DELETED)

    assert names(docs) == ["sync.md"]


# -- the pipeline as a Runnable ---------------------------------------------------------------
def test_runnable_answers_a_string_with_the_knowledge_in_the_prompt(rag, gen):
    runnable = rag.as_runnable()

    assert isinstance(runnable, Runnable)
    assert runnable.invoke(DELETED) == ANSWER
    assert "re-ingest removes its chunks" in gen.prompt and "sync.md" in gen.prompt


def test_runnable_dict_input_keeps_the_session_and_the_user(rag, gen, parts):
    runnable = rag.as_runnable()
    runnable.invoke({"question": DELETED, "session_id": "s1", "user_id": "alice"})
    runnable.invoke({"question": "And changed files?", "session_id": "s1", "user_id": "alice"})

    assert [m.role for m in gen.calls[-1]] == ["system", "user", "assistant", "user"]
    assert gen.calls[-1][1].content == DELETED
    assert [t.role for t in parts.history.turns("alice", "s1")] == ["user", "assistant"] * 2
    assert parts.history.turns("default", "s1") == []


def test_session_and_user_may_come_from_the_configurable_config(rag, parts):
    rag.as_runnable().invoke(DELETED, config={"configurable": {"session_id": "c1", "user_id": "carol"}})
    assert [t.content for t in parts.history.turns("carol", "c1")] == [DELETED, ANSWER]


def test_stream_yields_each_piece_as_it_is_generated(rag, gen):
    stream = rag.as_runnable().stream(DELETED)

    first = next(stream)
    assert first == "Deleted" and gen.produced == ["Deleted"]  # nothing generated ahead of the consumer
    assert [first, *stream] == ["Deleted", " files", " lose", " their", " chunks", " [1]."]


def test_runnable_composes_with_lcel_pieces(rag, gen):
    chain = (
        RunnableLambda(lambda topic: {"question": f"What happens to {topic} on re-ingest?", "session_id": "lcel"})
        | rag.as_runnable()
        | StrOutputParser()
        | RunnableLambda(str.upper)
    )

    assert chain.invoke("deleted files") == ANSWER.upper()
    assert gen.prompt.endswith("Question: What happens to deleted files on re-ingest?")
    pieces = list((rag.as_runnable() | StrOutputParser()).stream(DELETED))
    assert len(pieces) > 1 and "".join(pieces) == ANSWER


def test_batch_answers_english_and_chinese_questions(rag, gen):
    gen.answer = "好的 [1]。"
    answers = rag.as_runnable().batch([DELETED, {"question": "长城有多长？", "session_id": "zh"}])

    assert answers == ["好的 [1]。", "好的 [1]。"]
    prompts = [call[-1].content for call in gen.calls]
    assert any("长城全长两万多公里" in p for p in prompts)
    assert any("re-ingest removes its chunks" in p for p in prompts)


def test_async_invoke_and_stream(rag):
    runnable = rag.as_runnable()

    async def run():
        pieces = [p async for p in runnable.astream({"question": "长城有多长？"})]
        return await runnable.ainvoke(DELETED), pieces

    answer, pieces = asyncio.run(run())
    assert answer == ANSWER
    assert pieces == ["Deleted", " files", " lose", " their", " chunks", " [1]."]


def test_return_sources_gives_the_answer_and_its_numbered_sources(rag):
    runnable = rag.as_runnable(return_sources=True)

    out = runnable.invoke({"question": DELETED, "user_id": "u1"})
    chunks = list(runnable.stream({"question": DELETED, "user_id": "u2"}))  # u1's memory is not u2's

    assert set(out) == {"answer", "sources"} and out["answer"] == ANSWER
    first = out["sources"][0]
    assert isinstance(first, Document) and names([first]) == ["sync.md"]
    assert first.metadata["n"] == 1 and first.metadata["kind"] == "document"
    assert {"source", "page", "score", "chunk_id", "kind"} <= set(first.metadata)
    assert [set(c) for c in chunks[:-1]] == [{"answer"}] * 6 and set(chunks[-1]) == {"sources"}
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    assert merged["answer"] == ANSWER and merged["sources"] == out["sources"]


def test_an_abstained_answer_has_no_sources(rag, gen):
    out = rag.as_runnable(return_sources=True).invoke("quantum chromodynamics lattice gauge")
    assert out["sources"] == [] and gen.calls == []
    assert "nothing relevant" in out["answer"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"question": "hi", "sesion_id": "typo"}, "sesion_id"),
        ({"session_id": "s"}, "'question' string"),
        (42, "question string"),
    ],
)
def test_bad_runnable_input_names_the_problem(rag, value, message):
    with pytest.raises(ConfigError, match=message):
        rag.as_runnable().invoke(value)


def test_a_chat_prompt_value_is_taken_as_its_last_message(rag, gen):
    prompt = ChatPromptTemplate.from_messages([("human", "What happens to {what} on re-ingest?")])
    assert (prompt | rag.as_runnable()).invoke({"what": "deleted files"}) == ANSWER
    assert gen.prompt.endswith("Question: What happens to deleted files on re-ingest?")


# -- chat model -------------------------------------------------------------------------------
def test_chat_model_maps_roles_and_reports_usage():
    gen = RecordingGenerator("Hello there friend.")
    llm = RagChatModel(generator=gen, max_tokens=7, temperature=0.5)

    result = llm.invoke([SystemMessage("Be brief."), HumanMessage("hi"), AIMessage("hello"), HumanMessage("你好")])

    assert isinstance(llm, BaseChatModel) and llm._llm_type == "ragmem-fake"
    assert [(m.role, m.content) for m in gen.calls[-1]] == [
        ("system", "Be brief."), ("user", "hi"), ("assistant", "hello"), ("user", "你好"),
    ]
    assert gen.configs[-1].max_new_tokens == 7 and gen.configs[-1].temperature == 0.5
    assert result.content == "Hello there friend."
    assert result.usage_metadata == {
        "input_tokens": gen.last_usage.prompt_tokens, "output_tokens": 3,
        "total_tokens": gen.last_usage.prompt_tokens + 3,
    }
    assert result.response_metadata["model_name"] == "recording-fake"
    llm.invoke("again", max_tokens=3)
    assert gen.configs[-1].max_new_tokens == 3


def test_chat_model_streams_message_chunks_ending_with_the_last_marker():
    gen = SteppingGenerator("one two three")
    chunks = []
    for chunk in RagChatModel(generator=gen).stream("count"):
        chunks.append(chunk)
        if len(chunks) == 1:
            assert gen.produced == ["one"]

    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert [c.content for c in chunks] == ["one", " two", " three", ""]
    assert chunks[-1].chunk_position == "last" and chunks[-1].usage_metadata["output_tokens"] == 3


def test_stop_sequences_cut_the_answer_and_stop_generating():
    gen = SteppingGenerator("alpha beta gamma delta epsilon")
    llm = RagChatModel(generator=gen)

    assert llm.invoke("go", stop=["gam"]).content == "alpha beta "
    assert gen.produced[-1] == " gamma"  # generation stopped there
    gen.produced.clear()
    pieces = [c.content for c in RagChatModel(generator=gen, stop=["a ga"]).stream("go")]
    assert "".join(pieces) == "alpha bet"
    assert gen.produced == ["alpha", " beta", " gamma"]


def test_tool_messages_are_refused():
    llm = RagChatModel(generator=RecordingGenerator())
    with pytest.raises(ConfigError, match="ToolMessage"):
        llm.invoke([HumanMessage("hi"), ToolMessage("42", tool_call_id="t1")])


def test_the_pipelines_chat_model_is_its_generator_with_its_settings(rag, gen):
    llm = rag.as_chat_model()
    assert llm.generator is gen and llm.max_tokens == rag.settings.max_new_tokens
    assert llm.invoke("hello").content == ANSWER


def test_without_a_language_model_as_chat_model_is_a_config_error(parts):
    parts.generation = Selection(ExtractiveAnswerer(), ["no local weights for the model 'x'"])
    with pytest.raises(ConfigError, match="no local weights"):
        RagPipeline(components=parts).as_chat_model()


def test_chat_model_runs_the_real_tiny_transformers_model(tiny_chat_model):
    from rag_memory.generation.transformers_generator import TransformersGenerator

    llm = RagChatModel(generator=TransformersGenerator(str(tiny_chat_model), device="cpu"), max_tokens=8)
    chunks = list(llm.stream([HumanMessage("长城有多长？")]))
    text = "".join(c.content for c in chunks)

    assert text.strip() and chunks[-1].chunk_position == "last"
    assert 1 <= chunks[-1].usage_metadata["output_tokens"] <= 8
    assert llm.invoke("长城有多长？").content == text  # greedy: the same answer


# -- chat history in an LCEL chain ------------------------------------------------------------
def test_chat_history_keeps_an_lcel_chains_conversation_where_ragmem_sees_it(rag, gen, parts):
    gen.answer = "Noted, Ada."
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are terse."), MessagesPlaceholder("history"), ("human", "{question}")]
    )
    chain = RunnableWithMessageHistory(
        prompt | rag.as_chat_model() | StrOutputParser(),
        lambda session_id: rag.chat_history(session_id, user_id="alice"),
        input_messages_key="question",
        history_messages_key="history",
    )
    config = {"configurable": {"session_id": "lc1"}}

    assert chain.invoke({"question": "My name is Ada."}, config=config) == "Noted, Ada."
    chain.invoke({"question": "我叫什么名字？"}, config=config)

    assert [(m.role, m.content) for m in gen.calls[-1]] == [
        ("system", "You are terse."), ("user", "My name is Ada."), ("assistant", "Noted, Ada."),
        ("user", "我叫什么名字？"),
    ]
    turns = parts.history.turns("alice", "lc1")
    assert [t.content for t in turns] == ["My name is Ada.", "Noted, Ada.", "我叫什么名字？", "Noted, Ada."]
    # the pipeline itself reads the same conversation as recent history
    rag.ask(DELETED, session_id="lc1", user_id="alice")
    assert gen.calls[-1][1].content == "My name is Ada."


# -- embeddings -------------------------------------------------------------------------------
def test_embeddings_are_the_pipelines_embedder(rag, parts):
    emb = rag.as_embeddings()

    assert isinstance(emb, Embeddings) and emb.model_id == "hashing:1024"
    assert emb.embed_query("长城") == parts.embedder.embed_query("长城")
    assert emb.embed_documents(["a b", "c"]) == parts.embedder.embed_documents(["a b", "c"])
    assert len(RagEmbeddings("hashing:64").embed_query("x")) == 64


def test_embeddings_refuse_what_is_not_an_embedder():
    with pytest.raises(ConfigError, match="Embedder"):
        RagEmbeddings(42)


# -- the knowledge base as a LangChain Chroma store -------------------------------------------
def test_vectorstore_finds_what_ingest_stored_with_ragmems_scores(rag, parts):
    from langchain_chroma import Chroma

    store = rag.as_vectorstore()
    found = store.similarity_search_with_relevance_scores(DELETED, k=2)
    hits = parts.dense_retriever.retrieve(DELETED, top_k=2)  # the same cosine ranking Chroma does

    assert isinstance(store, Chroma)
    assert [d.id for d, _ in found] == [h.chunk_id for h in hits]
    assert [s for _, s in found] == pytest.approx([h.score for h in hits])
    assert found[0][0].metadata["source"] == hits[0].source and names([found[0][0]]) == ["sync.md"]
    zh = store.similarity_search("长城有多长？", k=1)[0]
    assert names([zh]) == ["greatwall.txt"]


def test_vectorstore_leaves_the_collections_space_and_binding_alone(rag, parts):
    rag.as_vectorstore()
    col = parts.store.client.get_collection(parts.store.name)
    assert col.configuration["hnsw"]["space"] == "cosine"
    assert col.metadata[EMBEDDER_KEY] == "hashing:1024"


def test_vectorstore_on_an_empty_home_creates_the_collection_ragmem_ingest_uses(settings, docs_dir):
    s = settings.replace(embedder="hashing:1024")
    RagPipeline(s).as_vectorstore()
    parts = Components(s)

    assert parts.store.client.get_collection(s.collection).configuration["hnsw"]["space"] == "cosine"
    assert parts.store.bound_embedder() == ("hashing:1024", 1024)
    parts.ingestor().run([docs_dir])  # no embedder mismatch
    assert names(RagPipeline(components=parts).as_vectorstore().similarity_search(DELETED, k=1)) == ["sync.md"]


def test_vectorstore_with_another_embedder_is_refused(parts):
    other = Components(parts.settings.replace(embedder="hashing:64"))
    with pytest.raises(EmbedderMismatchError, match="hashing:1024"):
        RagPipeline(components=other).as_vectorstore()


def test_documents_added_through_the_vectorstore_live_beside_ingested_ones(rag, parts, docs_dir):
    store = rag.as_vectorstore()
    store.add_documents([Document("Ferries are painted yellow.", metadata={"source": "manual"})], ids=["extra"])

    report = parts.ingestor().run([docs_dir])  # ingest deletes only the chunks it wrote

    # the one repair is the keyword index taking in the new document, so hybrid search finds it
    assert report.repaired == 1 and parts.store.has_ids(["extra"]) == {"extra"}
    assert "extra" in parts.lexical.ids()
    found = rag.as_retriever(top_k=1).invoke("Which colour are the ferries painted?")
    assert found[0].id == "extra" and found[0].metadata["source"] == "manual"
    store.delete(["extra"])
    assert parts.store.has_ids(["extra"]) == set()


@pytest.mark.slow
def test_vectorstore_over_a_chroma_server_sees_the_same_collection(settings, docs_dir, chroma_url):
    import uuid

    s = settings.replace(embedder="hashing:1024", chroma_url=chroma_url, collection=f"t-{uuid.uuid4().hex[:12]}")
    parts = Components(s)
    parts.ingestor().run([docs_dir])

    store = RagPipeline(components=parts).as_vectorstore()

    assert store._client is parts.store.client
    assert names(store.similarity_search(DELETED, k=1)) == ["sync.md"]


@pytest.mark.slow
def test_meaning_not_words_finds_the_chunk_with_minilm(settings, docs_dir, minilm):
    parts = Components(settings, embedder=minilm)
    parts.ingestor().run([docs_dir])
    rag = RagPipeline(components=parts)
    question = "Which vessels go over the harbour regularly?"  # no word in common with boats.txt

    assert names(rag.as_retriever(top_k=1).invoke(question)) == ["boats.txt"]
    assert names(rag.as_vectorstore().similarity_search(question, k=1)) == ["boats.txt"]
    assert names(rag.as_retriever(top_k=1).invoke("中国古代的城墙有多长？")) == ["greatwall.txt"]
