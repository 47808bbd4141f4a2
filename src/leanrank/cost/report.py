"""`leanrank costs report`: the ledger's totals for one period, grouped one way, with a grand total."""

from __future__ import annotations

from dataclasses import dataclass

from leanrank.cost.ledger import CostLedger, GroupBy, Total
from leanrank.cost.period import Period


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
