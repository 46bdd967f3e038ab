"""EmbeddingClient against a real HTTP server on 127.0.0.1: batching, retries, errors."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from include.flywheel.embeddings import Embedder, EmbeddingClient, EmbeddingError, default_extra_body


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # The timeout test hangs up before the slow reply is written: expected, not an error.
        pass


class FakeEmbeddings:
    """A scripted /v1/embeddings server. Each scripted reply is used once; then it embeds normally."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: list[tuple[int, str, dict[str, str], float]] = []
        self.reverse_order = False
        self.server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def reply(self, status: int, body: str = "", headers: dict[str, str] | None = None, delay: float = 0.0) -> None:
        self.script.append((status, body, headers or {}, delay))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep the test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                fake.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
                if fake.script:
                    status, text, headers, delay = fake.script.pop(0)
                    if delay:
                        time.sleep(delay)
                else:
                    status, headers = 200, {}
                    data = [
                        {"object": "embedding", "index": i, "embedding": [float(len(t)), float(i)]}
                        for i, t in enumerate(body["input"])
                    ]
                    if fake.reverse_order:
                        data.reverse()
                    text = json.dumps({"object": "list", "data": data, "model": body["model"]})
                payload = text.encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler


@pytest.fixture
def server() -> Iterator[FakeEmbeddings]:
    fake = FakeEmbeddings()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    fake.thread.join(timeout=5)


def client(url: str, **overrides) -> EmbeddingClient:
    options = {"batch_size": 2, "timeout": 2.0, "max_retries": 3, "backoff": 0.01}
    options.update(overrides)
    return EmbeddingClient(url, "test-embedder", **options)


def test_batches_and_keeps_input_order(server):
    server.reverse_order = True  # the reply's data order must not matter: "index" decides
    texts = ["a", "bb", "ccc", "dddd", "eeeee"]
    vectors = client(server.url).embed(texts)
    assert [vector[0] for vector in vectors] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert [len(request["body"]["input"]) for request in server.requests] == [2, 2, 1]
    first = server.requests[0]
    assert first["path"] == "/v1/embeddings"
    assert first["body"] == {"model": "test-embedder", "input": ["a", "bb"]}  # the plain OpenAI shape


def test_base_url_with_v1_suffix_and_api_key(server):
    embedder = EmbeddingClient(server.url + "/v1/", "test-embedder", api_key="secret-token")
    assert isinstance(embedder, Embedder)
    embedder.embed(["x"])
    request = server.requests[0]
    assert request["path"] == "/v1/embeddings"
    assert request["headers"]["Authorization"] == "Bearer secret-token"
    assert "secret-token" not in repr(embedder)


def test_nvidia_retrieval_models_get_input_type(server):
    assert default_extra_body("nvidia/llama-3.2-nv-embedqa-1b-v2")["input_type"] == "query"
    assert default_extra_body("text-embedding-3-small") == {}
    EmbeddingClient(server.url, "nvidia/llama-3.2-nv-embedqa-1b-v2").embed(["x"])
    assert server.requests[0]["body"]["input_type"] == "query"


def test_retries_on_5xx_then_succeeds(server):
    server.reply(503, "busy")
    server.reply(502, "bad gateway")
    vectors = client(server.url).embed(["hello"])
    assert vectors == [[5.0, 0.0]]
    assert len(server.requests) == 3


def test_retries_on_429_honouring_retry_after(server):
    server.reply(429, "slow down", {"Retry-After": "0"})
    assert client(server.url).embed(["hi"]) == [[2.0, 0.0]]
    assert len(server.requests) == 2


def test_client_errors_are_not_retried_and_carry_status_and_body(server):
    server.reply(400, '{"error": "unknown model test-embedder"}')
    with pytest.raises(EmbeddingError) as caught:
        client(server.url).embed(["hi"])
    error = caught.value
    assert error.status == 400
    assert "unknown model" in error.body
    assert "HTTP 400" in str(error) and "unknown model" in str(error)
    assert len(server.requests) == 1


def test_gives_up_after_max_retries(server):
    for _ in range(3):
        server.reply(500, "boom")
    with pytest.raises(EmbeddingError) as caught:
        client(server.url, max_retries=2).embed(["hi"])
    assert "failed 3 times. Giving up." in str(caught.value)
    assert caught.value.status == 500 and caught.value.body == "boom"
    assert len(server.requests) == 3


def test_timeouts_are_retried(server):
    server.reply(200, "{}", delay=0.5)
    vectors = client(server.url, timeout=0.2).embed(["abc"])
    assert vectors == [[3.0, 0.0]]
    assert len(server.requests) == 2


def test_connection_errors_are_retried_then_reported():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more: every attempt is refused.
    with pytest.raises(EmbeddingError, match="failed 2 times. Giving up. Last error: ConnectionError"):
        client(f"http://127.0.0.1:{port}", max_retries=1).embed(["x"])


def test_malformed_reply_is_an_error(server):
    server.reply(200, '{"data": "nope"}')
    with pytest.raises(EmbeddingError, match="not an OpenAI embeddings reply"):
        client(server.url).embed(["x"])


def test_wrong_number_of_vectors_is_an_error(server):
    server.reply(200, json.dumps({"data": [{"index": 0, "embedding": [1.0]}]}))
    with pytest.raises(EmbeddingError, match="1 embeddings for 2 inputs"):
        client(server.url).embed(["x", "y"])


def test_invalid_arguments():
    with pytest.raises(ValueError, match="base_url"):
        EmbeddingClient("", "m")
    with pytest.raises(ValueError, match="batch_size"):
        EmbeddingClient("http://127.0.0.1:1", "m", batch_size=0)


def test_empty_input_makes_no_request(server):
    assert client(server.url).embed([]) == []
    assert server.requests == []
