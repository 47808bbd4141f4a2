"""Metering: every rerank the service makes goes through `Accountant.rerank`, i.e. the cost `Meter`.

The meter checks the budget, reranks, prices the call and commits one ledger record per
(request_id, stage) before the scores come back. Routes never call a reranker directly: `/v1/rerank`
calls the accountant, and `/v1/search` hands the pipeline a `MeteredReranker`, which finds the request it
bills in a context variable set by `metering(...)`, so the pipeline needs no knowledge of requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from leanrank.cost.ledger import CostLedger, GroupBy, Total
from leanrank.cost.meter import Meter
from leanrank.cost.period import Period
from leanrank.rerank.base import Reranker, RerankResponse


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who a rerank call is for; the ledger's idempotency key is (request_id, stage)."""

    request_id: str
    tenant: str
    course: str | None
    stage: str


@dataclass(frozen=True, slots=True)
class Charge:
    """One metered call: the scores, the backend that served them, the cost (None: unknown price) and
    the budget level before the call (`ok`, `soft`, `hard`)."""

    response: RerankResponse
    backend: str
    cost_usd: float | None
    budget: str


class Accountant:
    """The service's whole dependency on cost accounting: the meter for calls, the ledger for totals."""

    def __init__(self, meter: Meter, ledger: CostLedger, fallback: Reranker) -> None:
        self._meter = meter
        self._ledger = ledger
        self._fallback = fallback

    async def rerank(
        self, reranker: Reranker, query: str, documents: Sequence[str], call: CallContext
    ) -> Charge:
        """Rerank and bill once; over a hard budget a paid `reranker` yields to the free fallback."""
        metered = await self._meter.rerank(
            reranker,
            query,
            documents,
            request_id=call.request_id,
            course=call.course,
            tenant=call.tenant,
            stage=call.stage,
            fallback=self._fallback,
        )
        return Charge(metered.response, metered.served_by, metered.cost_usd, metered.budget_state.level)

    async def totals(self, by: GroupBy, period: Period) -> list[Total]:
        return await asyncio.to_thread(self._ledger.totals, by, period)


@dataclass(slots=True)
class _Call:
    context: CallContext
    charges: list[Charge]


_CURRENT: ContextVar[_Call | None] = ContextVar("leanrank_serve_call", default=None)


@contextmanager
def metering(context: CallContext) -> Iterator[list[Charge]]:
    """Bill the metered reranks made inside the block to `context`; yields the charges as they happen."""
    call = _Call(context, [])
    token = _CURRENT.set(call)
    try:
        yield call.charges
    finally:
        _CURRENT.reset(token)


class MeteredReranker:
    """A `Reranker` whose every call is billed by `accountant` to the request in progress."""

    def __init__(self, inner: Reranker, accountant: Accountant) -> None:
        self.inner = inner
        self._accountant = accountant

    @property
    def name(self) -> str:
        return self.inner.name

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        call = _CURRENT.get()
        if call is None:
            raise RuntimeError("a metered rerank ran outside metering(); it would go unbilled")
        charge = await self._accountant.rerank(self.inner, query, documents, call.context)
        call.charges.append(charge)
        return charge.response
