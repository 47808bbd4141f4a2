"""The spend dashboard: a page (`GET /dashboard`) and its data (`GET /v1/usage/series`, admin key).

The page and its scripts hold no data, so they are served without a key (a browser cannot send a bearer
header when it navigates); the page asks for an admin key, keeps it in the tab's `sessionStorage` and
sends it as `Authorization: Bearer` to `/v1/usage/series`, which refuses any other key. Charts are drawn
by uPlot (MIT), shipped inside the package: no CDN, so the page works offline.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from leanrank.cost.ledger import Bucket, CostLedger, SeriesRow
from leanrank.cost.period import Period
from leanrank.errors import InputError
from leanrank.serve.routes.usage import PeriodQuery
from leanrank.serve.service import PrincipalDep, ServiceDep
from leanrank.serve.wire import BudgetOut, SeriesRowOut, UsageSeries, errors
from leanrank.settings import BudgetSettings

DASHBOARD = "/dashboard"
ASSETS = "/dashboard/assets"
"""The page and its scripts: public (they hold no data; the data endpoint needs an admin key)."""
MAX_HOURLY = timedelta(days=31)
"""Hourly buckets over at most a month: a longer period asks for daily ones."""

# Everything the page loads comes from this server; no inline script, no frames.
_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; frame-ancestors 'none'"

router = APIRouter(tags=["usage"])


@cache
def _page() -> bytes:
    return files("leanrank.serve").joinpath("dashboard", "index.html").read_bytes()


def assets() -> StaticFiles:
    """The page's scripts and styles (uPlot's among them), mounted at `ASSETS` (ETags, no path escapes)."""
    return StaticFiles(packages=[("leanrank.serve", "dashboard")])


@router.get(DASHBOARD, include_in_schema=False)
async def page() -> Response:
    headers = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff"}
    return Response(_page(), media_type="text/html", headers=headers)


@router.get(
    "/v1/usage/series",
    summary="Usage over time (spend dashboard)",
    description=(
        "Ledger sums per UTC hour or day, course, tenant (key id) and backend over a period, and the "
        "configured budget caps with the spend of their current period. Spans courses: admin key only."
    ),
    responses=errors(401, 403, 422),
)
async def series(
    service: ServiceDep,
    principal: PrincipalDep,
    period: PeriodQuery = None,
    bucket: Annotated[
        Bucket, Query(description="Time bucket: `hour` (periods up to 31 days) or `day`.")
    ] = "day",
) -> UsageSeries:
    principal.check_admin("the spend dashboard (it spans courses)")
    now = datetime.now(UTC)
    when = Period.parse(period) if period else Period.month_of(now)
    if bucket == "hour" and when.end - when.start > MAX_HOURLY:
        raise InputError(f"period {when.label!r}: hourly buckets cover at most 31 days; use bucket=day")
    ledger = service.accountant.ledger
    rows = await asyncio.to_thread(ledger.series, bucket, when)
    budgets = await asyncio.to_thread(_budgets, service.settings.cost.budgets, ledger, rows, now)
    return UsageSeries(
        period=when.label,
        start=when.start,
        end=when.end,
        bucket=bucket,
        rows=[SeriesRowOut.model_validate(r, from_attributes=True) for r in rows],
        budgets=budgets,
    )


def _budgets(
    rules: list[BudgetSettings], ledger: CostLedger, rows: list[SeriesRow], now: datetime
) -> list[BudgetOut]:
    """Each rule with the spend of its current period; a `*` rule once per course or tenant in `rows`."""
    out: list[BudgetOut] = []
    for rule in rules:
        current = Period.day_of(now) if rule.period == "day" else Period.month_of(now)
        seen = {getattr(r, rule.scope) for r in rows} - {None}
        names = sorted(str(n) for n in seen) if rule.name == "*" else [rule.name]
        for name in names:
            out.append(
                BudgetOut(
                    scope=rule.scope,
                    name=name,
                    period=rule.period,
                    soft_usd=rule.soft_usd,
                    hard_usd=rule.hard_usd,
                    spent_usd=ledger.spent(rule.scope, name, current),
                )
            )
    return out
