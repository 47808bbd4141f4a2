"""`create_app`: the FastAPI service, assembled from settings and, for tests, injected parts.

Layers point inward as in TEI: routes (HTTP, wire types) → service state (gate, batcher, accountant) →
the pipeline and the `Reranker` contract. Every error leaves through `errors.error_response`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.responses import JSONResponse, Response

from leanrank import __version__
from leanrank.cascade.request import ClientCascades
from leanrank.cost.budget import Budget
from leanrank.cost.ledger import CostLedger, Ledger
from leanrank.cost.meter import Meter
from leanrank.cost.pricing import Pricing
from leanrank.encode.e5 import xlmr_token_count
from leanrank.errors import LeanrankError, UnknownCourseError
from leanrank.pipeline import Pipeline
from leanrank.rerank.base import Reranker
from leanrank.rerank.cache import with_cache
from leanrank.rerank.catalog import reranker as reranker_by_name
from leanrank.rerank.guard import guard
from leanrank.serve.accounting import Accountant
from leanrank.serve.auth import KeyRing, Principal
from leanrank.serve.batching import BatchReranker, MicroBatcher
from leanrank.serve.errors import error_body, error_response
from leanrank.serve.idempotency import Idempotency
from leanrank.serve.ingest import IngestJobs
from leanrank.serve.limits import Gate
from leanrank.serve.metrics import Metrics
from leanrank.serve.middleware import DOCS_ASSETS, EdgeMiddleware
from leanrank.serve.ratelimit import RateLimits
from leanrank.serve.routes import batch, courses, dashboard, ops, rerank, search, usage
from leanrank.serve.service import Service, metered_view
from leanrank.settings import Settings

DESCRIPTION = """\
leanrank as a service.

* **Rerank gateway**: `POST /v2/rerank` and `POST /v1/rerank` speak Cohere v2 (and Jina on `/v1/rerank`),
  `POST /rerank` speaks text-embeddings-inference. Point an existing client at this base URL with a
  leanrank key; the configured policy answers and every request is billed once.
* **Course search**: `POST /v1/search`, and the courses/documents endpoints to fill the index.
* **Accounting**: `GET /v1/usage`, `GET /v1/usage/series`, `GET /metrics`; a spend dashboard at `/dashboard`.

Authenticate with `Authorization: Bearer <key>`. Errors are JSON
`{error, message, error_type, limit, request_id}` (`message` repeats `error` for the Cohere SDK).
Every rerank answer says in `x-leanrank-backend` which backend served it and in `x-leanrank-cost-usd` what
it cost. Before the backend, the gateway's cascade (`gateway.cascade`, per key and course) collapses
duplicates and holds back documents the request's own evidence ranks low; every document still gets a score,
and `x-leanrank-documents-*` say how many were received, forwarded, collapsed and cached
(`X-Leanrank-Cascade: off` forwards all for one call). Over a hard budget cap the free fallback
(`cost.fallback`) serves and `x-leanrank-budget` says `hard`.
"""


def create_app(
    settings: Settings,
    *,
    pipeline: Pipeline | None = None,
    reranker: Reranker | None = None,
    ledger: CostLedger | None = None,
) -> FastAPI:
    """The app; parts not given are built from `settings` (the pipeline when the app starts).

    `reranker` answers the rerank endpoints (default: `settings.rerank.backend`); `pipeline` answers search
    with its own reranker; `ledger` records both (default: `cost.ledger_url`, else SQLite under
    `data_dir`), priced and budgeted per `settings.cost`. Raises `ConfigError` for settings that cannot
    work (no API keys, an unknown backend) before serving anything.
    """
    keys = KeyRing.from_settings(settings.serve)
    limits = settings.serve
    metrics = Metrics()
    rate_limits = RateLimits.from_settings(limits, keys.key_ids, metrics)
    rs = settings.rerank
    policy = guard(
        reranker or with_cache(reranker_by_name(rs.backend), rs.cache, settings.data_dir, rs.cache_ttl_s)
    )
    if limits.micro_batch_ms > 0 and isinstance(policy, BatchReranker):
        policy = MicroBatcher(
            policy, window_s=limits.micro_batch_ms / 1000, max_documents=limits.micro_batch_max_documents
        )
    books = ledger if ledger is not None else Ledger.from_settings(settings)
    budget = Budget(settings.cost.budgets, books) if settings.cost.budgets else None
    meter = Meter(
        books,
        Pricing.from_settings(settings),
        budget,
        deadline_s=rs.deadline_s,
        on_unconfirmed=metrics.observe_unconfirmed,
        on_replaced=metrics.observe_replaced,
    )
    accountant = Accountant(meter, books, reranker_by_name(settings.cost.fallback))
    service = Service(
        settings=settings,
        keys=keys,
        metrics=metrics,
        gate=Gate(limits.max_concurrent, limits.max_queue, metrics),
        accountant=accountant,
        policy=policy,
        jobs=IngestJobs(settings.data_dir / "jobs"),
        rate_limits=rate_limits,
        cascades=ClientCascades(settings.gateway, xlmr_token_count, meter.is_paid),
        search_pipeline=None if pipeline is None else metered_view(pipeline, accountant),
        owned_ledger=books if ledger is None and isinstance(books, Ledger) else None,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    # fastapi-offline serves Swagger UI and ReDoc from its own package, not a CDN: /docs works offline.
    app = FastAPIOffline(
        title="leanrank",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
    )
    app.state.service = service
    modules = (rerank, batch, search, courses, usage, dashboard, ops)
    for module in modules:
        app.include_router(module.router)
    app.mount(dashboard.ASSETS, dashboard.assets(), name="dashboard-assets")
    app.add_middleware(Idempotency, ledger=books)  # inside the edge: the key is known, the body bounded
    app.add_middleware(
        EdgeMiddleware,
        keys=keys,
        limits=limits,
        metrics=metrics,
        rate_limits=rate_limits,
        routes=[route for module in modules for route in module.router.routes],
    )
    app.add_exception_handler(LeanrankError, _leanrank_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    return app


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


async def _leanrank_error(request: Request, exc: Exception) -> Response:
    """The error in the one shape. An unknown course's message lists only the courses the caller's key may
    see (an admin key: all): the names of other tenants' courses are theirs, in a 404 as in `/v1/courses`."""
    if isinstance(exc, UnknownCourseError):
        principal: Principal | None = getattr(request.state, "principal", None)
        exc = UnknownCourseError(exc.course, principal.visible(exc.known) if principal else ())
    return error_response(exc, _request_id(request))


