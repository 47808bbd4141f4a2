"""The drop-in rerank gateway: Cohere v2 (`/v2/rerank`, `/v1/rerank`), Jina (`/v1/rerank`), TEI (`/rerank`).

A pipeline that calls one of these providers switches to leanrank by changing its base URL and key; the
configured policy (`rerank.backend`, possibly a fallback chain) answers, and the ledger bills each
request once. Which backend served, and what it cost, come back in `x-leanrank-*` headers. A request naming
a `model` is routed to the policy's backend for it (`serving_policy`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Header, Response

from leanrank.cost._names import parse_backend
from leanrank.errors import InputError
from leanrank.pipeline import check_course_id
from leanrank.rerank.base import Reranker
from leanrank.rerank.fallback import FallbackReranker
from leanrank.serve.accounting import Charge
from leanrank.serve.auth import Principal
from leanrank.serve.errors import UnknownModelError
from leanrank.serve.limits import check_rerank
from leanrank.serve.service import PrincipalDep, RequestIdDep, Service, ServiceDep, call_context
from leanrank.serve.wire import (
    BilledUnits,
    CohereMeta,
    CohereRerankRequest,
    CohereRerankResponse,
    JinaRerankResponse,
    JinaResult,
    JinaUsage,
    RerankRequest,
    RerankResult,
    TeiRank,
    TeiRerankRequest,
    TextDocument,
    errors,
)

router = APIRouter(tags=["rerank"], responses=errors(400, 401, 403, 404, 413, 422, 424, 429, 503))

CourseHeader = Annotated[
    str | None,
    Header(
        alias="X-Leanrank-Course",
        description="Course the call is billed to. Keys scoped to one course may omit it.",
    ),
]


def billing_course(principal: Principal, header: str | None) -> str | None:
    """The course a rerank is billed to: the header's, or the only course of a scoped key."""
    if header is not None:
        return principal.check_course(check_course_id(header))
    if principal.admin:
        return None
    if len(principal.courses) == 1:
        return next(iter(principal.courses))
    raise InputError("this key has several courses: name the one to bill in the X-Leanrank-Course header")


def _is_model(backend: str, model: str) -> bool:
    """`model` as a client writes it (`rerank-v3.5`, `cohere:rerank-v3.5`, the full name) names `backend`."""
    name = parse_backend(backend)
    return model in {backend, name.key, name.model} - {""}


def serving_policy(service: Service, model: str | None, response: Response) -> Reranker:
    """What answers a request naming `model`: the policy when its first backend is that model (or no model
    is named); the policy's fallback chain from the backend that is, when a later one is (without the score
    cache); otherwise, per `serve.unknown_model`, the whole policy with `x-leanrank-model-ignored` set, or
    `UnknownModelError`.
    """
    policy = service.policy
    members = policy.name.split(" | ")
    if model is None or _is_model(members[0], model):
        return policy
    chain = policy
    while not isinstance(chain, FallbackReranker) and isinstance(getattr(chain, "inner", None), Reranker):
        chain = chain.inner  # type: ignore[attr-defined]  # a cache or micro-batcher around the chain
    if isinstance(chain, FallbackReranker):
        for i, backend in enumerate(chain.chain):
            if _is_model(backend.name, model):
                rest = chain.chain[i:]
                return rest[0] if len(rest) == 1 else FallbackReranker(rest)
    if service.settings.serve.unknown_model == "refuse":
        raise UnknownModelError(
            f"model {model!r} is not served here; this service serves {', '.join(members)} "
            "(serve.unknown_model=refuse)"
        )
    response.headers["x-leanrank-model-ignored"] = model
    return policy


async def rerank_once(
    service: Service,
    principal: Principal,
    request_id: str,
    course_header: str | None,
    query: str,
    documents: Sequence[str],
    response: Response,
    model: str | None = None,
) -> Charge:
    """Check, meter and run one rerank with the backend for `model`; set the accounting headers."""
    course = billing_course(principal, course_header)
    check_rerank(service.settings, query, documents)
    backend = serving_policy(service, model, response)
    async with service.gate.slot():
        charge = await service.accountant.rerank(
            backend, query, documents, call_context(principal, request_id, course, "rerank")
        )
    service.metrics.observe_charge(charge, course)
    response.headers["x-leanrank-backend"] = charge.backend
    response.headers["x-leanrank-budget"] = charge.budget
    if charge.cost_usd is not None:
        response.headers["x-leanrank-cost-usd"] = f"{charge.cost_usd:.8f}"
    return charge


