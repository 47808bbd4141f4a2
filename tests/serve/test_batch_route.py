"""`POST /v1/rerank/batch` on a real loopback service: one model pass for a batching backend, one provider
call per query otherwise, one ledger record per query, replay by request id, per-entry failures, limits."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from leanrank.cost.ledger import Ledger
from leanrank.errors import BackendError
from leanrank.pipeline import Pipeline
from leanrank.rerank.base import RerankResponse, Usage
from leanrank.rerank.windows import WindowedReranker, WindowPolicy
from leanrank.serve import create_app
from leanrank.settings import ServeSettings
from tests.rerank.servers import DROP, FakeProvider, Fault, adapter, score_of
from tests.rerank.test_windows import words
from tests.serve.conftest import ADMIN_KEY, DEMO_KEY, ENTRIES, priced, settings_for
from tests.serve.live import LiveServer
from tests.serve.test_batching import CountingModel, score
from tests.serve.test_billing import FIXED_BACKEND_MESSAGE, serve, this_month

BATCH = [
    {"query": "Как работает цикл for?", "documents": ["цикл for перебирает", "функция def", "цикл while"]},
    {"query": "what is a function", "documents": ["a function is defined with def", "loops"], "top_n": 1},
    {"query": "словари", "documents": ["словарь хранит пары ключ-значение"]},
]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as opened:
        yield opened


def test_a_batching_model_scores_every_query_in_one_pass_and_each_query_is_billed_once(
    tmp_path: Path, index: Pipeline, ledger: Ledger
) -> None:
    model = CountingModel()
    server, search = serve(settings_for(tmp_path / "data"), index, model, ledger)
    try:
        with server.client(DEMO_KEY, headers={"x-request-id": "job-1"}) as http:
            first = http.post("/v1/rerank/batch", json={"requests": BATCH})
            again = http.post("/v1/rerank/batch", json={"requests": BATCH})
            other = http.post("/v1/rerank/batch", json={"requests": BATCH[:1]})
    finally:
        server.close()
        search.close()
    assert first.status_code == 200, first.text
    body = first.json()
    assert model.calls == [3]  # one pass for the three queries, none for the replay
    assert [a["request_id"] for a in body["results"]] == ["job-1#0", "job-1#1", "job-1#2"]
    expected = [
        sorted(range(len(q["documents"])), key=lambda j: -score(q["query"], q["documents"][j])) for q in BATCH
    ]
    assert [[h["index"] for h in a["results"]] for a in body["results"]] == [
        expected[0],
        expected[1][:1],
        expected[2],
    ]
    assert (body["failed"], body["cost_usd"]) == (0, 0.0)
    assert (again.content, again.headers.get("x-leanrank-replayed")) == (first.content, "true")
    assert (other.status_code, other.json()["error_type"]) == (409, "request_conflict")
    [total] = ledger.totals("tenant", this_month())
    assert (total.key, total.calls, total.requests, total.documents) == ("teacher-demo", 3, 3, 6)


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    provider = FakeProvider("cohere")
    yield provider
    provider.close()


def test_a_paid_api_gets_one_call_per_query_each_billed(
    tmp_path: Path, index: Pipeline, fake: FakeProvider, ledger: Ledger
) -> None:
    server, search = serve(priced(tmp_path), index, adapter(fake), ledger)
    try:
        with server.client(ADMIN_KEY, headers={"X-Leanrank-Course": "demo"}) as http:
            reply = http.post("/v1/rerank/batch", json={"requests": BATCH})
    finally:
        server.close()
        search.close()
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert len(fake.requests) == 3
    assert [a["cost_usd"] for a in body["results"]] == [pytest.approx(0.002)] * 3
    assert body["cost_usd"] == pytest.approx(0.006)
    for a in body["results"]:
        docs = BATCH[a["index"]]["documents"]
        assert a["results"][0]["index"] == max(range(len(docs)), key=lambda j: score_of(docs[j]))
    [total] = ledger.totals("course", this_month())
    assert (total.key, total.calls, total.requests, total.cost_usd) == ("demo", 3, 3, pytest.approx(0.006))


def test_a_dropped_attempt_is_possibly_billed_under_its_own_entry(
    tmp_path: Path, index: Pipeline, fake: FakeProvider, ledger: Ledger
) -> None:
    """The provider reads the first attempt of the 1st and of the 3rd query whole and drops the line; each
    is resent and served. Each dropped attempt is recorded as possibly billed under its own entry's id and
    none under the 2nd, whichever entry's task sent the calls (before: all under that one)."""
    fake.script_for(BATCH[0]["query"], Fault(DROP))
    fake.script_for(BATCH[2]["query"], Fault(DROP))
    server, search = serve(priced(tmp_path), index, adapter(fake), ledger)
    try:
        with server.client(ADMIN_KEY, headers={"x-request-id": "job-2", "X-Leanrank-Course": "demo"}) as http:
            reply = http.post("/v1/rerank/batch", json={"requests": BATCH})
    finally:
        server.close()
        search.close()
    assert reply.status_code == 200, reply.text
    assert (reply.json()["failed"], len(fake.requests)) == (0, 5)
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        rows = db.execute(
            "SELECT request_id, course, stage FROM leanrank_rerank_calls WHERE stage LIKE '%unconfirmed%' "
            "ORDER BY request_id"
        ).fetchall()
    assert rows == [
        ("ops/job-2#0", "demo", "rerank:unconfirmed"),
        ("ops/job-2#2", "demo", "rerank:unconfirmed"),
    ]
    [total] = ledger.totals("course", this_month())
    assert (total.calls, total.unconfirmed, total.requests) == (5, 2, 3)


