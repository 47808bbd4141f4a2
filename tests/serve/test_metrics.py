"""`/metrics` over a real loopback server: the standard process and Python series, no `_created` series,
refused requests counted under their route, and the upstream latency of each backend that served. And the
possibly billed calls of a dead process, recorded by whichever reservation reaps its hold, counted as the
ledger counts them (a real SQLite ledger, a real `Meter`, a process really killed)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import re
import signal
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from leanrank.cost.budget import Budget
from leanrank.cost.ledger import HOLD_MARGIN, Ledger
from leanrank.cost.meter import Meter
from leanrank.cost.period import Period
from leanrank.cost.pricing import Pricing
from leanrank.pipeline import Pipeline
from leanrank.rerank.base import RerankResponse, Usage
from leanrank.rerank.http import RerankTimeoutError
from leanrank.rerank.identity import IdentityReranker
from leanrank.serve import create_app
from leanrank.serve.accounting import Charge
from leanrank.serve.metrics import Metrics
from leanrank.settings import CALL_DEADLINE_S, BudgetSettings
from tests.cost.conftest import NOV_3
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


PAID = "cohere:rerank-v3.5"
PRICING = Pricing.load()
CANDIDATES = [f"документ номер {i}" for i in range(120)]  # 2 search units: $0.004 at $2 / 1k
EXPIRED = NOV_3 + timedelta(seconds=CALL_DEADLINE_S) + HOLD_MARGIN + timedelta(seconds=1)
"""Just past the expiry of a hold written at NOV_3 by a meter with the default deadline."""


class _KilledMidCall:
    """A paid backend that has the request when its process is killed: the hold is left behind."""

    name = PAID

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        os.kill(os.getpid(), signal.SIGKILL)  # no release, no close, no atexit
        raise AssertionError("unreachable")


def _reserve_then_die(url: str) -> None:
    meter = Meter(Ledger(url), PRICING, clock=lambda: NOV_3)
    asyncio.run(
        meter.rerank(_KilledMidCall(), "что такое список", CANDIDATES, request_id="dead", course="py")
    )


def _counted(metrics: Metrics, series: str) -> float:
    """`leanrank_rerank_<series>_total` of the paid backend and course `py`; 0 when never counted."""
    labels = {"backend": PAID, "course": "py"}
    return metrics.registry.get_sample_value(f"leanrank_rerank_{series}_total", labels) or 0.0


def _observing(
    ledger: Ledger, metrics: Metrics, clock: list[datetime], budget: Budget | None = None
) -> Meter:
    """The meter as the service builds it: what the ledger writes or deletes of its own reaches `metrics`."""
    return Meter(
        ledger,
        PRICING,
        budget,
        clock=lambda: clock[0],
        on_unconfirmed=metrics.observe_unconfirmed,
        on_replaced=metrics.observe_replaced,
    )


@pytest.mark.parametrize("budgeted", [False, True], ids=["no-budget", "budget"])
async def test_a_dead_process_s_hold_reaped_by_another_s_reservation_is_counted_once_as_the_ledger_counts_it(
    tmp_path: Path, budgeted: bool
) -> None:
    """A process is killed while its paid call runs (its hold, $0.004 for 120 documents, is left behind).
    Past the hold's expiry another process reserves (a free call) and reaps it: the possibly billed record
    it writes is counted by that process's metrics (before, only the ledger had it), once; later
    reservations reap nothing more."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    killed = multiprocessing.get_context("spawn").Process(target=_reserve_then_die, args=(url,))
    killed.start()
    killed.join(60)
    assert killed.exitcode == -signal.SIGKILL
    metrics = Metrics()
    with Ledger(url) as ledger:
        rules = [BudgetSettings(scope="course", name="py", soft_usd=1.0)]
        meter = _observing(ledger, metrics, [EXPIRED], Budget(rules, ledger) if budgeted else None)
        for request_id in ("next", "after"):
            await meter.rerank(IdentityReranker(), "q", CANDIDATES[:3], request_id=request_id, course="py")
        [total] = [t for t in ledger.totals("backend", Period.parse("2026-11")) if t.key == PAID]
    assert (total.calls, total.unconfirmed, total.documents) == (1, 1, 120)
    assert (total.cost_usd, total.unconfirmed_usd) == (pytest.approx(0.004), pytest.approx(0.004))
    assert (_counted(metrics, "unconfirmed_calls"), _counted(metrics, "calls")) == (1, 1)
    assert _counted(metrics, "unconfirmed_cost_usd") == pytest.approx(total.unconfirmed_usd)
    assert _counted(metrics, "cost_usd") == pytest.approx(total.cost_usd)
    assert _counted(metrics, "documents") == total.documents


def _one_search_unit(query: str, documents: Sequence[str]) -> Usage:
    """What the provider reports for the late call: 1 search unit ($0.002), under the $0.004 estimate."""
    return Usage(0, 0, 1.0, "search_units", "reported", 0.2, len(documents))


@pytest.mark.parametrize("outcome", ["answers", "times out"])
async def test_a_call_whose_hold_was_reaped_while_it_ran_leaves_the_metrics_at_the_ledger_s_numbers(
    tmp_path: Path, outcome: str
) -> None:
    """The paid call stalls past its hold's expiry and another reservation of the same process reaps the
    hold, recording it at the $0.004 estimate (counted). If the call then answers, its record ($0.002)
    replaces the reaped one in the ledger: the metrics count it as the route does and take the reaped one
    back apart (`_replaced_*`). If it times out, its release writes nothing (the reaping recorded it) and
    nothing more is counted."""
    metrics = Metrics()
    clock = [NOV_3]
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as ledger:
        meter = _observing(ledger, metrics, clock)

        class Stalls:
            name = PAID

            async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
                clock[0] = EXPIRED
                await meter.rerank(IdentityReranker(), query, documents[:3], request_id="other", course="py")
                if outcome == "times out":
                    raise RerankTimeoutError(f"{PAID}: no answer")
                return RerankResponse(tuple(0.0 for _ in documents), _one_search_unit(query, documents))

        if outcome == "times out":
            with pytest.raises(RerankTimeoutError):
                await meter.rerank(Stalls(), "q", CANDIDATES, request_id="late", course="py")
        else:
            late = await meter.rerank(Stalls(), "q", CANDIDATES, request_id="late", course="py")
            charge = Charge(late.response, late.served_by, late.cost_usd, late.budget_state.level)
            metrics.observe_charge(charge, "py")  # as the rerank route counts a served call
        [total] = [t for t in ledger.totals("backend", Period.parse("2026-11")) if t.key == PAID]
    replaced = _counted(metrics, "replaced_calls")
    expected = (1, 0, 0.002) if outcome == "answers" else (1, 1, 0.004)
    assert (total.calls, total.unconfirmed, total.cost_usd) == pytest.approx(expected)
    assert (_counted(metrics, "unconfirmed_calls"), replaced) == ((1, 1) if outcome == "answers" else (1, 0))
    assert _counted(metrics, "calls") - replaced == total.calls
    assert _counted(metrics, "unconfirmed_calls") - replaced == total.unconfirmed
    assert _counted(metrics, "documents") - _counted(metrics, "replaced_documents") == total.documents
    net_cost = _counted(metrics, "cost_usd") - _counted(metrics, "replaced_cost_usd")
    net_unconfirmed = _counted(metrics, "unconfirmed_cost_usd") - _counted(metrics, "replaced_cost_usd")
    assert (net_cost, net_unconfirmed) == (
        pytest.approx(total.cost_usd),
        pytest.approx(total.unconfirmed_usd),
    )
