"""`POST /v1/rerank/batch`: many queries, each with its documents, in one request.

For offline jobs: one HTTP request instead of N. The policy scores them together where it can (a local
model sorts and packs the pairs of every query in one pass) and concurrently otherwise
(`leanrank.rerank.batch`). Billing is per query, as if each had been its own `/v1/rerank` call: one budget
hold and one ledger record each, under the request id `<X-Request-Id>#<i>`. A query whose backend fails (or
whose budget is spent with no free fallback) gets an `error` entry and no record; the others are answered.
Each query's documents go through the key's (or course's) cascade first, as `/v1/rerank`'s do
(`rerank_cascaded`; `X-Leanrank-Cascade: off` forwards every entry's as sent), and its answer says what the
cascade did with them.
The whole answer is kept for replay under the request id like every billed route's (`serve.idempotency`),
so resending it bills nothing twice; to retry failed entries, send them under a new id.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field, StrictInt

from leanrank.cascade.request import ClientPlan
from leanrank.errors import InputError
from leanrank.rerank.base import as_probabilities, rank_order, usage_json
from leanrank.rerank.batch import Rendezvous
from leanrank.serve.accounting import Charge
from leanrank.serve.errors import LimitExceededError, error_response
from leanrank.serve.limits import check_rerank
from leanrank.serve.routes.rerank import (
    CascadeHeader,
    CourseHeader,
    billing_course,
    cascade_counts,
    rerank_cascaded,
    serving_policy,
)
from leanrank.serve.service import PrincipalDep, RequestIdDep, ServiceDep, call_context
from leanrank.serve.wire import CascadeCounts, UsageOut, _Request, errors

router = APIRouter(tags=["rerank"], responses=errors(400, 401, 403, 404, 409, 413, 422, 429, 503))


class BatchQuery(_Request):
    """One query and the documents to rank for it."""

    query: str = Field(description="The query.")
    documents: list[str] = Field(description="Texts to score for this query.")
    top_n: StrictInt | None = Field(None, ge=1, description="Best results to return; all by default.")


class BatchRequest(_Request):
    """Queries to rerank in one request; `model` routes like `/v1/rerank`'s."""

    model: str | None = Field(None, description="Backend of the policy to use; its first by default.")
    requests: list[BatchQuery] = Field(min_length=1, description="The queries, answered in this order.")


class BatchHit(BaseModel):
    index: int = Field(description="Position of the document in its query's `documents`.")
    relevance_score: float = Field(description="In [0, 1], converted from the backend's declared scale.")


class BatchError(BaseModel):
    error: str
    error_type: str


class BatchAnswer(BaseModel):
    """One query's answer: its results best first and its own bill, or the error that stopped it."""

    index: int = Field(description="Position of the query in `requests`.")
    request_id: str = Field(description="The id its ledger record has (`<X-Request-Id>#<index>`).")
    results: list[BatchHit] = []
    backend: str | None = None
    cost_usd: float | None = None
    full_cost_usd: float | None = Field(None, description="What sending every document would have cost.")
    usage: UsageOut | None = None
    cascade: CascadeCounts | None = Field(None, description="What the cascade did with its documents.")
    error: BatchError | None = None


class BatchResponse(BaseModel):
    id: str
    results: list[BatchAnswer]
    cost_usd: float = Field(description="Sum of the priced answers' costs.")
    failed: int = Field(description="Queries answered with an error.")


@router.post(
    "/v1/rerank/batch",
    response_model=BatchResponse,
    summary="Rerank many queries in one request",
    description=(
        "Each entry of `requests` is ranked as `/v1/rerank` would rank it (the key's cascade first, unless "
        "`X-Leanrank-Cascade: off`), billed as its own call (ledger id `<X-Request-Id>#<index>`), and "
        "answered in order with the cascade's counts; a failed entry carries `error`. At most "
        "`serve.max_batch_queries` entries, each within the per-request limits."
    ),
)
async def rerank_batch(
    body: BatchRequest,
    service: ServiceDep,
    principal: PrincipalDep,
    request_id: RequestIdDep,
    response: Response,
    course: CourseHeader = None,
    cascade: CascadeHeader = None,
) -> BatchResponse:
    limit = service.settings.serve.max_batch_queries
    if len(body.requests) > limit:
        raise LimitExceededError("max_batch_queries", len(body.requests), limit, "queries")
    billed = billing_course(principal, course)
    tokens = 0
    for i, entry in enumerate(body.requests):  # every entry is checked before anything is called or billed
        try:
            tokens += check_rerank(service.settings, entry.query, entry.documents)
        except InputError as exc:
            exc.args = (f"requests.{i}: {exc}",)  # which one, as the wire schema's errors say
            raise
    await service.rate_limits.tokens(principal.key_id, tokens)  # the key's tokens per minute count them all
    backend = serving_policy(service, body.model, response)
    n = len(body.requests)
    calls = [call_context(principal, f"{request_id}#{i}", billed, "rerank") for i in range(n)]
    meeting = Rendezvous(backend, len(body.requests), scope=principal.key_id)

    async def one(i: int) -> tuple[Charge, ClientPlan]:
        seat = meeting.seat()
        entry = body.requests[i]
        try:
            return await rerank_cascaded(service, seat, entry.query, entry.documents, calls[i], cascade)
        finally:
            seat.done()

    async with service.gate.slot():
        outcomes = await asyncio.gather(*(one(i) for i in range(len(body.requests))), return_exceptions=True)
    answers = []
    for i, outcome in enumerate(outcomes):
        rid = f"{request_id}#{i}"
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, Exception):
                raise outcome  # cancellation and exits are not a query's failure
            failure = error_response(outcome, rid)  # the one redaction rule: backends' words stay in the log
            body_json = json.loads(bytes(failure.body))
            error = BatchError(error=body_json["error"], error_type=body_json["error_type"])
            answers.append(BatchAnswer(index=i, request_id=rid, error=error))
            continue
        charge, plan = outcome
        scores = as_probabilities(charge.response.scores, charge.response.scale)
        answers.append(
            BatchAnswer(
                index=i,
                request_id=rid,
                results=[
                    BatchHit(index=j, relevance_score=scores[j])
                    for j in rank_order(charge.response.scores, body.requests[i].top_n)
                ],
                backend=charge.backend,
                cost_usd=charge.cost_usd,
                full_cost_usd=charge.full_cost_usd,
                usage=UsageOut.model_validate(usage_json(charge.response.usage)),
                cascade=cascade_counts(plan, charge),
            )
        )
    return BatchResponse(
        id=request_id,
        results=answers,
        cost_usd=sum(a.cost_usd or 0.0 for a in answers),
        failed=sum(1 for a in answers if a.error is not None),
    )
