"""Billing integrity and tenant isolation over a real loopback service and a fake Cohere-format provider:
one record per billed request, idempotent request ids, reserved budgets, checked provider numbers, a
ledger that must be writable before a paid call, per-tenant score caches and redacted backend errors."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from leanrank.cost.ledger import Hold, Ledger
from leanrank.cost.period import Period
from leanrank.pipeline import Pipeline
from leanrank.rerank.base import Reranker
from leanrank.rerank.cache import with_cache
from leanrank.rerank.fallback import FallbackReranker
from leanrank.rerank.identity import IdentityReranker
from leanrank.rerank.providers import PROVIDERS, HttpReranker
from leanrank.retry import RetryPolicy
from leanrank.serve import create_app
from leanrank.settings import RerankSettings, Settings
from tests.cost.conftest import make_record
from tests.rerank.servers import API_KEY, DROP, MODEL, FakeProvider, Fault, adapter, silent
from tests.rerank.test_cache import REDIS_URL, redis_up
from tests.serve.conftest import ADMIN_KEY, COOKING_KEY, DEMO_KEY, priced, settings_for
from tests.serve.live import LiveServer

QUERY = "Как работает цикл for?"
DOCS = [f"Фрагмент {i}: цикл for перебирает элементы, шаг {i}." for i in range(3)]
PAID = f"cohere:{MODEL}"
FIXED_BACKEND_MESSAGE = "the rerank backend failed; quote the request id to the operator"


def this_month() -> Period:
    return Period.month_of(datetime.now(UTC))


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    provider = FakeProvider("cohere")
    yield provider
    provider.close()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as opened:
        yield opened


def serve(
    settings: Settings, index: Pipeline, reranker: Reranker, ledger: Ledger | None
) -> tuple[LiveServer, Pipeline]:
    """The service with `reranker` behind both the gateway and search (over the shared test index);
    without `ledger`, the one `settings` name, which a pipeline built on them would also use."""
    search = Pipeline(settings, dense=index.dense, sparse=index.sparse, store=index.store, reranker=reranker)
    app = create_app(settings, reranker=reranker, pipeline=search, ledger=ledger)
    return LiveServer(app), search


def test_a_paid_search_is_one_record_billed_to_its_tenant(
    tmp_path: Path, index: Pipeline, fake: FakeProvider
) -> None:
    settings = priced(tmp_path)
    server, search = serve(settings, index, adapter(fake), None)
    try:
        with server.client(DEMO_KEY) as http:
            reply = http.post("/v1/search", json={"course": "demo", "query": QUERY})
    finally:
        server.close()
        search.close()
    ledger = Ledger.from_settings(settings)
    assert reply.status_code == 200, reply.text
    assert (reply.json()["served_by"], reply.json()["cost_usd"]) == (PAID, pytest.approx(0.002))
    assert len(fake.requests) == 1
    by_tenant = [(t.key, t.calls, t.cost_usd) for t in ledger.totals("tenant", this_month())]
    ledger.close()
    assert by_tenant == [("teacher-demo", 1, pytest.approx(0.002))]  # not a second, tenantless record


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v2/rerank", {"query": QUERY, "documents": DOCS}),
        ("/rerank", {"query": QUERY, "texts": DOCS}),
        ("/v1/search", {"course": "demo", "query": QUERY}),
    ],
)
def test_a_resent_request_id_replays_the_first_answer_and_another_body_is_refused(
    tmp_path: Path, index: Pipeline, fake: FakeProvider, ledger: Ledger, path: str, body: dict[str, Any]
) -> None:
    server, search = serve(priced(tmp_path), index, adapter(fake), ledger)
    try:
        with server.client(DEMO_KEY, headers={"x-request-id": "client-7"}) as http:
            replies = [http.post(path, json=body) for _ in range(3)]
            reordered = json.dumps(dict(reversed(list(body.items()))), indent=2)  # the same request
            replies.append(http.post(path, content=reordered, headers={"content-type": "application/json"}))
            other = http.post(path, json={**body, "query": "другой вопрос"})
    finally:
        server.close()
        search.close()
    first, *again = replies
    assert first.status_code == 200, first.text
    assert all(r.status_code == 200 and r.content == first.content for r in again)
    assert [r.headers.get("x-leanrank-replayed") for r in replies] == [None, "true", "true", "true"]
    kept = {k: v for k, v in first.headers.items() if k.startswith("x-leanrank-")}
    # The cost, budget, backend and the cascade's counts come back as first sent (search reports in its body).
    assert path == "/v1/search" or "x-leanrank-documents-received" in kept
    assert all(
        {k: v for k, v in r.headers.items() if k.startswith("x-leanrank-")}
        == kept | {"x-leanrank-replayed": "true"}
        for r in again
    )
    assert (other.status_code, other.json()["error_type"]) == (409, "request_conflict")
    assert "'client-7' was used for another request" in other.json()["error"]
    assert len(fake.requests) == 1  # the provider was paid once
    [total] = ledger.totals("tenant", this_month())
    assert (total.calls, total.cost_usd) == (1, pytest.approx(0.002))


def test_a_resend_that_adds_the_cascade_opt_out_is_another_request(
    tmp_path: Path, index: Pipeline, fake: FakeProvider, ledger: Ledger
) -> None:
    """`X-Leanrank-Cascade: off` changes what is forwarded and billed: under a used id it is a 409, as a
    changed course is; the same opt-out written in another case replays."""
    server, search = serve(priced(tmp_path), index, adapter(fake), ledger)
    body = {"query": QUERY, "documents": DOCS}
    sent = [
        ("client-8", None),
        ("client-8", "off"),
        ("client-9", "off"),
        ("client-9", "OFF"),
        ("client-9", None),
    ]
    try:
        with server.client(DEMO_KEY) as http:
            replies = [
                http.post(
                    "/v2/rerank",
                    json=body,
                    headers={"x-request-id": rid} | ({"x-leanrank-cascade": o} if o else {}),
                )
                for rid, o in sent
            ]
    finally:
        server.close()
        search.close()
    assert [(r.status_code, r.headers.get("x-leanrank-replayed")) for r in replies] == [
        (200, None),
        (409, None),
        (200, None),
        (200, "true"),
        (409, None),
    ]
    assert replies[1].json()["error_type"] == "request_conflict"
    assert replies[3].content == replies[2].content
    assert len(fake.requests) == 2


@pytest.mark.parametrize("bad", ["../../etc;drop table", "x" * 129, "id with spaces"])
def test_a_malformed_request_id_is_refused_not_replaced(
    tmp_path: Path, index: Pipeline, fake: FakeProvider, ledger: Ledger, bad: str
) -> None:
    """A resend under an id the service silently swapped for a fresh one would be billed again."""
    server, search = serve(priced(tmp_path), index, adapter(fake), ledger)
    try:
        with server.client(DEMO_KEY, headers={"x-request-id": bad}) as http:
            replies = [http.post("/v2/rerank", json={"query": QUERY, "documents": DOCS}) for _ in range(2)]
        with server.client(None, headers={"x-request-id": bad}) as http:
            keyless = http.post("/v2/rerank", json={"query": QUERY, "documents": DOCS})
    finally:
        server.close()
        search.close()
    assert keyless.status_code == 401  # the key is checked first: no other answer without one
    for reply in replies:
        assert (reply.status_code, reply.json()["error_type"]) == (422, "invalid_input")
        assert reply.json()["error"].startswith("X-Request-Id must be 1 to 128 letters, digits")
    assert fake.requests == []
    assert ledger.totals("tenant", this_month()) == []


def test_an_unwritable_ledger_stops_paid_calls_and_readiness_names_it(
    tmp_path: Path, index: Pipeline, fake: FakeProvider
) -> None:
    down = Ledger("postgresql+psycopg://u@127.0.0.1:9/db", connect_timeout_s=2)  # nothing listens on 9
    server, search = serve(priced(tmp_path), index, adapter(fake), down)
    try:
        with server.client(ADMIN_KEY) as http:
            rerank = http.post("/v2/rerank", json={"query": QUERY, "documents": DOCS})
            found = http.post("/v1/search", json={"course": "demo", "query": QUERY})
            ready = http.get("/readyz")
    finally:
        server.close()
        search.close()
        down.close()
    for reply in (rerank, found, ready):
        assert (reply.status_code, reply.json()["error_type"]) == (503, "ledger_unavailable")
        assert reply.json()["error"].startswith("the cost ledger is unavailable")
        assert "127.0.0.1" not in reply.text
    assert fake.requests == []  # nothing was sent to the paid provider


def test_a_resend_after_a_kill_is_a_409_until_the_dead_call_s_deadline_then_served(
    tmp_path: Path, index: Pipeline, fake: FakeProvider, ledger: Ledger
) -> None:
    """Two processes were killed mid-call, leaving their holds: one whose call could still be running (it
    expires in 3 minutes), one whose deadline has passed a second ago (before, it stayed an hour). A resend
    of the first id is a 409; the second is served, its dead call recorded once as possibly billed, and a
    further resend replays the answer without a second such record."""
    now = datetime.now(UTC)
    for rid, expires in (("running", now + timedelta(minutes=3)), ("dead", now - timedelta(seconds=1))):
        hold = Hold(now - timedelta(minutes=4), f"teacher-demo/{rid}", "rerank", None, "teacher-demo", 0.002)
        ledger.reserve(replace(hold, backend=PAID, documents=3, expires=expires), [], lambda _: True)
    server, search = serve(priced(tmp_path), index, adapter(fake), ledger)
    body = {"query": QUERY, "documents": DOCS}
    try:
        with server.client(DEMO_KEY, headers={"x-request-id": "running"}) as http:
            running = http.post("/v2/rerank", json=body)
        with server.client(DEMO_KEY, headers={"x-request-id": "dead"}) as http:
            served, replayed = http.post("/v2/rerank", json=body), http.post("/v2/rerank", json=body)
    finally:
        server.close()
        search.close()
    assert (running.status_code, running.json()["error_type"]) == (409, "request_conflict")
    assert "'running' is still running" in running.json()["error"]
    assert (served.status_code, replayed.headers.get("x-leanrank-replayed")) == (200, "true")
    assert len(fake.requests) == 1
    [total] = ledger.totals("tenant", this_month())
    assert (total.calls, total.requests, total.unconfirmed) == (2, 1, 1)  # the dead call once, the resend
    assert (total.cost_usd, total.unconfirmed_usd) == (pytest.approx(0.004), pytest.approx(0.002))


def test_a_backend_that_never_answers_is_a_424_at_the_call_deadline(
    tmp_path: Path, index: Pipeline, ledger: Ledger
) -> None:
    """`rerank.deadline_s` (0.5 s here) bounds a paid call whose backend took the request and never answers,
    though the adapter's own timeout is a minute: 424, recorded as possibly billed, the hold released."""
    settings = priced(tmp_path).model_copy(update={"rerank": RerankSettings(deadline_s=0.5)})
    with silent() as url:
        hung = HttpReranker(PROVIDERS["cohere"], MODEL, api_key=API_KEY, base_url=url, timeout_s=60.0)
        server, search = serve(settings, index, hung, ledger)
        try:
            with server.client(DEMO_KEY, headers={"x-request-id": "hung"}) as http:
                reply = http.post("/v2/rerank", json={"query": QUERY, "documents": DOCS})
        finally:
            server.close()
            search.close()
    assert (reply.status_code, reply.json()["error_type"]) == (424, "backend_failed")
    [total] = ledger.totals("tenant", this_month())
    assert (total.calls, total.unconfirmed, total.cost_usd) == (1, 1, pytest.approx(0.002))
    with ledger._engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(ledger._holds)).scalar_one() == 0


