"""Operations: liveness, readiness (load balancers, no key) and Prometheus metrics (admin key)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from leanrank.serve.errors import NotReadyError
from leanrank.serve.service import PrincipalDep, ServiceDep
from leanrank.serve.wire import Status, errors

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
    "/metrics",
    summary="Prometheus metrics",
    description="Requests, latency, tokens, cost and cache hits by backend and course. Admin keys only.",
    response_class=Response,
    responses={**errors(401, 403), 200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics(service: ServiceDep, principal: PrincipalDep) -> Response:
    principal.check_admin("metrics")
    return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)
