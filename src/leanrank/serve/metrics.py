"""Prometheus metrics of one app, in its own registry (two apps in one process never share counters).

Labels stay bounded: routes are path templates (`/v1/courses/{course}`), unknown paths count as
`unmatched`, and course labels are only the courses a key was allowed to use. The registry also carries
the client library's standard process (CPU, memory, file descriptors), platform and garbage-collector
series; the `_created` series of counters and histograms are off (Prometheus does not use them and they
double the series count).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase

from leanrank.cost.ledger import LedgerRecord
from leanrank.serve.accounting import Charge

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_Metric = TypeVar("_Metric", bound=MetricWrapperBase)


class Metrics:
    """Request, rerank-cost and backpressure series; `render()` is the `/metrics` body."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # process-wide: off for every registry
        self.registry = CollectorRegistry()
        self._children: dict[tuple[MetricWrapperBase, tuple[str, ...]], MetricWrapperBase] = {}
        r = self.registry
        for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            r.register(standard)
        self.requests = Counter(
            "leanrank_http_requests", "HTTP requests answered.", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "leanrank_http_request_duration_seconds",
            "Time from request to response.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_latency = Histogram(
            "leanrank_upstream_request_duration_seconds",
            "Time the backend that served a rerank took (calls answered wholly from the cache excluded).",
            ["backend"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("leanrank_requests_in_flight", "Requests holding a worker slot.", registry=r)
        self.rejected = Counter("leanrank_overload_rejections", "Requests refused with 429.", registry=r)
        self.rate_limited = Counter(
            "leanrank_rate_limit_rejections",
            "Requests refused by a per-key rate limit (serve.rate_limits).",
            ["key", "limit"],
            registry=r,
        )
        labels = ["backend", "course"]
        self.rerank_calls = Counter("leanrank_rerank_calls", "Metered rerank calls.", labels, registry=r)
        self.rerank_documents = Counter(
            "leanrank_rerank_documents", "Documents sent to rerank.", labels, registry=r
        )
        self.rerank_tokens = Counter(
            "leanrank_rerank_tokens", "Tokens the backends used.", labels, registry=r
        )
        self.rerank_cost = Counter(
            "leanrank_rerank_cost_usd", "Known cost in US dollars.", labels, registry=r
        )
        self.rerank_fallbacks = Counter(
            "leanrank_rerank_fallbacks", "Backends that failed before one answered.", labels, registry=r
        )
        self.unconfirmed_calls = Counter(
            "leanrank_rerank_unconfirmed_calls",
            "Of the metered calls, those recorded as possibly billed (at their estimate).",
            labels,
            registry=r,
        )
        self.unconfirmed_cost = Counter(
            "leanrank_rerank_unconfirmed_cost_usd",
            "Of the known cost, that of the possibly billed calls, in US dollars.",
            labels,
            registry=r,
        )
        self.replaced_calls = Counter(
            "leanrank_rerank_replaced_calls",
            "Possibly billed records of reaped holds that their call's late settlement replaced: counted in "
            "leanrank_rerank_calls and _unconfirmed_calls, no longer in the ledger.",
            labels,
            registry=r,
        )
        self.replaced_documents = Counter(
            "leanrank_rerank_replaced_documents",
            "Their documents: counted in leanrank_rerank_documents, no longer in the ledger.",
            labels,
            registry=r,
        )
        self.replaced_cost = Counter(
            "leanrank_rerank_replaced_cost_usd",
            "Their estimated cost: counted in leanrank_rerank_cost_usd and _unconfirmed_cost_usd, no longer "
            "in the ledger.",
            labels,
            registry=r,
        )
        gateway = ["backend", "course", "key"]
        self.gateway_received = Counter(
            "leanrank_gateway_documents_received",
            "Documents clients sent to the gateway.",
            gateway,
            registry=r,
        )
        self.gateway_forwarded = Counter(
            "leanrank_gateway_documents_forwarded", "Of those, sent to the backend.", gateway, registry=r
        )
        self.gateway_cost = Counter(
            "leanrank_gateway_cost_usd", "Known cost of gateway calls in US dollars.", gateway, registry=r
        )
        self.gateway_saved = Counter(
            "leanrank_gateway_saved_usd",
            "What the cascade saved: the cost had every received document been sent, less the cost.",
            gateway,
            registry=r,
        )
        self.cache_hits = Counter(
            "leanrank_cache_hits",
            "Documents scored from the cache (not sent, not billed).",
            labels,
            registry=r,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self._labelled(self.requests, route, method, str(status)).inc()
        self._labelled(self.latency, route, method).observe(seconds)

    def observe_gateway(
        self, charge: Charge, course: str | None, key: str, received: int, forwarded: int
    ) -> None:
        """One gateway call: documents received and forwarded (as `x-leanrank-documents-*` count them: a
        document sent as several windows is one), spend and savings per course and key."""
        labels = (charge.backend, course or "", key)
        self._labelled(self.gateway_received, *labels).inc(received)
        self._labelled(self.gateway_forwarded, *labels).inc(forwarded)
        if charge.cost_usd:
            self._labelled(self.gateway_cost, *labels).inc(charge.cost_usd)
        if charge.full_cost_usd is not None and charge.cost_usd is not None:
            # The ledger's `saved_usd`, unclamped: the meter never records a full cost below the cost.
            self._labelled(self.gateway_saved, *labels).inc(charge.full_cost_usd - charge.cost_usd)

    def observe_charge(self, charge: Charge, course: str | None) -> None:
        labels = (charge.backend, course or "")
        usage = charge.response.usage
        self._count_call(labels, usage.documents, usage.total_tokens, charge.cost_usd)
        if charge.response.failed:
            self._labelled(self.rerank_fallbacks, *labels).inc(len(charge.response.failed))
        if usage.cache_hits:
            self._labelled(self.cache_hits, *labels).inc(usage.cache_hits)
        if usage.documents > usage.cache_hits:
            self._labelled(self.upstream_latency, charge.backend).observe(usage.latency_s)

    def observe_unconfirmed(self, records: Sequence[LedgerRecord]) -> None:
        """Calls a provider may have billed though no answer was used (`:unconfirmed` records, at their
        estimate; a dead process's reaped holds among them): calls, documents, tokens and cost as the
        ledger and budgets count them, and apart in `leanrank_rerank_unconfirmed_*` (the ledger's
        `unconfirmed`, `unconfirmed_usd`)."""
        for r in records:
            labels = (r.backend, r.course or "")
            self._count_call(labels, r.documents, r.query_tokens + r.document_tokens, r.cost_usd)
            self._labelled(self.unconfirmed_calls, *labels).inc()
            if r.cost_usd:
                self._labelled(self.unconfirmed_cost, *labels).inc(r.cost_usd)

    def observe_replaced(self, records: Sequence[LedgerRecord]) -> None:
        """Reaped records that their call's late settlement replaced in the ledger by its own record (which
        `observe_charge` counts as any call's). They were counted by `observe_unconfirmed` where they were
        written, and counters do not go down: they are counted again in `leanrank_rerank_replaced_*`, so
        the ledger's numbers, summed over the processes, are `leanrank_rerank_calls - _replaced_calls`,
        `_documents - _replaced_documents`, `_cost_usd - _replaced_cost_usd`, and of the possibly billed
        `_unconfirmed_calls - _replaced_calls`, `_unconfirmed_cost_usd - _replaced_cost_usd` (a reaped record
        has no tokens: `leanrank_rerank_tokens` needs nothing taken back)."""
        for r in records:
            labels = (r.backend, r.course or "")
            self._labelled(self.replaced_calls, *labels).inc()
            self._labelled(self.replaced_documents, *labels).inc(r.documents)
            if r.cost_usd:
                self._labelled(self.replaced_cost, *labels).inc(r.cost_usd)

    def _count_call(
        self, labels: tuple[str, str], documents: int, tokens: int, cost_usd: float | None
    ) -> None:
        """One call in the `leanrank_rerank_*` series, labelled (backend, course)."""
        self._labelled(self.rerank_calls, *labels).inc()
        self._labelled(self.rerank_documents, *labels).inc(documents)
        self._labelled(self.rerank_tokens, *labels).inc(tokens)
        if cost_usd:
            self._labelled(self.rerank_cost, *labels).inc(cost_usd)

    def _labelled(self, metric: _Metric, *values: str) -> _Metric:
        """`metric.labels(*values)`, kept: `labels` checks and locks on every call (~1 µs, and a rerank call
        counts in about ten series). The label values are bounded (see the module's docstring)."""
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child  # type: ignore[return-value]  # stored from `metric.labels`: of its type

    def render(self) -> bytes:
        return generate_latest(self.registry)
