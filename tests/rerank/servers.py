"""Loopback stand-ins for the rerank providers, each speaking its documented wire (docs/PROVIDERS.md).

A real HTTP server in a thread, so the adapters are tested through sockets, timeouts and status codes
rather than mocks. It rejects any request body whose fields differ from what the provider documents,
records every request, counts the connections opened to it (how a client pools them), and can be scripted
to answer faults before it answers normally (to one query's requests only, if need be).
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from leanrank.rerank.providers import PROVIDERS, HttpReranker
from leanrank.retry import RetryPolicy

API_KEY = "test-key"
MODEL = "test-model"


def score_of(text: str) -> float:
    """A deterministic score, so the expected order of any document list is known."""
    return zlib.crc32(text.encode()) / 2**32


def tokens_of(text: str) -> int:
    return len(text.split())


DROP = 0
"""A `Fault` status: read the request whole, then close the connection without a word (a provider that worked
on it, and may bill it, and whose answer never arrived)."""


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted answer: `status` with `body` (JSON-encoded unless bytes) after `delay_s`; `DROP`: none."""

    status: int
    body: Any = field(default_factory=lambda: {"message": "scripted fault"})
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any


Answer = tuple[Any, dict[str, str]]


def _ranked(scores: list[float], score_key: str) -> list[dict[str, Any]]:
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return [{"index": i, score_key: scores[i]} for i in order]


def _pair_tokens(query: str, docs: list[str]) -> int:
    """The query is paid once per document (Voyage's formula; used for every token-billed fake)."""
    return tokens_of(query) * len(docs) + sum(tokens_of(d) for d in docs)


def _cohere(query: str, docs: list[str], scores: list[float]) -> Answer:
    meta = {"api_version": {"version": "2"}, "billed_units": {"search_units": math.ceil(len(docs) / 100)}}
    return {"id": "r1", "results": _ranked(scores, "relevance_score"), "meta": meta}, {}


def _jina(query: str, docs: list[str], scores: list[float]) -> Answer:
    usage = {"total_tokens": _pair_tokens(query, docs)}
    return {"model": MODEL, "usage": usage, "results": _ranked(scores, "relevance_score")}, {}


def _voyage(query: str, docs: list[str], scores: list[float]) -> Answer:
    data = _ranked(scores, "relevance_score")
    return {
        "object": "list",
        "data": data,
        "model": MODEL,
        "usage": {"total_tokens": _pair_tokens(query, docs)},
    }, {}


def _mixedbread(query: str, docs: list[str], scores: list[float]) -> Answer:
    tokens = _pair_tokens(query, docs)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "model": MODEL, "data": _ranked(scores, "score"), "usage": usage}, {}


def _siliconflow(query: str, docs: list[str], scores: list[float]) -> Answer:
    tokens = {"input_tokens": _pair_tokens(query, docs), "output_tokens": 0}
    meta = {"billed_units": {"input_tokens": tokens["input_tokens"]}, "tokens": tokens}
    return {"id": "r1", "results": _ranked(scores, "relevance_score"), "meta": meta}, {}


def siliconflow_legacy(query: str, docs: list[str], scores: list[float]) -> Answer:
    tokens = {"input_tokens": _pair_tokens(query, docs), "output_tokens": 0}
    return {"id": "r1", "results": _ranked(scores, "relevance_score"), "tokens": tokens}, {}


def _deepinfra(query: str, docs: list[str], scores: list[float]) -> Answer:
    tokens = _pair_tokens(query, docs)
    status = {"status": "succeeded", "cost": tokens * 1e-8, "tokens_input": tokens, "runtime_ms": 3}
    return {"scores": scores, "input_tokens": tokens, "inference_status": status}, {}


def _fireworks(query: str, docs: list[str], scores: list[float]) -> Answer:
    tokens = _pair_tokens(query, docs)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "model": MODEL, "data": _ranked(scores, "relevance_score"), "usage": usage}, {}


def _tei(query: str, docs: list[str], scores: list[float]) -> Answer:
    headers = {
        "x-compute-tokens": str(_pair_tokens(query, docs)),
        "x-compute-characters": str(len(query) * len(docs) + sum(len(d) for d in docs)),
        "x-inference-time": "3",
    }
    return _ranked(scores, "score"), headers


def _infinity(query: str, docs: list[str], scores: list[float]) -> Answer:
    chars = len(query) * len(docs) + sum(len(d) for d in docs)
    body = {
        "object": "rerank",
        "results": _ranked(scores, "relevance_score"),
        "model": MODEL,
        "usage": {"prompt_tokens": chars, "total_tokens": chars},
        "id": "r1",
        "created": 0,
    }
    return body, {}