def test_an_entry_is_held_checked_and_billed_by_the_backend_s_windows_as_on_v1_rerank(
    tmp_path: Path, index: Pipeline, fake: FakeProvider, ledger: Ledger
) -> None:
    """A backend that windows long documents (2 words a window, as `max_doc_tokens=2&long_docs=maxpool`
    would): 30 documents of 8 words go out as 120 windows, 2 search units ($0.004). `/v1/rerank` and an entry
    of `/v1/rerank/batch` bill that the same way; before, the entry's seat hid the windows, so the provider's
    2 units were above the most 30 short documents can use and the entry failed as a bad response. The
    cascade is off here: on, it would send 25 documents (100 windows, one unit) on both routes."""
    docs = [" ".join(f"d{i}w{j}" for j in range(8)) for i in range(30)]
    windowed = WindowedReranker(adapter(fake), WindowPolicy(max_tokens=2, max_windows=10), words)
    server, search = serve(priced(tmp_path), index, windowed, ledger)
    try:
        headers = {"X-Leanrank-Course": "demo", "X-Leanrank-Cascade": "off"}
        with server.client(ADMIN_KEY, headers=headers) as http:
            single = http.post("/v1/rerank", json={"query": "q", "documents": docs})
            batch = http.post("/v1/rerank/batch", json={"requests": [{"query": "q", "documents": docs}]})
        with server.client(ADMIN_KEY, headers={"X-Leanrank-Course": "demo"}) as http:
            capped = [
                http.post("/v1/rerank", json={"query": "q", "documents": docs}),
                http.post("/v1/rerank/batch", json={"requests": [{"query": "q", "documents": docs}]}),
            ]
    finally:
        server.close()
        search.close()
    assert (single.status_code, batch.status_code) == (200, 200), (single.text, batch.text)
    [entry] = batch.json()["results"]
    assert (entry["error"], entry["cost_usd"]) == (None, pytest.approx(0.004))
    # With the cascade on, the cap counts the backend's windows on both routes: 25 documents, 100 windows.
    assert [len(r.body["documents"]) for r in fake.requests] == [120, 120, 100, 100]
    assert capped[0].headers["x-leanrank-documents-forwarded"] == "25"
    assert capped[1].json()["results"][0]["cascade"]["documents_forwarded"] == 25
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        rows = db.execute(
            "SELECT stage, documents, billed_units, cost_usd FROM leanrank_rerank_calls ORDER BY rowid"
        ).fetchall()
    assert (
        rows
        == [("rerank", 30, 2.0, pytest.approx(0.004))] * 2 + [("rerank", 25, 1.0, pytest.approx(0.002))] * 2
    )


class FailsOn:
    """Scores by length; fails the query `bad` as a backend would (after its retries)."""

    name = "fails-on"

    def __init__(self, bad: str) -> None:
        self.bad = bad

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        if query == self.bad:
            raise BackendError("upstream said something secret")
        return RerankResponse(tuple(float(len(d)) for d in documents), Usage.free(len(documents), 0.0))


def test_a_failed_query_is_an_entry_with_the_fixed_message_and_no_record(
    tmp_path: Path, index: Pipeline, ledger: Ledger
) -> None:
    server, search = serve(settings_for(tmp_path / "data"), index, FailsOn(BATCH[1]["query"]), ledger)
    try:
        with server.client(DEMO_KEY) as http:
            reply = http.post("/v1/rerank/batch", json={"requests": BATCH})
    finally:
        server.close()
        search.close()
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["failed"] == 1
    assert [a["error"] for a in body["results"]] == [
        None,
        {"error": FIXED_BACKEND_MESSAGE, "error_type": "backend_failed"},
        None,
    ]
    assert [len(a["results"]) for a in body["results"]] == [3, 0, 1]
    [total] = ledger.totals("tenant", this_month())
    assert (total.calls, total.requests) == (2, 2)


@pytest.mark.parametrize(
    ("requests", "status", "error_type", "error"),
    [
        (BATCH * 2, 413, "limit_exceeded", "queries: 6 is above the limit of 5 (serve.max_batch_queries)"),
        (
            [*BATCH[:2], {"query": " ", "documents": ["x"]}],
            400,
            "empty_input",
            "requests.2: the query is empty",
        ),
        (
            [BATCH[0], {"query": "q", "documents": ["x"] * 1001}],
            413,
            "limit_exceeded",
            "requests.1: documents: 1001 is above the limit of 1000 (serve.max_documents)",
        ),
        (
            [],
            422,
            "invalid_request",
            "body.requests: List should have at least 1 item after validation, not 0",
        ),
    ],
)
def test_a_bad_batch_is_refused_whole_before_any_call(
    tmp_path: Path,
    index: Pipeline,
    ledger: Ledger,
    requests: list[object],
    status: int,
    error_type: str,
    error: str,
) -> None:
    model = CountingModel()
    settings = settings_for(tmp_path / "data", max_batch_queries=5)
    search = Pipeline(settings, dense=index.dense, sparse=index.sparse, store=index.store, reranker=model)
    server = LiveServer(create_app(settings, reranker=model, pipeline=search, ledger=ledger))
    try:
        with server.client(DEMO_KEY) as http:
            reply = http.post("/v1/rerank/batch", json={"requests": requests})
    finally:
        server.close()
        search.close()
    answer = reply.json()
    assert (reply.status_code, answer["error_type"], answer["error"]) == (status, error_type, error)
    assert model.calls == []
    assert ledger.totals("tenant", this_month()) == []


def test_the_limit_is_a_setting() -> None:
    assert ServeSettings(api_keys=ENTRIES).max_batch_queries == 100
