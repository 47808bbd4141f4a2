"""What reranking costs: token counts, billing rules, dated prices, a ledger, budgets, reports, projections.

`Meter` is the one door for live traffic (budget reservation → rerank → price → ledger record); the rest is
what reports and projections are built from. Charts live in `leanrank.cost.plots`, which alone imports
matplotlib and is therefore not imported here.
"""

from leanrank.cost.billing import PROVIDER_BILLING, BillingRule, pair_characters, pair_tokens, search_units
from leanrank.cost.budget import Budget, BudgetExceededError, BudgetLevel, BudgetState
from leanrank.cost.ledger import (
    CostLedger,
    GroupBy,
    Hold,
    Ledger,
    LedgerError,
    LedgerRecord,
    RequestConflictError,
    Reservation,
    Scope,
    Settlement,
    Total,
)
from leanrank.cost.meter import Meter, MeteredResponse
from leanrank.cost.period import Period
from leanrank.cost.pricing import GpuPrice, ModelPrice, Pricing
from leanrank.cost.projection import Crossover, Projection, Volume, measured_volume, project
from leanrank.cost.report import CostReport, cost_report
from leanrank.cost.tokens import CharEstimate, TokenCounter, counter_for, family_of

__all__ = [
    "PROVIDER_BILLING",
    "BillingRule",
    "Budget",
    "BudgetExceededError",
    "BudgetLevel",
    "BudgetState",
    "CharEstimate",
    "CostLedger",
    "CostReport",
    "Crossover",
    "GpuPrice",
    "GroupBy",
    "Hold",
    "Ledger",
    "LedgerError",
    "LedgerRecord",
    "Meter",
    "MeteredResponse",
    "ModelPrice",
    "Period",
    "Pricing",
    "Projection",
    "RequestConflictError",
    "Reservation",
    "Scope",
    "Settlement",
    "TokenCounter",
    "Total",
    "Volume",
    "cost_report",
    "counter_for",
    "family_of",
    "measured_volume",
    "pair_characters",
    "pair_tokens",
    "project",
    "search_units",
]