async def _validation_error(request: Request, exc: Exception) -> Response:
    """422 naming the first fields at fault (`body.documents.3: Input should be a valid string`)."""
    assert isinstance(exc, RequestValidationError)
    problems = [_problem(e) for e in exc.errors()[:3]]
    body = error_body("; ".join(problems) or "invalid request", "invalid_request", _request_id(request))
    return JSONResponse(body, 422)


def _problem(error: Mapping[str, Any]) -> str:
    """One fault; bad JSON says where and why (pydantic's `body.1: JSON decode error` names no field)."""
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "json_invalid":
        where = f" at character {loc[-1]}" if len(loc) > 1 else ""
        reason = error.get("ctx", {}).get("error", "")
        return f"body: not valid JSON{where}" + (f" ({reason})" if reason else "")
    return f"{'.'.join(str(p) for p in loc)}: {error.get('msg', 'invalid')}"


async def _http_error(request: Request, exc: Exception) -> Response:
    """Routing errors (unknown path 404, wrong method 405, unparsable body 400) in the one error shape.

    A body that cannot be read is invalid input, answered as malformed JSON is (422 `invalid_request`), where
    FastAPI's and Starlette's 400 says only that parsing failed: a body that is not UTF-8 (not JSON, RFC 8259)
    with where it breaks, JSON nested past the parser's recursion limit, and a multipart body the parser
    refuses (a bare CR in a header such as a file name, no boundary) with the parser's reason.
    """
    assert isinstance(exc, HTTPException)
    message = _unreadable_body(exc)
    if message is not None:
        return JSONResponse(error_body(message, "invalid_request", _request_id(request)), 422)
    body = error_body(str(exc.detail), "http_error", _request_id(request))
    return JSONResponse(body, exc.status_code, headers=exc.headers)


def _unreadable_body(exc: HTTPException) -> str | None:
    """What is wrong with the body behind `exc` (None: something else went wrong)."""
    cause = exc.__cause__
    if isinstance(cause, UnicodeDecodeError):
        return f"body: not UTF-8 at byte {cause.start} ({cause.reason}); send JSON encoded as UTF-8"
    if isinstance(cause, RecursionError):
        return "body: JSON nested too deeply to parse"
    multipart = exc.__context__  # Starlette raises the HTTPException while handling its MultiPartException
    if isinstance(multipart, MultiPartException):
        reason = multipart.__cause__ or multipart.message  # python-multipart's own words, when it has some
        return f"body: not readable as multipart/form-data: {reason}"
    return None