def test_a_cohere_v1_request_with_max_chunks_per_doc_is_billed_by_its_windows(
    tmp_path: Path, index: Pipeline, fake: FakeProvider, ledger: Ledger
) -> None:
    """`max_tokens_per_doc` 1 and `max_chunks_per_doc` 10: each of 30 four-word documents goes out as 4
    windows (one a word), each a document billed: 120 = ceil(120 / 100) = 2 search units = $0.004, not the
    1 unit of 30 documents. The provider's answer of 2 units is taken as this request's; a second request,
    whose line drops after it was sent, is recorded as possibly billed at that same estimate."""
    docs = [f"Фрагмент {i} цикл for" for i in range(30)]
    body = {"query": QUERY, "documents": docs, "max_tokens_per_doc": 1, "max_chunks_per_doc": 10}
    server, search = serve(priced(tmp_path), index, adapter(fake, retry=RetryPolicy(max_attempts=1)), ledger)
    try:
        with server.client(DEMO_KEY, headers={"x-leanrank-cascade": "off"}) as http:
            served = http.post("/v1/rerank", json=body)
            fake.script(Fault(DROP))
            dropped = http.post("/v1/rerank", json=body)
    finally:
        server.close()
        search.close()
    assert served.status_code == 200, served.text
    assert served.headers["x-leanrank-cost-usd"] == "0.00400000"
    assert [len(r.body["documents"]) for r in fake.requests] == [120, 120]
    assert dropped.status_code == 424
    [total] = ledger.totals("tenant", this_month())
    assert (total.calls, total.unconfirmed) == (2, 1)
    assert (total.cost_usd, total.unconfirmed_usd) == (pytest.approx(0.008), pytest.approx(0.004))


