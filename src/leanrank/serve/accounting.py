"""Metering: every rerank the service makes goes through the one cost `Meter` the accountant holds.

The meter reserves against the budget, reranks, prices the call and commits one ledger record per
(request_id, stage) before the scores come back. Routes never call a reranker directly: the gateway
calls `Accountant.rerank`, and `/v1/search` runs a pipeline built on the same meter, handing it the
request id and tenant, so a search is one record, billed to its tenant.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
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
    """One metered call: the scores, the backend that served them, the cost (None: unknown price), the
    budget level before the call (`ok`, `soft`, `hard`) and what sending every received document would
    have cost (None: unknown)."""

    response: RerankResponse
    backend: str
    cost_usd: float | None
    budget: str
    full_cost_usd: float | None = None


class Accountant:
    """The service's whole dependency on cost accounting: the meter for calls, the ledger for totals."""

    def __init__(self, meter: Meter, ledger: CostLedger, fallback: Reranker) -> None:
        self.meter = meter
        self.ledger = ledger
        self._fallback = fallback

    async def rerank(
        self,
        reranker: Reranker,
        query: str,
        documents: Sequence[str],
        call: CallContext,
        *,
        received: Sequence[str] | None = None,
    ) -> Charge:
        """Rerank and bill once; over a hard budget a paid `reranker` yields to the free fallback.

        `received`: what the client sent, when `documents` is what the gateway's cascade forwarded."""
        metered = await self.meter.rerank(
            reranker,
            query,
            documents,
            request_id=call.request_id,
            course=call.course,
            tenant=call.tenant,
            stage=call.stage,
            fallback=self._fallback,
            received=received,
        )
        return Charge(
            metered.response,
            metered.served_by,
            metered.cost_usd,
            metered.budget_state.level,
            metered.full_cost_usd,
        )

    async def totals(self, by: GroupBy, period: Period) -> list[Total]:
        return await asyncio.to_thread(self.ledger.totals, by, period)
