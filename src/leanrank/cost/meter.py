"""The meter: every rerank call checked against the budget, priced, and written to the ledger.

Order matters: the budget is read before the call (a paid backend over its hard cap is not called at all),
and the record is committed before the scores are handed back, so nothing served goes unrecorded. A ledger
that cannot be written fails the call with `StoreError` rather than serving calls nobody accounts for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from leanrank.cost._names import parse_backend
from leanrank.cost.billing import pair_tokens
from leanrank.cost.budget import UNLIMITED, Budget, BudgetExceededError, BudgetState
from leanrank.cost.ledger import CostLedger, Ledger, LedgerRecord
from leanrank.cost.pricing import Pricing
from leanrank.cost.tokens import counter_for
from leanrank.rerank.base import Reranker, RerankResponse, Usage
from leanrank.settings import Settings


@dataclass(frozen=True, slots=True)
class MeteredResponse:
    """The scores, which backend served them, the budget state before the call and what it cost.

    `cost_usd` None means the backend has no known price; `recorded` is False when the ledger already held
    this `(request_id, stage)` (a retried request: served again, billed once).
    """

    response: RerankResponse
    served_by: str
    budget_state: BudgetState
    cost_usd: float | None
    recorded: bool


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Meter:
    """Wraps rerank calls with budget, price and ledger; one instance serves a whole process."""

    def __init__(
        self,
        ledger: CostLedger,
        pricing: Pricing,
        budget: Budget | None = None,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._ledger = ledger
        self._pricing = pricing
        self._budget = budget
        self._clock = clock
        self._owned: Ledger | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Meter:
        """Ledger, prices and budgets as configured; the fallback reranker is the caller's to build."""
        ledger = Ledger.from_settings(settings)
        budget = Budget(settings.cost.budgets, ledger) if settings.cost.budgets else None
        meter = cls(ledger, Pricing.from_settings(settings), budget)
        meter._owned = ledger
        return meter

    def close(self) -> None:
        """Close the ledger this meter opened itself; one passed in belongs to the caller."""
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    async def rerank(
        self,
        reranker: Reranker,
        query: str,
        documents: Sequence[str],
        *,
        request_id: str,
        course: str | None,
        tenant: str | None = None,
        stage: str = "rerank",
        fallback: Reranker | None = None,
    ) -> MeteredResponse:
        """Rerank with `reranker`, or with `fallback` when a hard cap stops a paid one.

        Raises `BudgetExceededError` when the cap is hard, `reranker` is paid and no free fallback is given.
        """
        now = self._clock()
        state = UNLIMITED
        if self._budget is not None:
            state = await asyncio.to_thread(self._budget.check, course, tenant, now)
        chosen: Reranker = reranker
        skipped: tuple[str, ...] = ()
        if state.level == "hard" and self._pricing.is_paid(reranker.name):
            if fallback is None or self._pricing.is_paid(fallback.name):
                raise BudgetExceededError(state)
            chosen = fallback
            skipped = (f"{reranker.name}: budget {state.label} reached, ${state.spent_usd:.4f} spent",)
        response = await chosen.rerank(query, documents)
        served_by = response.served_by or chosen.name
        usage, cost, recorded = await asyncio.to_thread(
            self._settle, response.usage, served_by, query, documents, request_id, course, tenant, stage, now
        )
        settled = replace(response, usage=usage, served_by=served_by, failed=(*skipped, *response.failed))
        return MeteredResponse(settled, served_by, state, cost, recorded)

    def _settle(
        self,
        usage: Usage,
        backend: str,
        query: str,
        documents: Sequence[str],
        request_id: str,
        course: str | None,
        tenant: str | None,
        stage: str,
        now: datetime,
    ) -> tuple[Usage, float | None, bool]:
        """Recount, price and record one call (off the event loop: tokenizers and the database block)."""
        usage = recount(usage, backend, query, documents)
        cost = self._pricing.cost_of(usage, backend)
        if usage.cost_usd is None and cost is not None:
            usage = replace(usage, cost_usd=cost)
        name = parse_backend(backend)
        record = LedgerRecord(
            time=now,
            request_id=request_id,
            course=course,
            tenant=tenant,
            stage=stage,
            backend=name.key,
            model=name.model,
            documents=len(documents),
            query_tokens=usage.query_tokens,
            document_tokens=usage.document_tokens,
            billed_units=usage.billed_units,
            billed_unit=usage.billed_unit,
            cost_usd=cost,
            latency_ms=usage.latency_s * 1000,
            cache_hits=usage.cache_hits,
            count_source=usage.count_source,
        )
        return usage, cost, self._ledger.record(record)


def recount(usage: Usage, backend: str, query: str, documents: Sequence[str]) -> Usage:
    """A character estimate of a token-billed call, replaced by the model's own tokenizer where bundled.

    A free call (identity, a free local model) that counted nothing gets the tokens a token-billed API would
    have been sent, still billed as nothing: `costs project --from-ledger` prices that traffic elsewhere.
    Only when the usage covers exactly these texts (no cache hits, no windows); a wrapper that truncated
    documents makes this an upper bound of what was sent.
    """
    if usage.billed_unit == "none" and not (
        usage.total_tokens or usage.cache_hits or usage.documents != len(documents)
    ):
        counter = counter_for(backend)
        return replace(
            usage,
            query_tokens=counter.count(query),
            document_tokens=sum(counter.count(doc) for doc in documents),
            count_source=counter.source,
        )
    if (
        usage.count_source != "estimate"
        or usage.billed_unit != "tokens"
        or usage.cache_hits
        or usage.documents != len(documents)
    ):
        return usage
    counter = counter_for(backend)
    if counter.source != "tokenizer":
        return usage
    query_tokens = counter.count(query)
    document_tokens = [counter.count(doc) for doc in documents]
    return replace(
        usage,
        query_tokens=query_tokens,
        document_tokens=sum(document_tokens),
        billed_units=float(pair_tokens(query_tokens, document_tokens)),
        count_source="tokenizer",
    )