def test_readiness_follows_a_failing_backend(
    tmp_path: Path, index: Pipeline, fake: FakeProvider, ledger: Ledger
) -> None:
    fake.script(Fault(503, {"message": "upstream overloaded"}))
    paid = adapter(fake, retry=RetryPolicy(max_attempts=1))
    server, search = serve(priced(tmp_path), index, paid, ledger)
    body = {"query": QUERY, "documents": DOCS}
    try:
        with server.client(ADMIN_KEY) as http:
            assert http.get("/readyz").status_code == 200
            assert http.post("/v2/rerank", json=body).status_code == 424
            down = http.get("/readyz")
            assert http.post("/v2/rerank", json=body).status_code == 200  # the provider recovered
            up = http.get("/readyz")
    finally:
        server.close()
        search.close()
    assert (down.status_code, down.json()["error"]) == (
        503,
        f"the rerank backend {PAID} failed the last call",
    )
    assert up.status_code == 200


def _units(units: object) -> dict[str, Any]:
    return {"billed_units": {"search_units": units}}


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ({"results": [{"index": 0, "relevance_score": 0.5}], "meta": _units("NaN")}, "NaN units"),
        ({"results": [{"index": 0, "relevance_score": 0.5}], "meta": _units("Infinity")}, "infinite units"),
    ],
)
def test_non_finite_numbers_in_a_200_answer_are_a_424_recorded_as_maybe_billed(
    tmp_path: Path,
    index: Pipeline,
    fake: FakeProvider,
    ledger: Ledger,
    answer: dict[str, Any],
    why: str,
) -> None:
    raw = _with_non_finite(answer)
    fake.script(Fault(200, raw))
    server, search = serve(priced(tmp_path), index, adapter(fake), ledger)
    try:
        with server.client(DEMO_KEY) as http:
            reply = http.post("/v2/rerank", json={"query": QUERY, "documents": DOCS[:1]})
        with server.client(ADMIN_KEY) as http:
            usage = http.get("/v1/usage", params={"by": "tenant"}).json()
    finally:
        server.close()
        search.close()
    assert (reply.status_code, reply.json()["error_type"]) == (424, "backend_failed"), why
    [total] = ledger.totals("tenant", this_month())  # the provider answered 200: it billed, at the estimate
    assert (total.key, total.calls, total.cost_usd) == ("teacher-demo", 1, pytest.approx(0.002))
    [row] = usage["rows"]  # and /v1/usage says it is a possibly billed call, not a served one
    assert (row["calls"], row["unconfirmed"], row["unconfirmed_usd"]) == (1, 1, pytest.approx(0.002))
    assert usage["unconfirmed"] == 1


