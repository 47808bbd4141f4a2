"""`GET /v1/usage`: ledger totals, never beyond the courses the key may see."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from leanrank.cost.ledger import GroupBy
from leanrank.cost.period import Period
from leanrank.errors import InputError
from leanrank.serve.auth import Principal
from leanrank.serve.service import PrincipalDep, ServiceDep, scoped_course
from leanrank.serve.wire import AgreementOut, UsageReport, UsageRowOut, errors

PeriodQuery = Annotated[
    str | None,
    Query(
        max_length=32,
        description="`YYYY-MM`, `YYYY-MM-DD` or `YYYY-MM-DD..YYYY-MM-DD`; this month by default.",
    ),
]
"""The `period` query parameter of the ledger's read routes (parsed by `leanrank.cost.period.Period`)."""

router = APIRouter(tags=["usage"], responses=errors(401, 403, 422))


def _shown(principal: Principal, course: str | None, key: str | None) -> bool:
    """A by-course row is shown if it is the course asked for, else if the key may see that course.

    Calls billed to no course (admin's gateway calls without `X-Leanrank-Course`) are admin-only.
    """
    if course is not None:
        return key == course
    return principal.admin or (key is not None and principal.may_use(key))


@router.get(
    "/v1/usage",
    summary="Usage and cost",
    description=(
        "Totals of metered rerank calls over a UTC period, by course, backend, day or tenant. A "
        "course-scoped key sees its own courses' rows; other groupings span courses and need an admin key."
    ),
)
async def usage(
    service: ServiceDep,
    principal: PrincipalDep,
    period: PeriodQuery = None,
    by: Annotated[GroupBy, Query(description="How to group the totals.")] = "course",
    course: Annotated[str | None, Query(description="Only this course's row (with `by=course`).")] = None,
) -> UsageReport:
    when = Period.parse(period) if period else Period.month_of(datetime.now(UTC))
    if by != "course":
        if course is not None:
            raise InputError("`course` selects a row of by=course totals")
        principal.check_admin(f"usage by {by} (it spans courses)")
    elif course is not None:
        scoped_course(principal, course)
    rows = await service.accountant.totals(by, when)
    if by == "course":
        rows = [r for r in rows if _shown(principal, course, r.key)]
    out = [
        UsageRowOut(
            key=r.key,
            calls=r.calls,
            requests=r.requests,
            documents=r.documents,
            cache_hits=r.cache_hits,
            query_tokens=r.query_tokens,
            document_tokens=r.document_tokens,
            cost_usd=r.cost_usd,
            unpriced=r.unpriced,
            documents_received=r.documents_received,
            full_cost_usd=r.full_cost_usd,
            saved_usd=r.saved_usd,
            unconfirmed=r.unconfirmed,
            unconfirmed_usd=r.unconfirmed_usd,
        )
        for r in rows
    ]
    agreement = {
        c: AgreementOut(searches=a.searches, mean=a.mean)
        for c, a in service.agreement.by_course().items()
        if _shown(principal, course, c)
    }
    return UsageReport(
        agreement=agreement,
        period=when.label,
        start=when.start,
        end=when.end,
        by=by,
        rows=out,
        calls=sum(r.calls for r in rows),
        cost_usd=sum(r.cost_usd for r in rows),
        unpriced=sum(r.unpriced for r in rows),
        unconfirmed=sum(r.unconfirmed for r in rows),
    )
