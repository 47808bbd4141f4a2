"""`POST /v1/search`: a course-scoped question through `Pipeline.asearch`, with the request's cost."""

from __future__ import annotations

from fastapi import APIRouter

from leanrank.rerank.base import RerankResponse, usage_json
from leanrank.retrieve.steering import Steering
from leanrank.serve.accounting import Charge
from leanrank.serve.errors import public_failure
from leanrank.serve.service import PrincipalDep, RequestIdDep, ServiceDep, call_context, scoped_course
from leanrank.serve.wire import SearchHit, SearchRequest, SearchResponse, UsageOut, errors
from leanrank.types import Hit

router = APIRouter(tags=["search"], responses=errors(400, 401, 403, 404, 409, 413, 422, 424, 429, 503))


def _hit(hit: Hit) -> SearchHit:
    c = hit.chunk
    return SearchHit(
        chunk_id=hit.chunk_id,
        score=hit.score,
        text=c.text,
        source=c.source,
        lang=c.lang,
        heading=list(c.heading),
        heading_path=c.heading_path,
        start=c.start,
        end=c.end,
        tokens=c.tokens,
        meta=c.meta,
        stage_scores=hit.stage_scores,
    )


@router.post(
    "/v1/search",
    summary="Search one course",
    description=(
        "Hybrid retrieval (dense + BM25, fused in Qdrant) filtered to the course, then the rerank step. "
        "Hits carry text, source, character offsets and each stage's score; `usage` and `cost_usd` are "
        "what this request's rerank consumed."
    ),
)
async def search(
    body: SearchRequest, service: ServiceDep, principal: PrincipalDep, request_id: RequestIdDep
) -> SearchResponse:
    course = scoped_course(principal, body.course)
    pipeline = service.pipeline
    call = call_context(principal, request_id, course, "rerank")
    async with service.gate.slot():
        result = await pipeline.asearch(
            body.query,
            course,
            langs=body.langs,
            heading_prefix=body.heading_prefix,
            k=body.k,
            depth=body.depth,
            request_id=call.request_id,
            tenant=call.tenant,
            min_relevance=body.min_relevance,
            judge=body.judge,
            steering=None
            if body.context is None
            else Steering(**{side: tuple(ids) for side, ids in body.context.model_dump().items()}),
        )
    failed = [public_failure(f) for f in result.failed]
    billed = RerankResponse((), result.usage, result.served_by, result.failed)
    service.metrics.observe_charge(Charge(billed, result.served_by, result.cost_usd, result.budget), course)
    service.agreement.add(course, result.agreement)
    return SearchResponse(
        request_id=request_id,
        query=result.query,
        course=course,
        candidates=result.candidates,
        retrieved=result.retrieved,
        dropped=result.dropped,
        hits=[_hit(h) for h in result.hits],
        served_by=result.served_by,
        failed=failed,
        usage=UsageOut.model_validate(usage_json(result.usage)),
        cost_usd=result.cost_usd,
        judge_cost_usd=result.judge_cost_usd,
        timings_ms={stage: round(s * 1000, 3) for stage, s in result.timings_s.items()},
    )