def test_an_infinite_score_in_a_200_answer_ranks_last_with_a_warning_and_is_billed_once(
    tmp_path: Path, index: Pipeline, fake: FakeProvider, ledger: Ledger
) -> None:
    """Scores follow the guard's one policy (rank last, warn); the usage was fine, so the call is billed."""
    answer = {
        "results": [{"index": 0, "relevance_score": "Infinity"}, {"index": 1, "relevance_score": 0.25}],
        "meta": _units(1),
    }
    fake.script(Fault(200, _with_non_finite(answer)))
    server, search = serve(priced(tmp_path), index, adapter(fake), ledger)
    try:
        with server.client(DEMO_KEY) as http:
            reply = http.post("/v2/rerank", json={"query": QUERY, "documents": DOCS[:2]})
    finally:
        server.close()
        search.close()
    assert reply.status_code == 200
    assert [r["index"] for r in reply.json()["results"]] == [1, 0]
    assert "non-finite" in reply.headers["x-leanrank-warning"]
    [total] = ledger.totals("tenant", this_month())
    assert (total.key, total.calls, total.cost_usd) == ("teacher-demo", 1, pytest.approx(0.002))


def _with_non_finite(answer: dict[str, Any]) -> bytes:
    """JSON as a provider might send it: Python's encoder writes the bare `NaN` / `Infinity` tokens."""
    text = json.dumps(answer)
    return text.replace('"NaN"', "NaN").replace('"Infinity"', "Infinity").encode()


