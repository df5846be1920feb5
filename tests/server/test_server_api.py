"""The native API against a real uvicorn: auth, isolation between users, limits, error bodies,
ingest jobs, memory and sessions. The extractive answerer keeps it fast; the OpenAI-client
tests use a real (tiny) language model."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.server.conftest import server_settings, write_corpus

pytest.importorskip("fastapi")

ALICE = "alice-key-0123456789abcdef"
BOB = "bob-key-0123456789abcdefgh"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from rag_memory.pipelines.rag import RagPipeline
    from rag_memory.server import ApiKeys, ServerOptions, create_app
    from tests.helpers.http_server import uvicorn_server

    base = tmp_path_factory.mktemp("server-api")
    corpus = write_corpus(base / "docs")
    (base / "later").mkdir()
    (base / "later" / "tea.md").write_text("Green tea is steeped at 80 degrees for two minutes.", encoding="utf-8")
    rag = RagPipeline(server_settings(base / "home", generator="extractive"))
    rag.ingest([corpus])
    keys = ApiKeys.from_flags([f"{ALICE}=alice", f"{BOB}=bob"])
    options = ServerOptions(max_body_bytes=20_000, max_question_chars=500, ingest_roots=[base])
    app = create_app(rag, keys=keys, options=options)
    with uvicorn_server(app) as url:
        yield {"url": url, "rag": rag, "base": base, "state": app.state.ragmem}


def client(server, key: str | None = ALICE) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server["url"], headers=headers, timeout=30)


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"type", "message", "code"} <= set(body["error"])
    assert body["error"]["code"] == response.status_code
    return body["error"]


def test_without_a_key_or_with_a_wrong_one_every_api_call_is_refused(server):
    for key in (None, "not-a-key-of-this-server-at-all"):
        with client(server, key) as c:
            for method, path in [("GET", "/api/status"), ("GET", "/api/memory"), ("GET", "/v1/models"),
                                 ("POST", "/api/ask")]:
                r = c.request(method, path, json={"question": "hi"} if method == "POST" else None)
                assert r.status_code == 401, (path, r.text)
                assert error_of(r)["type"] == "authentication_error"
                assert r.headers["www-authenticate"] == "Bearer"
    with client(server, None) as c:  # the page itself and the health check are public
        assert c.get("/").status_code == 200 and "<title>ragmem</title>" in c.get("/").text
        assert c.get("/healthz").json() == {"status": "ok"}
    with httpx.Client(base_url=server["url"], headers={"X-API-Key": ALICE}) as c:
        assert c.get("/api/status").json()["user"] == "alice"


def test_ask_answers_in_english_and_chinese_with_sources_and_stores_the_turn(server):
    with client(server) as c:
        r = c.post("/api/ask", json={"question": "What happens when a file is deleted?", "session_id": "a-en",
                                     "explain": True})
        assert r.status_code == 200, r.text
        answer = r.json()
        assert "re-ingest removes its chunks" in answer["answer"]
        assert answer["sources"][0]["source"].endswith("sync.md") and answer["cited"] == [1]
        assert answer["user"] == "alice" and answer["explain"]["chunks"]
        r = c.post("/api/ask", json={"question": "长城有多长？", "session_id": "a-zh"})
        assert "两万多公里" in r.json()["answer"]
        turns = c.get("/api/sessions/a-zh").json()["turns"]
        assert [t["role"] for t in turns] == ["user", "assistant"] and turns[0]["content"] == "长城有多长？"


def test_a_streamed_native_answer_is_piece_events_then_the_answer(server):
    with client(server) as c, c.stream("POST", "/api/ask", json={"question": "长城是什么？", "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    events = [block for block in text.split("\n\n") if block.startswith("event:")]
    names = [e.split("\n")[0].removeprefix("event: ") for e in events]
    assert names[-1] == "answer" and set(names[:-1]) == {"piece"}
    assert "长城" in events[-1]


def test_a_key_never_reaches_another_users_memory_or_history(server):
    with client(server, ALICE) as alice, client(server, BOB) as bob:
        alice.post("/api/ask", json={"question": "My name is Alice and I live in Chengdu.", "session_id": "a-private"})
        mine = alice.get("/api/memory").json()["memories"]
        assert any("Chengdu" in m["text"] for m in mine)
        memory_id = next(m["id"] for m in mine if "Chengdu" in m["text"])

        # Bob sees none of it, whichever way he asks.
        assert all("Chengdu" not in m["text"] for m in bob.get("/api/memory").json()["memories"])
        assert all("Chengdu" not in m["text"] for m in bob.get("/api/memory/search", params={"q": "Chengdu"}).json()["memories"])
        assert "Chengdu" not in bob.get("/api/memory/export").text
        assert all(s["session_id"] != "a-private" for s in bob.get("/api/sessions").json()["sessions"])
        assert bob.get("/api/sessions/a-private").status_code == 404
        for path in ("/api/memory", "/api/sessions", "/api/memory/export"):
            r = bob.get(path, params={"user": "alice"})
            assert r.status_code == 403 and error_of(r)["type"] == "permission_error"
        r = bob.post("/api/ask", json={"question": "Where do I live?", "user": "alice"})
        assert r.status_code == 403
        r = bob.post("/v1/chat/completions", json={"model": "ragmem", "user": "alice",
                                                    "messages": [{"role": "user", "content": "Where do I live?"}]})
        assert r.status_code == 403
        answer = bob.post("/api/ask", json={"question": "Where do I live? Chengdu?"}).json()
        assert all("Chengdu" not in s["text"] for s in answer["sources"] if s["kind"] == "memory")
        # Bob cannot forget Alice's memory or session either.
        assert bob.delete(f"/api/memory/{memory_id}").status_code == 404
        bob.delete("/api/sessions/a-private")
        assert any(m["id"] == memory_id for m in alice.get("/api/memory").json()["memories"])
        assert alice.get("/api/sessions/a-private").status_code == 200

        # Alice can.
        assert alice.delete(f"/api/memory/{memory_id}").json()["memories_deleted"] == 1
        assert all(m["id"] != memory_id for m in alice.get("/api/memory").json()["memories"])


def test_limits_and_bad_requests_get_json_error_bodies(server):
    with client(server) as c:
        r = c.post("/api/ask", content=b'{"question": "' + b"x" * 30_000 + b'"}',
                   headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "20000" in error_of(r)["message"]
        r = c.post("/api/ask", json={"question": "长" * 501})
        assert r.status_code == 413 and "500" in error_of(r)["message"]
        r = c.post("/api/ask", json={"question": ""})
        assert r.status_code == 422 and "question" in error_of(r)["message"]
        r = c.post("/api/ask", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 422
        r = c.get("/api/nothing-here")
        assert r.status_code == 404 and "/docs" in error_of(r)["message"]
        r = c.post("/v1/chat/completions", json={"model": "ragmem", "messages": [{"role": "assistant", "content": "hi"}]})
        assert r.status_code == 400 and "last message" in error_of(r)["message"]


def test_a_bug_reaches_the_client_as_a_plain_500_without_its_traceback(server, monkeypatch):
    parts = server["rag"].components

    class Broken:
        def retrieve(self, *args, **kwargs):
            raise RuntimeError("secret internal detail")

    monkeypatch.setattr(parts, "retriever", Broken())
    with client(server) as c:
        for r in (c.get("/api/search", params={"q": "boats"}),
                  c.post("/api/ask", json={"question": "boats?"})):
            assert r.status_code == 500
            assert error_of(r)["type"] == "internal_error"
            assert "secret" not in r.text and "Traceback" not in r.text
        with c.stream("POST", "/api/ask", json={"question": "boats?", "stream": True}) as r:
            text = "".join(r.iter_text())
        assert "event: error" in text and "internal_error" in text and "secret" not in text


def test_ingest_runs_as_a_job_with_progress_and_a_report_and_only_below_the_roots(server):
    with client(server) as c:
        r = c.post("/api/ingest", json={"paths": [str(server["base"] / "later")]})
        assert r.status_code == 202
        job_id = r.json()["id"]
        deadline = time.monotonic() + 30
        while (job := c.get(f"/api/jobs/{job_id}").json())["state"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert job["state"] == "done", job
        assert job["report"]["added"] == 1 and job["progress"]["files_done"] == 1
        assert job["progress"]["chunks_embedded"] >= 1
        assert c.get("/api/jobs").json()["jobs"][0]["id"] == job_id
        hits = c.get("/api/search", params={"q": "green tea steeped"}).json()["hits"]
        assert hits and hits[0]["source"].endswith("tea.md")
        r = c.post("/api/ingest", json={"paths": ["/etc"]})
        assert r.status_code == 403 and "outside" in error_of(r)["message"]
        r = c.post("/api/ingest", json={"paths": [str(server["base"] / "missing")]})
        assert r.status_code == 400 and "does not exist" in error_of(r)["message"]
        assert c.get("/api/jobs/job-nope").status_code == 404


def test_status_reports_the_knowledge_base_generator_and_queue(server):
    with client(server) as c:
        status = c.get("/api/status").json()
    assert status["user"] == "alice" and status["auth"] is True
    assert status["knowledge_base"]["chunks"] >= 3
    assert status["generator"]["backend"] == "extractive"
    queue = status["queue"]
    assert queue["running"] == 0 and queue["waiting"] == 0 and queue["served"] >= 1
    assert queue["wait_seconds"]["p95"] is not None
    assert status["limits"]["max_question_chars"] == 500


def test_the_openapi_schema_documents_the_native_and_openai_endpoints(server):
    schema = httpx.get(server["url"] + "/openapi.json").json()
    for path in ("/api/ask", "/api/search", "/api/status", "/api/ingest", "/api/jobs/{job_id}", "/api/memory",
                 "/api/memory/search", "/api/memory/{memory_id}", "/api/memory/export", "/api/memory/entities",
                 "/api/sessions", "/api/sessions/{session_id}", "/v1/chat/completions", "/v1/models"):
        assert path in schema["paths"], path


def test_the_docs_page_loads_its_assets_from_the_server_not_a_cdn(server):
    import re

    page = httpx.get(server["url"] + "/docs")
    assert page.status_code == 200 and "/openapi.json" in page.text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text) + re.findall(r"url: ?'([^']+)'", page.text)
    assert urls and all(u.startswith("/") for u in urls), urls
    for url in urls:
        assert httpx.get(server["url"] + url).status_code == 200, url
    index = httpx.get(server["url"] + "/").text
    assert "http://" not in index and "https://" not in index
