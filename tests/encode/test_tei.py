"""TeiEmbedEncoder against a real HTTP server speaking TEI's wire format, plus MockTransport edge cases."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np
import pytest

from leanrank.encode.base import DenseEncoder
from leanrank.encode.tei import TeiEmbedEncoder
from leanrank.errors import BackendError, ConfigError

DIM = 8
MODEL_ID = "fake-org/tiny-embed"
ERROR_TYPES = {413: "validation", 422: "tokenizer", 424: "backend", 429: "overloaded", 503: "unhealthy"}


def fake_vector(text: str) -> list[float]:
    """A deterministic unit vector per text, so tests know what the server must have embedded."""
    raw = np.frombuffer(hashlib.sha256(text.encode()).digest()[:DIM], dtype=np.uint8).astype(np.float64)
    vector = raw - 127.5
    return list(vector / np.linalg.norm(vector))


@dataclass
class FakeTei:
    """State of the fake server; tests tune it and read back what it received."""

    url: str = ""
    max_client_batch_size: int = 4
    advertised_batch_size: int | None = None  # what /info claims, when it should lie
    fail_with: list[int] = field(default_factory=list)  # statuses answered to the next requests
    delay_s: float = 0.0
    requests: list[tuple[str, Any]] = field(default_factory=list)
    wake: threading.Event = field(default_factory=threading.Event)

    def embed_batches(self) -> list[list[str]]:
        return [body["inputs"] for path, body in self.requests if path == "/embed"]

    def respond(self, path: str, body: Any) -> tuple[int, Any]:
        self.requests.append((path, body))
        if self.delay_s:
            self.wake.wait(self.delay_s)
        if self.fail_with:
            status = self.fail_with.pop(0)
            return status, {
                "error": f"injected failure {status}",
                "error_type": ERROR_TYPES.get(status, "backend"),
            }
        if path == "/info":
            return 200, {
                "model_id": MODEL_ID,
                "model_sha": None,
                "model_dtype": "float32",
                "model_type": {"embedding": {"pooling": "cls"}},
                "max_concurrent_requests": 512,
                "max_input_length": 512,
                "max_batch_tokens": 16384,
                "max_batch_requests": None,
                "max_client_batch_size": self.advertised_batch_size or self.max_client_batch_size,
                "auto_truncate": False,
                "tokenization_workers": 1,
                "version": "1.7.0",
            }
        inputs = body["inputs"] if isinstance(body["inputs"], list) else [body["inputs"]]
        if len(inputs) > self.max_client_batch_size:
            message = f"batch size {len(inputs)} > maximum allowed batch size {self.max_client_batch_size}"
            return 413, {"error": message, "error_type": "validation"}
        if path == "/embed":
            return 200, [fake_vector(text) for text in inputs]
        if path == "/tokenize":
            return 200, [tokenize(text, body.get("add_special_tokens", True)) for text in inputs]
        return 404, {"error": "not found", "error_type": "backend"}


def tokenize(text: str, add_special_tokens: bool) -> list[dict[str, Any]]:
    """TEI's /tokenize token objects, one per whitespace-separated word."""
    tokens: list[dict[str, Any]] = []
    start = 0
    for word in text.split():
        start = text.index(word, start)
        tokens.append(
            {"id": len(tokens) + 5, "text": word, "special": False, "start": start, "stop": start + len(word)}
        )
        start += len(word)
    if add_special_tokens:
        tokens = [{"id": 0, "text": "<s>", "special": True, "start": None, "stop": None}, *tokens]
        tokens.append({"id": 2, "text": "</s>", "special": True, "start": None, "stop": None})
    return tokens