@dataclass(frozen=True, slots=True)
class Wire:
    """What one provider accepts and how it answers."""

    path: str
    fields: frozenset[str]
    documents_key: str
    answer: Callable[[str, list[str], list[float]], Answer]
    max_docs: int
    too_many_status: int = 422
    needs_key: bool = True
    query_key: str = "query"
    optional: frozenset[str] = frozenset()
    # TEI: a pair (query + text, whitespace words here) over the model's window is a 413 unless `truncate`.
    max_input_tokens: int | None = None


def _fields(*names: str) -> frozenset[str]:
    return frozenset(names)


WIRES: dict[str, Wire] = {
    "cohere": Wire("/v2/rerank", _fields("model", "query", "documents"), "documents", _cohere, 10_000),
    "jina": Wire(
        "/v1/rerank", _fields("model", "query", "documents", "return_documents"), "documents", _jina, 1_000
    ),
    "voyage": Wire(
        "/v1/rerank",
        _fields("model", "query", "documents", "return_documents", "truncation"),
        "documents",
        _voyage,
        1_000,
    ),
    "mixedbread": Wire(
        "/v1/reranking", _fields("model", "query", "input", "return_input"), "input", _mixedbread, 1_000
    ),
    "siliconflow": Wire(
        "/v1/rerank",
        _fields("model", "query", "documents", "return_documents"),
        "documents",
        _siliconflow,
        1_000,
    ),
    "deepinfra": Wire(
        f"/v1/inference/{MODEL}", _fields("query", "documents"), "documents", _deepinfra, 1_024
    ),
    "fireworks": Wire(
        "/inference/v1/rerank",
        _fields("model", "query", "documents", "return_documents"),
        "documents",
        _fireworks,
        1_000,
    ),
    "tei": Wire(
        "/rerank",
        _fields("query", "texts", "raw_scores", "return_text"),
        "texts",
        _tei,
        32,
        too_many_status=413,
        needs_key=False,
        optional=_fields("truncate"),
    ),
    "infinity": Wire(
        "/rerank",
        _fields("model", "query", "documents", "return_documents"),
        "documents",
        _infinity,
        2_048,
        needs_key=False,
    ),
}


class _Server(ThreadingHTTPServer):
    """Room for a burst of connections (the default backlog of 5 resets the sixth of 16 at once)."""

    request_queue_size = 128
    daemon_threads = True