@pytest.mark.parametrize("cache", ["sqlite", "redis"])
def test_a_tenant_cannot_learn_from_the_score_cache_what_another_asked(
    tmp_path: Path, index: Pipeline, fake: FakeProvider, ledger: Ledger, cache: str
) -> None:
    if cache == "redis" and not redis_up():
        pytest.skip("no Redis server on 127.0.0.1:6379")
    spec = REDIS_URL if cache == "redis" else "sqlite"
    cached = with_cache(adapter(fake), spec, tmp_path, ttl_s=3600)
    server, search = serve(priced(tmp_path), index, cached, ledger)
    body = {"query": f"{QUERY} {uuid.uuid4().hex}", "documents": DOCS}  # fresh pairs, whatever Redis holds
    try:
        with server.client(DEMO_KEY) as demo, server.client(COOKING_KEY) as cooking:
            costs = [
                float(http.post("/v2/rerank", json=body).headers["x-leanrank-cost-usd"])
                for http in (demo, cooking, demo)
            ]
    finally:
        server.close()
        search.close()
    # course B pays for its own first call (it must not come back free); course A's repeat is a hit.
    assert costs == [pytest.approx(0.002), pytest.approx(0.002), 0.0]
    assert len(fake.requests) == 2


def test_a_failed_paid_backend_is_redacted_in_search(
    tmp_path: Path, index: Pipeline, fake: FakeProvider, ledger: Ledger
) -> None:
    fake.script(Fault(503, {"message": "node rerank-7 overloaded"}))
    paid = adapter(fake, retry=RetryPolicy(max_attempts=1))
    server, search = serve(priced(tmp_path), index, FallbackReranker([paid, IdentityReranker()]), ledger)
    try:
        with server.client(DEMO_KEY) as http:
            reply = http.post("/v1/search", json={"course": "demo", "query": QUERY})
    finally:
        server.close()
        search.close()
    assert reply.status_code == 200, reply.text
    assert reply.json()["served_by"] == "identity"
    assert reply.json()["failed"] == [f"{PAID}: {FIXED_BACKEND_MESSAGE}"]
    port = fake.url.rsplit(":", 1)[1]
    assert not any(secret in reply.text for secret in (port, "/v2/rerank", "rerank-7", "HTTP 503"))


