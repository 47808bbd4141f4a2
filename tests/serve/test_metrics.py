"""`/metrics` over a real loopback server: the standard process and Python series, no `_created` series,
refused requests counted under their route, and the upstream latency of each backend that served."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from leanrank.pipeline import Pipeline
from leanrank.serve import create_app
from tests.rerank.servers import FakeProvider, adapter
from tests.serve.conftest import ADMIN_KEY, settings_for
from tests.serve.live import LiveServer

DOCS = [f"Фрагмент {i}: цикл for перебирает элементы." for i in range(5)]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, index: Pipeline) -> Iterator[tuple[LiveServer, str]]:
    """The gateway in front of a Cohere-format provider on loopback, and the `/metrics` text after traffic."""
    fake = FakeProvider("cohere")
    server = LiveServer(
        create_app(settings_for(tmp_path_factory.mktemp("metrics")), reranker=adapter(fake), pipeline=index)
    )
    try:
        with server.client(None) as anonymous:
            assert anonymous.post("/v1/search", json={"query": "цикл", "course": "demo"}).status_code == 401
            assert anonymous.get("/v1/nowhere").status_code == 401
        with server.client(ADMIN_KEY) as http:
            for _ in range(2):
                assert (
                    http.post("/v2/rerank", json={"query": "цикл for", "documents": DOCS}).status_code == 200
                )
            yield server, http.get("/metrics").text
    finally:
        server.close()
        fake.close()


def test_refused_requests_are_counted_under_the_route_they_were_sent_to(
    served: tuple[LiveServer, str],
) -> None:
    _, text = served
    assert 'leanrank_http_requests_total{method="POST",route="/v1/search",status="401"} 1.0' in text
    assert 'leanrank_http_requests_total{method="GET",route="unmatched",status="401"} 1.0' in text


def test_standard_process_and_python_series_without_created(served: tuple[LiveServer, str]) -> None:
    _, text = served
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "python_info"):
        assert re.search(rf"^{name}[{{ ]", text, re.MULTILINE), name
    assert "python_gc_collections_total" in text
    assert "_created" not in text


def test_upstream_latency_is_a_histogram_per_backend(served: tuple[LiveServer, str]) -> None:
    _, text = served
    count = re.search(
        r'^leanrank_upstream_request_duration_seconds_count\{backend="(cohere:[^"]+)"\} (\S+)$', text, re.M
    )
    assert count is not None
    assert float(count.group(2)) == 2.0
    assert (
        f'leanrank_upstream_request_duration_seconds_bucket{{backend="{count.group(1)}",le="+Inf"}} 2.0'
        in text
    )


def test_gateway_documents_are_counted_as_the_headers_count_them_when_windowed(
    tmp_path: Path, index: Pipeline
) -> None:
    """Cohere v1's `max_chunks_per_doc` sends windows: the forwarded documents are still documents."""
    fake = FakeProvider("cohere")
    server = LiveServer(create_app(settings_for(tmp_path), reranker=adapter(fake), pipeline=index))
    long = " ".join(f"слово{i}" for i in range(60))
    windows = {"max_chunks_per_doc": 3, "max_tokens_per_doc": 20}
    body = {"query": "цикл for", "documents": [long, "short"], **windows}
    try:
        with server.client(ADMIN_KEY) as http:
            answer = http.post("/v1/rerank", json=body)
            text = http.get("/metrics").text
    finally:
        server.close()
        fake.close()
    assert answer.status_code == 200, answer.text
    assert len(fake.requests[0].body["documents"]) == 4  # three windows of the long one, the short one
    assert answer.headers["x-leanrank-documents-forwarded"] == "2"
    counts = dict(re.findall(r"^leanrank_gateway_documents_(\w+)_total\{[^}]*\} (\S+)$", text, re.M))
    assert counts == {"received": "2.0", "forwarded": "2.0"}
