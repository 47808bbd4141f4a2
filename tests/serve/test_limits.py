"""Limits (413/422 naming the setting), overload (429 at once), the one error table, no stack traces."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from leanrank.cost.budget import UNLIMITED, BudgetExceededError
from leanrank.errors import (
    BackendError,
    DocumentError,
    EmptyQueryError,
    InputError,
    LeanrankError,
    QueryTooLongError,
    StoreError,
    UnknownCourseError,
)
from leanrank.pipeline import Pipeline
from leanrank.rerank.base import RerankResponse, Usage
from leanrank.rerank.http import RerankServerError
from leanrank.serve import create_app, status_of
from leanrank.serve.errors import LimitExceededError, OverloadedError, UnauthorizedError
from tests.serve.conftest import ADMIN_KEY, settings_for
from tests.serve.live import LiveServer

DOCS = ["один", "два", "три"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, index: Pipeline) -> Iterator[LiveServer]:
    settings = settings_for(
        tmp_path_factory.mktemp("limits"),
        max_documents=5,
        max_request_bytes=4_000,
        max_tokens=400,
        max_upload_files=2,
        max_upload_bytes=3_000,
    )
    server = LiveServer(create_app(settings.model_copy(update={"max_query_chars": 100}), pipeline=index))
    yield server
    server.close()


def error_of(reply: httpx.Response) -> tuple[int, str, str | None]:
    body = reply.json()
    assert body["request_id"] == reply.headers["x-request-id"]
    return reply.status_code, body["error_type"], body["limit"]


@pytest.mark.parametrize(
    ("path", "body", "limit"),
    [
        ("/v1/rerank", {"query": "q", "documents": ["d"] * 6}, "max_documents"),
        ("/v2/rerank", {"query": "q", "documents": ["d"] * 6}, "max_documents"),
        ("/rerank", {"query": "q", "texts": ["d"] * 6}, "max_documents"),
        ("/v1/rerank", {"query": "q " * 40, "documents": ["слово " * 50] * 5}, "max_tokens"),
        ("/v1/rerank", {"query": "q", "documents": ["x" * 5_000]}, "max_request_bytes"),
    ],
)
def test_oversized_rerank_requests_get_413_naming_the_limit(
    live: LiveServer, path: str, body: dict[str, object], limit: str
) -> None:
    with live.client(ADMIN_KEY) as http:
        reply = http.post(path, json=body)
    assert error_of(reply) == (413, "limit_exceeded", limit)
    assert f"serve.{limit}" in reply.json()["error"]


def test_a_chunked_body_is_counted_too(live: LiveServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"query": "q", "documents": ["'
        for _ in range(10):
            yield b"x" * 500
        yield b'"]}'

    json = {"content-type": "application/json"}
    with live.client(ADMIN_KEY) as http:
        reply = http.post("/v1/rerank", content=chunks(), headers=json)
        small = http.post(
            "/v1/rerank", content=iter([b'{"query": "q", ', b'"documents": ["a"]}']), headers=json
        )
    assert error_of(reply) == (413, "limit_exceeded", "max_request_bytes")
    assert small.status_code == 200


def test_a_long_query_is_422_naming_the_limit(live: LiveServer) -> None:
    with live.client(ADMIN_KEY) as http:
        reply = http.post("/v1/rerank", json={"query": "q" * 101, "documents": DOCS})
    assert error_of(reply) == (422, "limit_exceeded", "max_query_chars")


def test_upload_limits(live: LiveServer) -> None:
    with live.client(ADMIN_KEY) as http:
        many = [("files", (f"{i}.md", b"# T\n\ntext\n")) for i in range(3)]
        assert error_of(http.post("/v1/courses/c/documents", files=many)) == (
            413,
            "limit_exceeded",
            "max_upload_files",
        )
        big = {"files": ("big.md", b"x" * 4_000)}
        assert error_of(http.post("/v1/courses/c/documents", files=big)) == (
            413,
            "limit_exceeded",
            "max_upload_bytes",
        )
        for names in (["../escape.md"], [".hidden.md"], ["a.md", "a.md"], ["a", "a/b.md"]):
            clash = [("files", (name, b"# T\n\ntext\n")) for name in names]
            assert error_of(http.post("/v1/courses/c/documents", files=clash))[:2] == (422, "invalid_input")


def test_malformed_requests_are_422_naming_the_field(live: LiveServer) -> None:
    with live.client(ADMIN_KEY) as http:
        reply = http.post("/v1/rerank", json={"query": "q", "documents": DOCS, "top_n": 0})
        assert error_of(reply)[:2] == (422, "invalid_request")
        assert "top_n" in reply.json()["error"]
        typo = http.post("/v1/rerank", json={"query": "q", "documents": DOCS, "topn": 1})
        assert "topn" in typo.json()["error"]
        assert http.post("/v1/search", json={"query": "q", "course": "no such/course"}).status_code == 422
        assert error_of(http.post("/v1/search", json={"query": "q", "course": "absent"}))[:2] == (
            404,
            "unknown_course",
        )


class Blocking:
    """A reranker that waits until released: holds the only slot while the overload is provoked."""

    name = "blocking"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        self.entered.set()
        while not self.release.is_set():
            await asyncio.sleep(0.005)
        return RerankResponse(tuple(1.0 for _ in documents), Usage.free(len(documents), 0.0))


def test_overload_is_refused_at_once_with_429(tmp_path: Path, index: Pipeline) -> None:
    backend = Blocking()
    settings = settings_for(tmp_path, max_concurrent=1, max_queue=1)
    server = LiveServer(create_app(settings, reranker=backend, pipeline=index))
    body = {"query": "q", "documents": DOCS}
    try:
        with ThreadPoolExecutor(2) as pool, server.client(ADMIN_KEY) as http:
            first = pool.submit(http.post, "/v1/rerank", json=body)
            assert backend.entered.wait(10)
            queued = pool.submit(http.post, "/v1/rerank", json=body)
            while server.app.state.service.gate._waiting < 1:
                threading.Event().wait(0.005)
            refused = http.post("/v1/rerank", json=body)
            backend.release.set()
            assert first.result().status_code == queued.result().status_code == 200
        assert error_of(refused)[:2] == (429, "overloaded")
        assert refused.headers["retry-after"] == "1"
        with server.client(ADMIN_KEY) as http:
            assert "leanrank_overload_rejections_total 1.0" in http.get("/metrics").text
    finally:
        backend.release.set()
        server.close()


class Exploding:
    name = "exploding"

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        raise self.exc


@pytest.mark.parametrize(
    ("exc", "status", "error_type"),
    [
        (RuntimeError("secret internals at /srv/app.py line 3"), 500, "internal"),
        (
            RerankServerError("cohere POST https://internal.example/v2/rerank failed: HTTP 503"),
            424,
            "backend_failed",
        ),
        (StoreError("opening the index at /data/secret failed"), 503, "store_unavailable"),
    ],
)
def test_server_side_failures_show_no_internals(
    tmp_path: Path, index: Pipeline, exc: Exception, status: int, error_type: str
) -> None:
    server = LiveServer(create_app(settings_for(tmp_path), reranker=Exploding(exc), pipeline=index))
    try:
        with server.client(ADMIN_KEY) as http:
            reply = http.post("/v1/rerank", json={"query": "q", "documents": DOCS})
    finally:
        server.close()
    assert error_of(reply)[:2] == (status, error_type)
    assert "Traceback" not in reply.text
    assert "secret" not in reply.text
    assert "internal.example" not in reply.text


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (UnauthorizedError("x"), 401),
        (UnknownCourseError("x"), 404),
        (LimitExceededError("max_documents", 2, 1, "documents"), 413),
        (EmptyQueryError("x"), 400),
        (QueryTooLongError("x"), 422),
        (DocumentError("a.md", "x"), 422),
        (InputError("x"), 422),
        (OverloadedError("x"), 429),
        (BudgetExceededError(UNLIMITED), 402),
        (BackendError("x"), 424),
        (RerankServerError("x"), 424),
        (StoreError("x"), 503),
        (LeanrankError("x"), 500),
        (KeyError("x"), 500),
    ],
)
def test_one_table_maps_error_types_to_statuses(exc: Exception, status: int) -> None:
    assert status_of(exc).code == status
