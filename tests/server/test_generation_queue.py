"""The generator queue: bounded, measured, and a client that leaves stops its generation."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from rag_memory.generation.base import Generator, Usage
from rag_memory.generation.select import Selection
from tests.server.conftest import server_settings, write_corpus

pytest.importorskip("fastapi")


class SlowGenerator(Generator):
    """Yields a numbered piece every ``delay`` seconds; records how each generation ended."""

    backend = "fake"
    model_id = "slow-fake"

    def __init__(self, pieces: int = 150, delay: float = 0.01) -> None:
        self.pieces, self.delay = pieces, delay
        self.finished = 0
        self.stopped_early = 0
        self.started = threading.Event()
        self.hold = threading.Event()  # cleared: the generation pauses at piece 10 until it is set
        self.hold.set()

    @property
    def context_length(self) -> int:
        return 4096

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream(self, messages, config=None):
        self.started.set()
        done = False
        try:
            for i in range(self.pieces):
                time.sleep(self.delay)
                if i == 10:
                    self.hold.wait(30)
                yield f" w{i}"
            done = True
        finally:
            if done:
                self.finished += 1
            else:
                self.stopped_early += 1
            self.last_usage = Usage(10, self.pieces, 0.0, 0.0)


def test_the_queue_refuses_past_its_length_times_out_and_reports_waits():
    from rag_memory.server.workers import Cancelled, GenerationQueue, QueueFull, QueueTimeout

    queue = GenerationQueue(slots=1, max_waiting=1)
    never = threading.Event()
    holding = threading.Event()
    release = threading.Event()

    def hold():
        with queue.slot(deadline=time.monotonic() + 10, cancelled=never):
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(5)
    waiter_done = threading.Event()

    def wait_for_slot():
        with queue.slot(deadline=time.monotonic() + 10, cancelled=never):
            waiter_done.set()

    waiter = threading.Thread(target=wait_for_slot)
    waiter.start()
    while queue.status()["waiting"] < 1:
        time.sleep(0.01)
    with pytest.raises(QueueFull, match="busy"):  # one running, one waiting: the line is full
        with queue.slot(deadline=time.monotonic() + 10, cancelled=never):
            pass
    assert queue.status()["refused"] == 1
    release.set()
    holder.join(5)
    waiter.join(5)
    assert waiter_done.is_set()
    status = queue.status()
    assert status["served"] == 2 and status["running"] == 0 and status["waiting"] == 0
    assert status["wait_seconds"]["window"] == 2 and status["wait_seconds"]["p95"] > 0

    release.clear()
    holding.clear()
    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(5)
    with pytest.raises(QueueTimeout, match="timed out"):
        with queue.slot(deadline=time.monotonic() + 0.2, cancelled=never):
            pass
    gone = threading.Event()
    gone.set()
    with pytest.raises(Cancelled):
        with queue.slot(deadline=time.monotonic() + 10, cancelled=gone):
            pass
    release.set()
    holder.join(5)


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    from rag_memory.pipelines.rag import RagPipeline
    from rag_memory.server import ServerOptions, create_app
    from tests.helpers.http_server import uvicorn_server

    base = tmp_path_factory.mktemp("server-queue")
    rag = RagPipeline(server_settings(base / "home"))
    rag.ingest([write_corpus(base / "docs")])
    generator = SlowGenerator()
    rag.components.generation = Selection(generator)
    app = create_app(rag, options=ServerOptions(slots=1, max_waiting=0, request_timeout=30))
    with uvicorn_server(app) as url:
        yield {"url": url, "rag": rag, "generator": generator, "state": app.state.ragmem}


def _wait_until(condition, seconds: float = 10.0, explain=lambda: "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting {explain()}"
        time.sleep(0.02)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/ask"])
def test_a_client_that_disconnects_mid_stream_stops_its_generation_and_stores_nothing(slow_server, path):
    gen, state = slow_server["generator"], slow_server["state"]
    before_stopped, before_cancelled = gen.stopped_early, state.queue.cancelled
    question = f"Boats and ferries on the bay? ({path})"
    body = ({"model": "ragmem", "stream": True, "messages": [{"role": "user", "content": question}]}
            if path.startswith("/v1") else {"question": question, "stream": True, "session_id": "left"})
    with httpx.Client(base_url=slow_server["url"], timeout=30) as c:
        with c.stream("POST", path, json=body) as r:
            assert r.status_code == 200
            seen = ""
            for text in r.iter_text():
                seen += text
                if "w3" in seen:
                    break  # leave mid-answer: the connection closes here
    _wait_until(lambda: gen.stopped_early == before_stopped + 1)
    _wait_until(lambda: state.queue.status()["running"] == 0)
    assert state.queue.cancelled == before_cancelled + 1
    stored = [t.content for s in slow_server["rag"].components.history.sessions()
              for t in slow_server["rag"].components.history.turns(s.user_id, s.session_id)]
    assert question not in stored


def test_a_request_past_the_queue_length_gets_503_at_once(slow_server):
    gen = slow_server["generator"]
    with httpx.Client(base_url=slow_server["url"], timeout=30) as c:
        gen.started.clear()
        gen.hold.clear()  # the first answer stays in its slot until the checks below are done
        result = {}

        def ask_long():
            result["r"] = c.post("/api/ask", json={"question": "Boats on the river?"})

        worker = threading.Thread(target=ask_long)
        worker.start()
        assert gen.started.wait(10)
        with httpx.Client(base_url=slow_server["url"], timeout=30) as other:
            r = other.post("/api/ask", json={"question": "Ferries?"})
            assert r.status_code == 503 and r.json()["error"]["type"] == "server_busy"
            assert r.headers["retry-after"] == "5"
            r = other.post("/v1/chat/completions", json={"model": "m", "stream": True,
                                                         "messages": [{"role": "user", "content": "Ferries?"}]})
            assert r.status_code == 503
        gen.hold.set()
        worker.join(30)
        assert result["r"].status_code == 200 and "w149" in result["r"].json()["answer"]


def test_waiting_requests_get_the_slot_in_the_order_they_came():
    from rag_memory.server.workers import GenerationQueue

    queue = GenerationQueue(slots=1, max_waiting=10)
    never = threading.Event()
    order: list[int] = []
    release = threading.Event()

    def hold():
        with queue.slot(deadline=time.monotonic() + 10, cancelled=never):
            release.wait(10)

    def take(i: int):
        with queue.slot(deadline=time.monotonic() + 10, cancelled=never):
            order.append(i)

    holder = threading.Thread(target=hold)
    holder.start()
    while queue.status()["running"] < 1:
        time.sleep(0.005)
    waiters = []
    for i in range(6):
        waiters.append(threading.Thread(target=take, args=(i,)))
        waiters[-1].start()
        while queue.status()["waiting"] < i + 1:
            time.sleep(0.005)
    release.set()
    for t in [holder, *waiters]:
        t.join(10)
    assert order == list(range(6))


def test_an_answer_past_the_request_timeout_is_a_504_and_its_generation_stops(tmp_path):
    from fastapi.testclient import TestClient

    from rag_memory.pipelines.rag import RagPipeline
    from rag_memory.server import ServerOptions, create_app

    rag = RagPipeline(server_settings(tmp_path / "home"))
    rag.ingest([write_corpus(tmp_path / "docs")])
    generator = SlowGenerator(pieces=300, delay=0.01)
    rag.components.generation = Selection(generator)
    with TestClient(create_app(rag, options=ServerOptions(request_timeout=0.4))) as c:
        r = c.post("/api/ask", json={"question": "Boats on the river?", "session_id": "slow"})
        assert r.status_code == 504 and r.json()["error"]["type"] == "timeout"
        assert "--request-timeout" in r.json()["error"]["message"]
        _wait_until(lambda: generator.stopped_early == 1, 5)
    assert rag.components.memory.history(rag.settings.user, "slow") == []


def test_ingest_jobs_run_one_at_a_time_and_answers_go_on_meanwhile(slow_server):
    from rag_memory.server.workers import IngestJobs

    state = slow_server["state"]
    running, release = [], threading.Event()

    class Report:
        def as_json(self):
            return {"added": 1}

    def blocking_run(paths, *, progress, **options):
        running.append(paths[0])
        progress.planned(1)
        release.wait(10)
        progress.file_done(paths[0])
        return Report()

    jobs = IngestJobs(blocking_run)
    first, second = jobs.submit(["a"], {}), jobs.submit(["b"], {})
    _wait_until(lambda: first.state == "running")
    original, state.jobs = state.jobs, jobs
    try:
        with httpx.Client(base_url=slow_server["url"], timeout=30) as c:
            assert c.get(f"/api/jobs/{first.id}").json()["progress"]["files_planned"] == 1
            assert c.get(f"/api/jobs/{second.id}").json()["state"] == "queued"
            assert c.get("/api/status").json()["jobs"] == {"running": 1, "queued": 1}
            r = c.post("/api/ask", json={"question": "Ferries on the bay?"})  # not held up by the ingest
            assert r.status_code == 200 and running == ["a"]
        release.set()
        _wait_until(lambda: second.state == "done")
        assert running == ["a", "b"] and first.report == {"added": 1} and first.files_done == 1
    finally:
        release.set()
        state.jobs = original
        jobs.close()