def test_each_timed_out_attempt_under_one_request_id_is_recorded_as_possibly_billed(
    tmp_path: Path, index: Pipeline, fake: FakeProvider, ledger: Ledger
) -> None:
    """A client resends its request id after a 424 (a failed attempt keeps nothing): each attempt the
    provider answered too late may be billed, so each is its own `:unconfirmed` record, and the retry that
    is served is billed as well: three calls the provider answered, three records."""
    fake.script(*[Fault(200, delay_s=1.0)] * 2)  # answered, after the adapter stopped waiting
    server, search = serve(priced(tmp_path), index, adapter(fake, timeout_s=0.3), ledger)
    try:
        with server.client(DEMO_KEY, headers={"x-request-id": "retried-1"}) as http:
            replies = [http.post("/v2/rerank", json={"query": QUERY, "documents": DOCS}) for _ in range(3)]
        with server.client(ADMIN_KEY) as http:
            usage = http.get("/v1/usage", params={"by": "tenant"}).json()
    finally:
        server.close()
        search.close()
    assert [r.status_code for r in replies] == [424, 424, 200]
    assert len(fake.requests) == 3
    [total] = ledger.totals("tenant", this_month())
    assert (total.calls, total.unconfirmed, total.requests) == (3, 2, 1)
    assert total.cost_usd == pytest.approx(3 * 0.002)
    assert ledger.spent("tenant", "teacher-demo", this_month()) == pytest.approx(3 * 0.002)
    [row] = usage["rows"]
    assert (row["calls"], row["unconfirmed"], row["cost_usd"]) == (3, 2, pytest.approx(3 * 0.002))


def test_metrics_count_the_possibly_billed_calls_the_ledger_counts(
    tmp_path: Path, index: Pipeline, fake: FakeProvider, ledger: Ledger
) -> None:
    """A call that timed out (424) is in the ledger at its estimate, as budgets count it; `/metrics` (what
    the Grafana spend panels sum) counts it too, beside the call that was served."""
    fake.script(Fault(200, delay_s=1.0))
    server, search = serve(priced(tmp_path), index, adapter(fake, timeout_s=0.3), ledger)
    try:
        with server.client(DEMO_KEY) as http:
            replies = [http.post("/v2/rerank", json={"query": QUERY, "documents": DOCS}) for _ in range(2)]
        with server.client(ADMIN_KEY) as http:
            text = http.get("/metrics").text
    finally:
        server.close()
        search.close()
    assert [r.status_code for r in replies] == [424, 200]
    [total] = ledger.totals("backend", this_month())
    assert (total.key, total.calls, total.unconfirmed) == (PAID, 2, 1)
    series = {
        (sample.name, sample.labels.get("backend")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert series[("leanrank_rerank_calls_total", PAID)] == total.calls
    assert series[("leanrank_rerank_documents_total", PAID)] == total.documents
    assert series[("leanrank_rerank_cost_usd_total", PAID)] == pytest.approx(total.cost_usd)


def test_usage_money_is_rounded_to_ten_decimals(tmp_path: Path, index: Pipeline, ledger: Ledger) -> None:
    """Sums of float costs showed their noise: 0.1 + 0.2 was `"cost_usd": 0.30000000000000004`."""
    now = datetime.now(UTC)
    for rid, cost, stage in (("a", 0.1, "rerank"), ("b", 0.2, "rerank:unconfirmed"), ("c", 0.2, "rerank")):
        ledger.record(
            make_record(rid, time=now, course="demo", stage=stage, cost_usd=cost, full_cost_usd=cost)
        )
    ledger.record(make_record("d", time=now, course="demo", cost_usd=1 / 3, full_cost_usd=1 / 3))
    server, search = serve(settings_for(tmp_path / "data"), index, IdentityReranker(), ledger)
    try:
        with server.client(ADMIN_KEY) as http:
            usage = http.get("/v1/usage")
            series = http.get("/v1/usage/series", params={"bucket": "day"})
    finally:
        server.close()
        search.close()
    assert usage.status_code == series.status_code == 200, usage.text + series.text
    [row] = usage.json()["rows"]
    whole = round(0.5 + 1 / 3, 10)
    assert (row["cost_usd"], row["full_cost_usd"], row["saved_usd"]) == (whole, whole, 0.0)
    assert (row["unconfirmed_usd"], usage.json()["cost_usd"]) == (0.2, whole)
    [bucket] = series.json()["rows"]
    assert bucket["cost_usd"] == whole
    assert "0000000000" not in usage.text + series.text