class FakeProvider:
    """A running fake of `provider` on 127.0.0.1; `script()` queues faults, `requests` records traffic,
    `connections` counts the connections opened to it and `open_connections` those not closed yet."""

    def __init__(
        self,
        provider: str,
        *,
        wire: Wire | None = None,
        usage_headers: bool = True,
        port: int = 0,
        info: dict[str, Any] | None = None,
        keep_alive: bool = False,
    ) -> None:
        self.provider = provider
        self.keep_alive = keep_alive  # HTTP/1.1 persistent connections, as providers' APIs keep them
        self.wire = wire or WIRES[provider]
        self.usage_headers = usage_headers
        self.info = info  # TEI's `GET /info` body; None: 404, as a server without the route answers
        self.info_requests = 0
        self.requests: list[Recorded] = []
        self.faults: deque[Fault] = deque()
        self.faults_for: dict[str, deque[Fault]] = {}
        self.connections = 0
        self.open_connections = 0
        self._lock = threading.Lock()
        self._closed = threading.Condition(self._lock)
        self._server = _Server(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    def script_for(self, query: str, *faults: Fault) -> None:
        """Faults for the requests of `query` only, before the queue of `script`: one caller among many."""
        self.faults_for.setdefault(query, deque()).extend(faults)

    def batch_sizes(self) -> list[int]:
        return [len(r.body[self.wire.documents_key]) for r in self.requests]

    def wait_all_closed(self, timeout_s: float = 10.0) -> bool:
        """Whether every connection opened to it is closed, within `timeout_s`: a client's close reaches the
        server's thread a moment after the client returns."""
        with self._closed:
            return self._closed.wait_for(lambda: self.open_connections == 0, timeout_s)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _respond(self, path: str, headers: dict[str, str], raw: bytes) -> Fault:
        """The answer to one request: the next scripted fault, else the provider's documented behaviour."""
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with self._lock:
            self.requests.append(Recorded(path, headers, body))
            query = body.get(self.wire.query_key) if isinstance(body, dict) else None
            own = self.faults_for.get(query) if isinstance(query, str) else None
            if own:
                return own.popleft()
            if self.faults:
                return self.faults.popleft()
        wire = self.wire
        if path != wire.path:
            return Fault(404, {"message": f"no route {path}"})
        if wire.needs_key and headers.get("authorization") != f"Bearer {API_KEY}":
            return Fault(401, {"message": "invalid api key"})
        if not isinstance(body, dict) or not wire.fields <= set(body) <= wire.fields | wire.optional:
            keys = sorted(body) if isinstance(body, dict) else body
            return Fault(422, {"message": f"expected fields {sorted(wire.fields)}, got {keys}"})
        query, docs = body[wire.query_key], body[wire.documents_key]
        if "model" in body and body["model"] != MODEL:
            return Fault(404, {"message": f"unknown model {body['model']!r}"})
        if (
            not isinstance(query, str)
            or not isinstance(docs, list)
            or not all(isinstance(d, str) for d in docs)
        ):
            return Fault(422, {"message": "query must be a string and documents a list of strings"})
        if not docs:
            return Fault(400, {"error": "empty documents"})
        if any(not d.strip() for d in docs):  # Cohere's answer; the strictest provider sets the bar
            return Fault(400, {"message": "invalid request: documents must not contain empty strings"})
        if len(docs) > wire.max_docs:
            return Fault(wire.too_many_status, {"error": f"batch size {len(docs)} > maximum {wire.max_docs}"})
        longest = max(tokens_of(query) + tokens_of(d) for d in docs)
        if wire.max_input_tokens is not None and longest > wire.max_input_tokens and not body.get("truncate"):
            message = f"Input validation error: `inputs` must have less than {wire.max_input_tokens} tokens."
            return Fault(413, {"error": f"{message} Given: {longest}", "error_type": "Validation"})
        answer, answer_headers = wire.answer(query, docs, [score_of(d) for d in docs])
        return Fault(200, answer, answer_headers if self.usage_headers else {})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if fake.keep_alive else "HTTP/1.0"
            # Headers and body go out in two writes: on a kept connection Nagle's algorithm would hold the
            # second until the first is acknowledged, which a delayed ACK puts off by ~40 ms.
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                with fake._lock:
                    fake.connections += 1
                    fake.open_connections += 1

            def finish(self) -> None:
                super().finish()
                with fake._closed:
                    fake.open_connections -= 1
                    fake._closed.notify_all()

            def do_GET(self) -> None:
                fake.info_requests += 1
                found = self.path == "/info" and fake.info is not None
                self._send(Fault(200, fake.info) if found else Fault(404, {"error": "not found"}))

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                self._send(fake._respond(self.path, headers, raw))

            def _send(self, fault: Fault) -> None:
                time.sleep(fault.delay_s)
                if fault.status == DROP:
                    self.close_connection = True
                    return
                payload = fault.body if isinstance(fault.body, bytes) else json.dumps(fault.body).encode()
                try:
                    self.send_response(fault.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    for name, value in fault.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def log_message(self, format: str, *args: Any) -> None:
                """Silent: pytest output stays readable."""

        return Handler


@contextmanager
def silent() -> Iterator[str]:
    """The URL of a loopback server that takes connections and never answers: a backend hung mid-call. The
    kernel completes each handshake and buffers the request (the listen backlog); nothing ever reads it."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        host, port = listener.getsockname()[:2]
        yield f"http://{host}:{port}"


@contextmanager
def unreachable() -> Iterator[str]:
    """The URL of a loopback server whose queue of connections waiting to be accepted is full: the kernel
    drops each new handshake, so connecting hangs, as to a host behind a firewall, and nothing is sent."""
    with socket.create_server(("127.0.0.1", 0), backlog=0) as listener, ExitStack() as fillers:
        host, port = listener.getsockname()[:2]
        for _ in range(2):  # the queue holds backlog + 1; the second filler's handshake hangs already
            filler = fillers.enter_context(socket.socket())
            filler.setblocking(False)
            filler.connect_ex((host, port))
        yield f"http://{host}:{port}"


def adapter(fake: FakeProvider, **options: Any) -> HttpReranker:
    """An adapter aimed at `fake` with fast retries and a short timeout, so fault tests stay quick."""
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "base_url": fake.url,
        "timeout_s": 2.0,
        "retry": RetryPolicy(max_attempts=3, backoff_s=0.01),
        **options,
    }
    model = "" if fake.provider == "tei" else MODEL
    return HttpReranker(PROVIDERS[fake.provider], model, **settings)


def main() -> None:
    """`python -m tests.rerank.servers PROVIDER [PORT] [--keep-alive]`: serve one fake until Ctrl-C (README
    example); `--keep-alive` keeps connections open between requests (HTTP/1.1), as real providers do."""
    import sys

    args = [a for a in sys.argv[1:] if a != "--keep-alive"]
    provider, port = args[0], int(args[1]) if len(args) > 1 else 0
    fake = FakeProvider(provider, port=port, keep_alive="--keep-alive" in sys.argv)
    print(f"{provider} wire on {fake.url} (key {API_KEY!r}, model {MODEL!r})", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.close()


if __name__ == "__main__":
    main()
