"""`leanrank costs report`: the ledger's totals for one period, grouped one way, with a grand total."""

from __future__ import annotations

from dataclasses import dataclass

from leanrank.cost.ledger import CostLedger, GroupBy, Total
from leanrank.cost.period import Period

USD_DECIMALS = 10
"""Decimal places of US dollars in JSON outputs (`/v1/usage`, `costs report --json`): a sum of float costs
carries noise in its 17th digit (0.1 + 0.2 = 0.30000000000000004), and no price is finer than 1e-10 $."""


def round_usd(amount: float) -> float:
    """`amount` rounded to `USD_DECIMALS` places, for JSON outputs."""
    return round(amount, USD_DECIMALS)


@dataclass(frozen=True, slots=True)
class CostReport:
    """Rows ordered by key; `total` adds them up (`requests` summed over groups)."""

    by: GroupBy
    period: Period
    rows: tuple[Total, ...]

    @property
    def total(self) -> Total:
        r = self.rows
        return Total(
            key=None,
            calls=sum(t.calls for t in r),
            requests=sum(t.requests for t in r),
            documents=sum(t.documents for t in r),
            cache_hits=sum(t.cache_hits for t in r),
            query_tokens=sum(t.query_tokens for t in r),
            document_tokens=sum(t.document_tokens for t in r),
            cost_usd=sum(t.cost_usd for t in r),
            unpriced=sum(t.unpriced for t in r),
            documents_received=sum(t.documents_received for t in r),
            full_cost_usd=sum(t.full_cost_usd for t in r),
            unconfirmed=sum(t.unconfirmed for t in r),
            unconfirmed_usd=sum(t.unconfirmed_usd for t in r),
        )


def cost_report(ledger: CostLedger, by: GroupBy, period: Period) -> CostReport:
    return CostReport(by, period, tuple(ledger.totals(by, period)))
