"""The state one app holds (settings, keys, gate, accountant, rerank policy, pipeline, jobs) and the
FastAPI dependencies that hand its parts to routes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from leanrank.cascade.request import ClientCascades
from leanrank.cost.ledger import Ledger
from leanrank.pipeline import Pipeline, check_course_id
from leanrank.rerank.base import Reranker
from leanrank.serve.accounting import Accountant, CallContext
from leanrank.serve.auth import KeyRing, Principal
from leanrank.serve.diagnostics import AgreementTally
from leanrank.serve.errors import NotReadyError
from leanrank.serve.ingest import IngestJobs
from leanrank.serve.limits import Gate
from leanrank.serve.metrics import Metrics
from leanrank.serve.ratelimit import RateLimits
from leanrank.settings import Settings

API_KEY_SCHEME = "ApiKey"
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name=API_KEY_SCHEME,
    description="A leanrank API key: admin, or scoped to a list of courses.",
)


@dataclass
class Service:
    """Everything routes share. `search_pipeline` bills through the accountant's meter; None until started."""

    settings: Settings
    keys: KeyRing
    metrics: Metrics
    gate: Gate
    accountant: Accountant
    policy: Reranker
    jobs: IngestJobs
    rate_limits: RateLimits
    cascades: ClientCascades
    search_pipeline: Pipeline | None = None
    owns_pipeline: bool = False
    owned_ledger: Ledger | None = None
    ready: bool = False
    agreement: AgreementTally = field(default_factory=AgreementTally)

    @property
    def pipeline(self) -> Pipeline:
        if self.search_pipeline is None or not self.ready:
            raise NotReadyError("the service is starting or stopping")
        return self.search_pipeline

    async def start(self) -> None:
        """Open the index and load the encoder before taking traffic (both block: off the event loop)."""
        if self.search_pipeline is None:
            self.search_pipeline = await asyncio.to_thread(
                Pipeline, self.settings, reranker=self.policy, meter=self.accountant.meter
            )
            self.owns_pipeline = True
        pipe = self.search_pipeline
        await asyncio.to_thread(lambda: pipe.dense.dim)
        self.ready = True
        self.jobs.resume(pipe)

    async def stop(self) -> None:
        """Jobs stop after their current file; if one is still running at the deadline the index is left to
        the process's exit (closing it under a writer would lose that file) and the job resumes next time."""
        self.ready = False
        drained = await self.jobs.drain(self.settings.serve.shutdown_timeout_s)
        if drained and self.owns_pipeline and self.search_pipeline is not None:
            self.search_pipeline.close()
        if self.owned_ledger is not None:
            self.owned_ledger.close()


def metered_view(pipeline: Pipeline, accountant: Accountant) -> Pipeline:
    """A pipeline over the same encoders, index and reranker that bills through the accountant's meter
    (one record per search, to the request's tenant); the original is untouched."""
    return Pipeline(
        pipeline.settings,
        dense=pipeline.dense,
        sparse=pipeline.sparse,
        store=pipeline.store,
        reranker=pipeline.rerank.reranker,
        meter=accountant.meter,
    )


async def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def get_principal(
    request: Request, _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
) -> Principal:
    """The caller, authenticated by the edge middleware (which already refused requests without a key).

    Dependencies here are `async` although they do not await: FastAPI runs plain functions in a thread
    pool, a hop that costs more than the rest of a rerank request's handling.
    """
    principal: Principal = request.state.principal
    return principal


async def get_request_id(request: Request) -> str:
    request_id: str = request.state.request_id
    return request_id


ServiceDep = Annotated[Service, Depends(get_service)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
RequestIdDep = Annotated[str, Depends(get_request_id)]


@dataclass(frozen=True, slots=True)
class Caller:
    """What `ServiceDep`, `PrincipalDep` and `RequestIdDep` hand a route, read off the request instead.

    FastAPI solves every dependency on every request, ~0.012 ms of CPU each (the bearer scheme under
    `PrincipalDep` is a fourth): ~0.05 ms of a rerank call, a sixth of what the middleware, FastAPI and the
    wire models take of it. The rerank routes, whose overhead is the product, take `request: Request`,
    call `Caller.of` and declare the key in their OpenAPI operation with `KEY_REQUIRED`, as `PrincipalDep`
    would.
    """

    service: Service
    principal: Principal
    request_id: str

    @classmethod
    def of(cls, request: Request) -> Caller:
        """Set by `EdgeMiddleware` (which refused the request without a valid key) and `create_app`."""
        state = request.state
        return cls(request.app.state.service, state.principal, state.request_id)


KEY_REQUIRED: dict[str, Any] = {"security": [{API_KEY_SCHEME: []}]}
"""`openapi_extra` of a route that uses `Caller` rather than `PrincipalDep`: the same security requirement."""


def ledger_id(principal: Principal, request_id: str) -> str:
    """Ledger ids are prefixed with the key id: one tenant's `X-Request-Id` never collides with another's."""
    return f"{principal.key_id}/{request_id}"


def call_context(principal: Principal, request_id: str, course: str | None, stage: str) -> CallContext:
    return CallContext(ledger_id(principal, request_id), principal.key_id, course, stage)


def scoped_course(principal: Principal, course: str) -> str:
    """A course id from a path or body: well-formed (422) and within the key's scopes (403)."""
    return principal.check_course(check_course_id(course))
