from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rag_memory.errors import ConfigError, GenerationError
from rag_memory.generation import ChatMessage, GenerationConfig, OpenAICompatibleGenerator, approximate_tokens

PIECES = ["Paris", " is", " the", " capital", " 巴黎"]
MESSAGES = [ChatMessage("system", "Answer briefly."), ChatMessage("user", "What is the capital of France?")]


class FakeServer:
    """A real HTTP server on loopback speaking the OpenAI chat completions protocol."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.status = 200
        self.error_body = ""
        self.stream_error = ""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                server.requests.append(body)
                server.headers.append(dict(self.headers))
                if self.path != "/v1/chat/completions":
                    self._send(404, "application/json", b'{"detail": "Not Found"}')
                elif server.status != 200:
                    self._send(server.status, "application/json", server.error_body.encode())
                elif body.get("stream"):
                    self._stream(bool((body.get("stream_options") or {}).get("include_usage")))
                else:
                    answer = {
                        "id": "cmpl-1",
                        "object": "chat.completion",
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": "".join(PIECES)}}
                        ],
                        "usage": {"prompt_tokens": 21, "completion_tokens": 5, "total_tokens": 26},
                    }
                    self._send(200, "application/json", json.dumps(answer).encode())

            def _send(self, status: int, kind: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, include_usage: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                events = [{"choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
                events += [{"choices": [{"index": 0, "delta": {"content": p}}]} for p in PIECES]
                events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                if server.stream_error:
                    events = events[:2] + [{"error": {"message": server.stream_error}}]
                elif include_usage:  # as vLLM does: a last chunk with no choices and the counts
                    events.append({"choices": [], "usage": {"prompt_tokens": 19, "completion_tokens": 5,
                                                            "total_tokens": 24}})
                self.wfile.write(b": keep-alive comment\n\n")
                for event in events:
                    self.wfile.write(f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeServer:
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as s:
        yield s


def test_stream_yields_the_server_pieces_and_sends_an_openai_request(server):
    gen = OpenAICompatibleGenerator(server.url + "/", "tiny-chat", api_key="sk-test")

    pieces = list(gen.stream(MESSAGES, GenerationConfig(max_new_tokens=32)))

    assert pieces == PIECES
    (body,) = server.requests
    assert body == {
        "model": "tiny-chat",
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 32,
        "temperature": 0.0,
    }
    assert {k.lower(): v for k, v in server.headers[0].items()}["authorization"] == "Bearer sk-test"
    usage = gen.last_usage  # the server's counts, from the include_usage chunk
    assert (usage.prompt_tokens, usage.completion_tokens) == (19, 5)
    assert 0 < usage.seconds_to_first_token <= usage.seconds_total


def test_an_error_event_inside_the_stream_is_a_generation_error(server):
    server.stream_error = "the model crashed"
    gen = OpenAICompatibleGenerator(server.url, "tiny-chat")

    got = []
    with pytest.raises(GenerationError, match="the model crashed"):
        for piece in gen.stream(MESSAGES):
            got.append(piece)
    assert got == PIECES[:1]


def test_generate_asks_without_streaming_and_takes_the_server_usage(server):
    gen = OpenAICompatibleGenerator(server.url, "tiny-chat")

    answer = gen.generate(MESSAGES, GenerationConfig(max_new_tokens=16, temperature=0.7, top_p=0.9))

    assert answer == "".join(PIECES)
    (body,) = server.requests
    assert not body.get("stream")
    assert (body["max_tokens"], body["temperature"], body["top_p"]) == (16, 0.7, 0.9)
    assert "authorization" not in {k.lower() for k in server.headers[0]}
    assert (gen.last_usage.prompt_tokens, gen.last_usage.completion_tokens) == (21, 5)


def test_http_error_names_the_url_and_status(server):
    server.status = 400
    server.error_body = '{"error": {"message": "max_tokens is too large"}}'
    gen = OpenAICompatibleGenerator(server.url, "tiny-chat")

    with pytest.raises(GenerationError) as info:
        gen.generate(MESSAGES)
    message = str(info.value)
    assert f"{server.url}/chat/completions" in message and "HTTP 400" in message
    assert "max_tokens is too large" in message

    with pytest.raises(GenerationError, match="HTTP 400"):
        list(gen.stream(MESSAGES))


def test_wrong_base_url_is_a_404_with_a_hint(server):
    gen = OpenAICompatibleGenerator(server.url.removesuffix("/v1"), "tiny-chat")

    with pytest.raises(GenerationError, match=r"HTTP 404.*/v1"):
        gen.generate(MESSAGES)


def test_connection_refused_names_the_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    gen = OpenAICompatibleGenerator(url, "tiny-chat", timeout=5)

    with pytest.raises(GenerationError) as info:
        gen.generate(MESSAGES)
    assert f"{url}/chat/completions" in str(info.value)
    assert "running" in str(info.value)
    with pytest.raises(GenerationError, match=str(port)):
        list(gen.stream(MESSAGES))


def test_a_silent_server_times_out_with_a_generation_error():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts connections but never answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        gen = OpenAICompatibleGenerator(url, "tiny-chat", timeout=0.3)

        with pytest.raises(GenerationError, match="did not answer within 0.3 seconds"):
            gen.generate(MESSAGES)


def test_token_estimates_count_cjk_characters_one_each():
    assert approximate_tokens("") == 0
    assert approximate_tokens("abcdefgh") == 2
    assert approximate_tokens("检索增强生成") == 6
    assert approximate_tokens("RAG 检索") == 1 + 2  # "RAG " is one token, each Han character one


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="localhost:8000"):
        OpenAICompatibleGenerator("localhost:8000/v1", "m")
    with pytest.raises(ConfigError, match="timeout"):
        OpenAICompatibleGenerator("http://localhost:8000/v1", "m", timeout=0)
    with pytest.raises(ConfigError, match="context_length"):
        OpenAICompatibleGenerator("http://localhost:8000/v1", "m", context_length=0)