def make_handler(state: FakeTei) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out separately: don't wait for delayed ACKs

        def do_GET(self) -> None:
            self.reply(*state.respond(self.path, None))

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self.reply(*state.respond(self.path, body))

        def reply(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

    return Handler


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that timed out have hung up: writing to them fails, as intended


@pytest.fixture
def tei() -> Iterator[FakeTei]:
    state = FakeTei()
    server = QuietServer(("127.0.0.1", 0), make_handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield state
    state.wake.set()
    server.shutdown()
    server.server_close()
    thread.join()


def client(tei: FakeTei, **kwargs: Any) -> TeiEmbedEncoder:
    return TeiEmbedEncoder(tei.url, backoff_s=0.0, **kwargs)


def test_satisfies_the_dense_encoder_protocol(tei: FakeTei) -> None:
    with client(tei) as encoder:
        assert isinstance(encoder, DenseEncoder)
        assert encoder.name == f"tei/{MODEL_ID}"
        assert encoder.dim == DIM


def test_large_calls_are_split_to_the_server_limit_and_merged_in_order(tei: FakeTei) -> None:
    texts = [f"passage number {i}" for i in range(10)]
    with client(tei) as encoder:
        out = encoder.embed_passages(texts)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [fake_vector(text) for text in texts], atol=1e-6)
    assert [len(batch) for batch in tei.embed_batches()] == [4, 4, 2]
    assert [text for batch in tei.embed_batches() for text in batch] == texts
    assert all(body["normalize"] is True and body["truncate"] is True for _, body in tei.requests[1:])


def test_batch_size_caps_requests_below_the_server_limit(tei: FakeTei) -> None:
    with client(tei, batch_size=3) as encoder:
        encoder.embed_passages([str(i) for i in range(7)])
    assert [len(batch) for batch in tei.embed_batches()] == [3, 3, 1]


def test_server_validation_error_surfaces_status_and_message(tei: FakeTei) -> None:
    tei.advertised_batch_size = 8  # /info lies, so the server rejects our batches with 413
    with client(tei) as encoder, pytest.raises(BackendError) as info:
        encoder.embed_passages([str(i) for i in range(6)])
    assert "HTTP 413: batch size 6 > maximum allowed batch size 4" in str(info.value)
    assert len(tei.embed_batches()) == 1  # validation errors are not retried


def test_prefixes_are_sent_but_not_counted(tei: FakeTei) -> None:
    with client(tei, query_prefix="query: ", passage_prefix="passage: ") as encoder:
        query = encoder.embed_query("что такое градиент")
        encoder.embed_passages(["градиент — это вектор"])
        assert encoder.token_count("что такое градиент") == 3
    assert tei.embed_batches() == [["query: что такое градиент"], ["passage: градиент — это вектор"]]
    assert query.shape == (DIM,)
    np.testing.assert_allclose(query, fake_vector("query: что такое градиент"), atol=1e-6)


def test_token_count_uses_tokenize_without_special_tokens(tei: FakeTei) -> None:
    with client(tei) as encoder:
        assert encoder.token_count("hello big world") == 3
        assert encoder.token_count("") == 0
    assert tei.requests == [("/tokenize", {"inputs": "hello big world", "add_special_tokens": False})]


def test_dim_comes_from_the_first_response(tei: FakeTei) -> None:
    with client(tei) as encoder:
        encoder.embed_passages(["a", "b"])
        assert encoder.dim == DIM
    assert len(tei.embed_batches()) == 1  # no probe needed
    assert client(tei).embed_passages([]).shape == (0, DIM)  # an empty call probes once for the width


def test_overload_and_unavailable_are_retried(tei: FakeTei) -> None:
    with client(tei) as encoder:
        encoder.name  # noqa: B018  (loads /info first, so failures below hit /embed)
        tei.fail_with = [503, 429]
        out = encoder.embed_passages(["x"])
    np.testing.assert_allclose(out[0], fake_vector("x"), atol=1e-6)
    assert len(tei.embed_batches()) == 3


def test_persistent_failure_raises_backend_error_after_bounded_retries(tei: FakeTei) -> None:
    tei.fail_with = [503] * 10
    with client(tei, max_retries=2) as encoder, pytest.raises(BackendError) as info:
        encoder.embed_passages(["x"])
    assert "after 3 attempts: HTTP 503: injected failure 503" in str(info.value)
    assert len(tei.requests) == 3


def test_client_errors_are_not_retried(tei: FakeTei) -> None:
    tei.fail_with = [422]
    with client(tei) as encoder, pytest.raises(BackendError, match="HTTP 422: injected failure 422"):
        encoder.token_count("x")
    assert len(tei.requests) == 1


def test_slow_server_times_out_quickly_without_retrying(tei: FakeTei) -> None:
    tei.delay_s = 5.0
    started = time.monotonic()
    with client(tei, timeout=0.2) as encoder, pytest.raises(BackendError, match="ReadTimeout"):
        encoder.embed_passages(["x"])
    assert time.monotonic() - started < 2
    assert len(tei.requests) == 1


def test_unreachable_server_is_retried_then_raises() -> None:
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    encoder = TeiEmbedEncoder(f"http://127.0.0.1:{port}", backoff_s=0.01)
    with encoder, pytest.raises(BackendError, match="after 4 attempts: ConnectError"):
        encoder.embed_passages(["x"])
    assert time.monotonic() - started < 2


# MockTransport: responses a real server rarely produces.

INFO = {"model_id": MODEL_ID, "max_client_batch_size": 32}


def mock(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> TeiEmbedEncoder:
    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/info":
            return httpx.Response(200, json=INFO)
        return handler(request)

    return TeiEmbedEncoder("http://tei.test", transport=httpx.MockTransport(route), backoff_s=0.0, **kwargs)


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(200, text="<html>gateway</html>"), "invalid JSON"),
        (httpx.Response(200, json={"embeddings": []}), "expected arrays of floats"),
        (httpx.Response(200, json=[[0.1, 0.2], [0.3]]), "expected arrays of floats"),
        (httpx.Response(200, json=[["a", "b"]]), "expected arrays of floats"),
        (httpx.Response(200, json=[[0.6, 0.8]]), "expected one row each"),  # one row for two inputs
        (httpx.Response(200, json=[[0.6, None], [0.6, 0.8]]), "non-finite"),
        (httpx.Response(500, text="upstream exploded"), "HTTP 500: upstream exploded"),
    ],
)
def test_malformed_embed_responses_raise_backend_error(response: httpx.Response, message: str) -> None:
    with mock(lambda _: response, max_retries=1) as encoder, pytest.raises(BackendError, match=message):
        encoder.embed_passages(["a", "b"])


