"""The official ``openai`` client and LangChain's ``ChatOpenAI``, unchanged, against ragmem
served by a real uvicorn with a real (tiny, random-weight) language model."""

from __future__ import annotations

import pytest

from tests.server.conftest import server_settings, write_corpus

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")

KEY = "carol-key-0123456789abcdef"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_chat_model):
    from rag_memory.pipelines.rag import RagPipeline
    from rag_memory.server import ApiKeys, create_app
    from tests.helpers.http_server import uvicorn_server

    base = tmp_path_factory.mktemp("server-openai")
    model = tiny_chat_model
    rag = RagPipeline(server_settings(base / "home", generator="transformers", generator_model=str(model),
                                      device="cpu", max_new_tokens=12))
    rag.ingest([write_corpus(base / "docs")])
    app = create_app(rag, keys=ApiKeys.from_flags([f"{KEY}=carol"]))
    with uvicorn_server(app) as url:
        yield {"url": url, "rag": rag}


@pytest.fixture
def oai(server):
    return openai.OpenAI(base_url=server["url"] + "/v1", api_key=KEY, max_retries=0, timeout=60)


def test_the_openai_client_gets_a_completion_with_ragmem_sources_and_the_turn_is_stored(server, oai):
    completion = oai.chat.completions.create(
        model="ragmem",
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "What happens when a file is deleted on re-ingest?"}],
    )
    text = completion.choices[0].message.content
    assert completion.object == "chat.completion" and completion.choices[0].finish_reason == "stop"
    assert text and completion.usage.completion_tokens >= 1 and completion.usage.prompt_tokens > 10
    extra = completion.model_extra["ragmem"]
    assert extra["user"] == "carol" and not extra["abstained"]
    assert any(s["source"].endswith("sync.md") for s in extra["sources"])
    turns = server["rag"].components.history.turns("carol", extra["session_id"])
    assert [t.content for t in turns] == ["What happens when a file is deleted on re-ingest?", text.strip()]


def test_the_openai_client_streams_chunks_that_join_to_the_stored_answer_with_usage_last(server, oai):
    stream = oai.chat.completions.create(
        model="ragmem", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "长城有多长？"}],
        extra_body={"session_id": "carol-zh"},
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 2  # really streamed, not one blob
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(finals) == 1 and any(s["source"].endswith("greatwall.txt") for s in finals[0].model_extra["ragmem"]["sources"])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= 1
    turns = server["rag"].components.history.turns("carol", "carol-zh")
    assert turns[0].content == "长城有多长？" and turns[1].content == "".join(pieces).strip()


def test_earlier_messages_are_the_conversation_and_land_in_one_session(server, oai):
    first = "What happens when a file is deleted on re-ingest?"
    a = oai.chat.completions.create(model="ragmem", messages=[{"role": "user", "content": first}])
    reply = a.choices[0].message.content
    b = oai.chat.completions.create(model="ragmem", messages=[
        {"role": "user", "content": first}, {"role": "assistant", "content": reply},
        {"role": "user", "content": "And changed files?"}])
    session = a.model_extra["ragmem"]["session_id"]
    assert b.model_extra["ragmem"]["session_id"] == session
    contents = [t.content for t in server["rag"].components.history.turns("carol", session)]
    assert contents[-2] == "And changed files?"


def test_models_lists_ragmem_and_a_wrong_key_raises_the_clients_authentication_error(server, oai):
    assert [m.id for m in oai.models.list()] == ["ragmem"]
    bad = openai.OpenAI(base_url=server["url"] + "/v1", api_key="wrong-key-0123456789", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.chat.completions.create(model="ragmem", messages=[{"role": "user", "content": "hi"}])
    assert "API key" in err.value.message
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="ragmem", n=2, messages=[{"role": "user", "content": "hi"}])


def test_langchain_chat_openai_invokes_and_streams_against_the_server(server):
    langchain_openai = pytest.importorskip("langchain_openai")
    chat = langchain_openai.ChatOpenAI(base_url=server["url"] + "/v1", api_key=KEY, model="ragmem",
                                       max_retries=0, timeout=60)
    message = chat.invoke("Which boats cross the bay?")
    assert isinstance(message.content, str) and message.content
    pieces = [c.content for c in chat.stream("长城是什么？")]
    assert sum(1 for p in pieces if p) >= 2
    sessions = {s.session_id for s in server["rag"].components.history.sessions("carol")}
    assert len(sessions) >= 2
