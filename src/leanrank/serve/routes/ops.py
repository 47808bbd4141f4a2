"""Operations: liveness, readiness and TEI's `/health` and `/info` (no key), Prometheus metrics
(`serve.metrics_access`: an admin or `metrics` key, or open)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from leanrank import __version__
from leanrank.serve.auth import Principal
from leanrank.serve.errors import NotReadyError
from leanrank.serve.service import ServiceDep
from leanrank.serve.wire import Status, TeiInfo, errors

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness", description="200 while the process answers.")
async def healthz() -> Status:
    return Status(status="ok")


@router.get(
    "/readyz",
    summary="Readiness",
    description=(
        "200 once the index is open and the encoder loaded, the cost ledger answers and the rerank backend's "
        "last call did not fail; else 503 naming the component (also while starting or stopping)."
    ),
    responses=errors(503),
)
async def readyz(service: ServiceDep) -> Status:
    await asyncio.to_thread(service.pipeline.store.count, "")
    await asyncio.to_thread(service.accountant.ledger.ping)
    failing = service.accountant.meter.failing()
    if failing is not None:
        raise NotReadyError(f"the rerank backend {failing} failed the last call")
    return Status(status="ready")


@router.get(
    "/health",
    summary="Health (TEI)",
    description="TEI's probe: 200 once the service is ready, 503 while starting or stopping.",
    responses=errors(503),
)
async def health(service: ServiceDep) -> Status:
    return await readyz(service)


@router.get(
    "/info",
    summary="Model and limits (TEI)",
    description="TEI's `/info`: the policy that answers and the limits of one request "
    "(`max_input_length`: tokens, `serve.max_tokens`; `max_client_batch_size`: `serve.max_documents`).",
)
async def info(service: ServiceDep) -> TeiInfo:
    limits = service.settings.serve
    return TeiInfo(
        model_id=service.policy.name,
        model_type={"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}},
        max_input_length=limits.max_tokens,
        max_client_batch_size=limits.max_documents,
        max_concurrent_requests=limits.max_concurrent,
        version=__version__,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Requests, latency, tokens, cost and cache hits by backend and course. An admin key or a "
    "`metrics` key, unless `serve.metrics_access` is `open`.",
    response_class=Response,
    responses={**errors(401, 403), 200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics(service: ServiceDep, request: Request) -> Response:
    if service.settings.serve.metrics_access == "key":
        principal: Principal = request.state.principal
        principal.check_metrics()
    return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)