@pytest.mark.parametrize("info", [{"model_id": MODEL_ID}, {"max_client_batch_size": 0, "model_id": "m"}, []])
def test_malformed_info_raises_backend_error(info: Any) -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(200, json=info))
    with TeiEmbedEncoder("http://tei.test", transport=transport) as encoder, pytest.raises(BackendError):
        _ = encoder.name


@pytest.mark.parametrize("body", [[], [[1], [2]], {"tokens": []}, "x"])
def test_malformed_tokenize_raises_backend_error(body: Any) -> None:
    with (
        mock(lambda _: httpx.Response(200, json=body)) as encoder,
        pytest.raises(BackendError, match="tokenize"),
    ):
        encoder.token_count("hello")


def test_dimension_change_between_responses_is_an_error() -> None:
    widths = iter([2, 3])

    def embed(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[[1.0] + [0.0] * (next(widths) - 1)])

    with mock(embed) as encoder:
        encoder.embed_query("a")
        with pytest.raises(BackendError, match="dimension changed from 2 to 3"):
            encoder.embed_query("b")


def test_dropped_connection_is_retried() -> None:
    calls: list[str] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) == 1:
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        return httpx.Response(200, json=[[0.6, 0.8]])

    with mock(flaky) as encoder:
        np.testing.assert_allclose(encoder.embed_query("a"), [0.6, 0.8])
    assert calls == ["/embed", "/embed"]


def test_api_key_is_sent_as_bearer_token() -> None:
    seen: list[str | None] = []

    def embed(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(200, json=[[1.0]])

    with mock(embed, api_key="s3cret") as encoder:
        encoder.embed_query("a")
    assert seen == ["Bearer s3cret"]


@pytest.mark.parametrize(
    "kwargs",
    [{"url": "tei.local:8080"}, {"batch_size": 0}, {"max_retries": -1}, {"backoff_s": -1.0}],
)
def test_invalid_settings_raise_config_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        TeiEmbedEncoder(**{"url": "http://tei.local:8080", **kwargs})


def test_a_retry_waits_what_the_server_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("leanrank.encode.tei.time.sleep", slept.append)
    answers = iter([httpx.Response(429, headers={"Retry-After": "2"}, text="slow down")])

    def handle(_: httpx.Request) -> httpx.Response:
        return next(answers, httpx.Response(200, json=[[0.6, 0.8]]))

    with mock(handle) as encoder:
        encoder.embed_passages(["a"])
    assert slept == [2.0]  # the server's wait, not the backoff's 0