def ranked(scores: Sequence[float], top_n: int | None) -> list[int]:
    """Document indices best first (ties keep input order), cut to `top_n`."""
    return sorted(range(len(scores)), key=lambda i: -scores[i])[:top_n]


def _cohere(charge: Charge, request_id: str, top_n: int | None) -> CohereRerankResponse:
    scores = charge.response.scores
    usage = charge.response.usage
    billed = BilledUnits(
        search_units=usage.billed_units if usage.billed_unit == "search_units" else 0,
        input_tokens=int(usage.billed_units) if usage.billed_unit == "tokens" else None,
    )
    return CohereRerankResponse(
        id=request_id,
        results=[RerankResult(index=i, relevance_score=scores[i]) for i in ranked(scores, top_n)],
        meta=CohereMeta(billed_units=billed),
    )


_COHERE_ONLY = "Cohere v2 request and response; the path the official Cohere SDK (`ClientV2`) calls."


@router.post(
    "/v2/rerank",
    response_model=CohereRerankResponse,
    response_model_exclude_none=True,
    summary="Rerank (Cohere v2)",
    description=_COHERE_ONLY,
)
async def cohere_rerank(
    body: CohereRerankRequest,
    service: ServiceDep,
    principal: PrincipalDep,
    request_id: RequestIdDep,
    response: Response,
    course: CourseHeader = None,
) -> CohereRerankResponse:
    charge = await rerank_once(
        service, principal, request_id, course, body.query, body.documents, response, body.model
    )
    return _cohere(charge, request_id, body.top_n)


@router.post(
    "/v1/rerank",
    response_model=CohereRerankResponse | JinaRerankResponse,
    response_model_exclude_none=True,
    summary="Rerank (Cohere v2 or Jina)",
    description=(
        "Cohere v2 body → Cohere response (`results[].index`, `relevance_score`, `meta.billed_units`). "
        'A body with `return_documents`, or with any document given as `{"text": ...}`, is Jina\'s → '
        "Jina response (`model`, `usage.total_tokens`, `results[].document` when asked for)."
    ),
)
async def rerank(
    body: RerankRequest,
    service: ServiceDep,
    principal: PrincipalDep,
    request_id: RequestIdDep,
    response: Response,
    course: CourseHeader = None,
) -> CohereRerankResponse | JinaRerankResponse:
    texts = body.texts()
    charge = await rerank_once(
        service, principal, request_id, course, body.query, texts, response, body.model
    )
    if not body.jina:
        return _cohere(charge, request_id, body.top_n)
    scores = charge.response.scores
    results = [
        JinaResult(
            index=i,
            relevance_score=scores[i],
            document=TextDocument(text=texts[i]) if body.return_documents else None,
        )
        for i in ranked(scores, body.top_n)
    ]
    total = charge.response.usage.total_tokens
    return JinaRerankResponse(
        model=body.model or charge.backend, usage=JinaUsage(total_tokens=total), results=results
    )


def _probabilities(scores: Sequence[float]) -> list[float]:
    """TEI's default scale: logits through a sigmoid; scores already in [0, 1] are kept as they are."""
    if all(0.0 <= s <= 1.0 for s in scores):
        return list(scores)
    return [1.0 / (1.0 + math.exp(-max(min(s, 500.0), -500.0))) for s in scores]


@router.post(
    "/rerank",
    response_model=list[TeiRank],
    response_model_exclude_none=True,
    summary="Rerank (text-embeddings-inference)",
    description="TEI request and response: `texts` in, a bare array best first out; usage in `x-compute-*`.",
)
async def tei_rerank(
    body: TeiRerankRequest,
    service: ServiceDep,
    principal: PrincipalDep,
    request_id: RequestIdDep,
    response: Response,
    course: CourseHeader = None,
) -> list[TeiRank]:
    charge = await rerank_once(service, principal, request_id, course, body.query, body.texts, response)
    usage = charge.response.usage
    response.headers["x-compute-tokens"] = str(usage.total_tokens)
    response.headers["x-compute-characters"] = str(len(body.query) + sum(len(t) for t in body.texts))
    response.headers["x-inference-time"] = str(round(usage.latency_s * 1000))
    raw = charge.response.scores
    scores = list(raw) if body.raw_scores else _probabilities(raw)
    return [
        TeiRank(index=i, score=scores[i], text=body.texts[i] if body.return_text else None)
        for i in ranked(scores, None)
    ]
