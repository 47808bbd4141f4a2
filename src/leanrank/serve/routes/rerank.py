"""The drop-in rerank gateway: Cohere v2 (`/v2/rerank`, `/v1/rerank`), Jina (`/v1/rerank`), TEI (`/rerank`).

A pipeline that calls one of these providers switches to leanrank by changing its base URL and key; the
configured policy (`rerank.backend`, possibly a fallback chain) answers, and the ledger bills each
request once. Which backend served, and what it cost, come back in `x-leanrank-*` headers; so do fields
accepted but not applied (`x-leanrank-ignored`) and warnings (`x-leanrank-warning`: blank documents,
non-finite scores). Before the backend, the cascade of the key (or course) holds back documents and
collapses duplicates (`leanrank.cascade.request`); `x-leanrank-documents-*` say how many. Scores are
converted from the scale the backend declares, never guessed. A request naming a `model` is routed to the
policy's backend for it (`serving_policy`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, BeforeValidator, JsonValue, TypeAdapter

from leanrank.cascade.request import BilledAs, ClientPlan, merge, pass_through
from leanrank.cost._names import chain_links, parse_backend
from leanrank.cost.billing import PROVIDER_BILLING, search_unit_documents
from leanrank.cost.tokens import counter_for
from leanrank.encode.e5 import xlmr_token_count
from leanrank.errors import InputError
from leanrank.pipeline import check_course_id
from leanrank.rerank.base import Reranker, as_logits, as_probabilities, is_reranker, rank_order
from leanrank.rerank.fallback import FallbackReranker
from leanrank.rerank.windows import WindowedReranker, WindowPolicy, apply_windows, windows_on_path
from leanrank.serve.accounting import CallContext, Charge
from leanrank.serve.auth import Principal
from leanrank.serve.errors import ForbiddenError, UnknownModelError
from leanrank.serve.idempotency import header_token
from leanrank.serve.limits import check_rerank
from leanrank.serve.routes.lean import LeanRoute
from leanrank.serve.service import KEY_REQUIRED, Caller, Service, call_context
from leanrank.serve.wire import (
    CascadeCounts,
    CohereRerankRequest,
    CohereRerankResponse,
    JinaRerankResponse,
    RerankRequest,
    StructuredDocument,
    TeiRank,
    TeiRerankRequest,
    errors,
)

# Cohere's window when `max_chunks_per_doc` comes without `max_tokens_per_doc`: bge-reranker-v2-m3's.
CHUNK_TOKENS = 512
_COHERE_IGNORED = ("priority", "relevant_spans")

router = APIRouter(
    tags=["rerank"], responses=errors(400, 401, 403, 404, 413, 422, 424, 429, 503), route_class=LeanRoute
)

CascadeHeader = Annotated[
    Literal["off"] | None,
    BeforeValidator(lambda v: header_token(v) if isinstance(v, str) else v),  # header values: any case
    Header(
        alias="X-Leanrank-Cascade",
        description="`off`: forward every document as sent for this call (the key's cascade is skipped).",
    ),
]

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
    if not principal.courses:
        raise ForbiddenError(f"key {principal.key_id!r} may not rerank: it has no courses")
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
    members = chain_links(policy.name)
    if model is None or _is_model(members[0], model):
        return policy
    chain = _fallback_chain(policy)
    if chain is not None:
        for i, backend in enumerate(chain.chain):
            if _is_model(backend.name, model):
                rest = chain.chain[i:]
                return rest[0] if len(rest) == 1 else FallbackReranker(rest)
    if service.settings.serve.unknown_model == "refuse":
        raise UnknownModelError(
            f"model {model!r} is not served here; this service serves {', '.join(members)} "
            "(serve.unknown_model=refuse)"
        )
    response.headers["x-leanrank-model-ignored"] = header_text(model)
    return policy


def _fallback_chain(reranker: Reranker) -> FallbackReranker | None:
    """The fallback chain inside `reranker`'s wrappers (windows, score cache, batcher, guard), or None."""
    layer = reranker
    while not isinstance(layer, FallbackReranker) and is_reranker(getattr(layer, "inner", None)):
        layer = layer.inner  # type: ignore[attr-defined]
    return layer if isinstance(layer, FallbackReranker) else None


async def rerank_cascaded(
    service: Service,
    reranker: Reranker,
    query: str,
    documents: Sequence[str],
    call: CallContext,
    cascade: str | None = None,
) -> tuple[Charge, ClientPlan]:
    """Rerank a client's `documents` with `reranker` after the cascade of the call's key (or course), bill
    the call once and count it in the metrics: what every rerank route (one query or a batch's) runs, within
    the service's gate slot.

    `cascade="off"` forwards every document as sent. The charge's scores cover every received document
    (`merge`), the plan says what was sent; the ledger record has what sending all would have cost. Raises
    what `Accountant.rerank` raises (and the cascade's gate, when the policy has one).
    """
    if cascade == "off":
        plan = pass_through(documents)
    else:
        chosen = service.cascades.for_call(call.tenant, call.course)
        billed_as = _search_unit_documents(reranker, query)
        plan = await chosen.plan(query, documents, billed_as=billed_as)
    charge = await service.accountant.rerank(reranker, query, plan.texts, call, received=documents)
    charge = replace(charge, response=merge(plan, charge.response))
    service.metrics.observe_charge(charge, call.course)
    service.metrics.observe_gateway(charge, call.course, call.tenant, plan.received, plan.sent)
    return charge, plan


async def rerank_once(
    caller: Caller,
    course_header: str | None,
    query: str,
    documents: Sequence[str],
    response: Response,
    model: str | None = None,
    *,
    windows: WindowPolicy | None = None,
    ignored: Sequence[str] = (),
    cascade: str | None = None,
) -> tuple[Charge, CascadeCounts]:
    """Check, meter and run one rerank with the backend for `model`; set the accounting headers on `response`.

    The documents go through the key's (or course's) cascade first (`ClientCascades`; `cascade="off"`
    skips it): the charge's scores cover every received document (`merge`), the counts say what the cascade
    did. `windows` applies a request's own document caps (Cohere's `max_tokens_per_doc`,
    `max_chunks_per_doc`) on top of the policy; `ignored` names the fields accepted but not applied
    (`x-leanrank-ignored`).
    """
    service, principal = caller.service, caller.principal
    course = billing_course(principal, course_header)
    per_doc = (windows.max_windows or 1) if windows is not None and windows.mode == "maxpool" else 1
    tokens = check_rerank(service.settings, query, documents, per_doc)
    await service.rate_limits.tokens(principal.key_id, tokens)
    backend = serving_policy(service, model, response)
    policy = backend if windows is None else WindowedReranker(backend, windows, xlmr_token_count)
    call = call_context(principal, caller.request_id, course, "rerank")
    async with service.gate.slot():
        charge, plan = await rerank_cascaded(service, policy, query, documents, call, cascade)
    counts = cascade_counts(plan, charge)
    _cascade_headers(response, counts, charge)
    response.headers["x-leanrank-backend"] = charge.backend
    response.headers["x-leanrank-budget"] = charge.budget
    if charge.cost_usd is not None:
        response.headers["x-leanrank-cost-usd"] = f"{charge.cost_usd:.8f}"
    if ignored:
        response.headers["x-leanrank-ignored"] = header_text(", ".join(ignored))
    if charge.response.usage.warnings:
        response.headers["x-leanrank-warning"] = header_text("; ".join(charge.response.usage.warnings))
    return charge, counts


def _search_unit_documents(reranker: Reranker, query: str) -> BilledAs | None:
    """How many documents the first backend of `reranker` billed per search unit bills each text as (None
    when none is): what is really sent for the text (`as_sent`: the request's own windows, then the
    backend's configured truncation or windows, its `max_doc_tokens`; in a fallback chain, that link's own),
    each part split into chunks over the provider's context with the query as sent, counted by the
    provider's token counter: the rule the budget's estimate applies (`Pricing.estimate`)."""
    chain = _fallback_chain(reranker)
    link = next(
        (
            link
            for link in ([reranker] if chain is None else chain.chain)
            if PROVIDER_BILLING.get(parse_backend(link.name).provider) == "search_units"
        ),
        None,
    )
    if link is None:
        return None

    count = counter_for(link.name).count
    path = windows_on_path(reranker, link.name)
    query_tokens = count(apply_windows(path, query, ())[0])

    def billed_as(text: str) -> int:
        parts = apply_windows(path, query, (text,))[1]
        return sum(search_unit_documents(query_tokens, part, count) for part in parts)

    return billed_as


def cascade_counts(plan: ClientPlan, charge: Charge) -> CascadeCounts:
    """What the cascade did with one call's documents, as the wire carries it (`meta.leanrank`)."""
    return CascadeCounts(
        documents_received=plan.received,
        documents_forwarded=plan.sent,
        documents_collapsed=plan.collapsed,
        documents_cached=charge.response.usage.cache_hits,
    )


def _cascade_headers(response: Response, counts: CascadeCounts, charge: Charge) -> None:
    """`x-leanrank-documents-{received,forwarded,collapsed,cached}`, and what sending all would have cost."""
    for name, value in counts.model_dump().items():
        response.headers[f"x-leanrank-{name.replace('_', '-')}"] = str(value)
    if charge.full_cost_usd is not None:
        response.headers["x-leanrank-full-cost-usd"] = f"{charge.full_cost_usd:.8f}"


_HEADER_CHARS = 1000


def header_text(text: str) -> str:
    """`text` as a safe header value: field names come from the client, so anything outside printable ASCII
    (control characters, lone surrogates, other scripts) is JSON-escaped, and the value is capped. A value
    that would begin or end with a space (an empty or padded field name, a model name) keeps its JSON
    quotes: a header value cannot (RFC 9110 §5.5), and the server would fail the response."""
    escaped = json.dumps(text)[1:-1]
    if escaped != escaped.strip(" "):
        escaped = f'"{escaped}"'
    return escaped if len(escaped) <= _HEADER_CHARS else escaped[: _HEADER_CHARS - 3] + "..."


def _ignored(body: BaseModel, fields: Sequence[str]) -> list[str]:
    """The `fields` a client set that the service accepts but does not apply, then unknown extras."""
    given = [f for f in fields if getattr(body, f, None) is not None]
    return given + sorted(body.model_extra or {})


def _windows(max_tokens: int | None, max_chunks: int | None) -> WindowPolicy | None:
    """Cohere's caps as leanrank windows: `max_tokens_per_doc` cuts each document (v2 truncates), and
    `max_chunks_per_doc` scores up to that many windows of `max_tokens_per_doc` (else `CHUNK_TOKENS`)."""
    if max_chunks is not None:
        return WindowPolicy(max_tokens or CHUNK_TOKENS, mode="maxpool", max_windows=max_chunks)
    if max_tokens is not None:
        return WindowPolicy(max_tokens, mode="truncate")
    return None


def _cohere(
    charge: Charge,
    counts: CascadeCounts,
    request_id: str,
    top_n: int | None,
    version: str,
    echo: Sequence[StructuredDocument] | None,
) -> CohereRerankResponse:
    """The Cohere answer, validated from plain data in one pass of pydantic's core (as are the Jina and TEI
    answers): building a model per result takes nearly twice as long, ~0.04 ms more for 100 documents."""
    response = charge.response
    scores = as_probabilities(response.scores, response.scale)
    usage = response.usage
    return CohereRerankResponse.model_validate(
        {
            "id": request_id,
            "results": [
                {"index": i, "relevance_score": scores[i], "document": None if echo is None else echo[i]}
                for i in rank_order(response.scores, top_n)
            ],
            "meta": {
                "api_version": {"version": version},
                "billed_units": {
                    "search_units": usage.billed_units if usage.billed_unit == "search_units" else 0,
                    "input_tokens": int(usage.billed_units) if usage.billed_unit == "tokens" else None,
                },
                "leanrank": counts,
            },
        }
    )


_COHERE_ONLY = "Cohere v2 request and response; the path the official Cohere SDK (`ClientV2`) calls."


@router.post(
    "/v2/rerank",
    response_model=CohereRerankResponse,
    response_model_exclude_none=True,
    summary="Rerank (Cohere v2)",
    description=_COHERE_ONLY,
    openapi_extra=KEY_REQUIRED,
)
async def cohere_rerank(
    body: CohereRerankRequest,
    request: Request,
    response: Response,
    course: CourseHeader = None,
    cascade: CascadeHeader = None,
) -> CohereRerankResponse:
    caller = Caller.of(request)
    charge, counts = await rerank_once(
        caller,
        course,
        body.query,
        body.documents,
        response,
        body.model,
        windows=_windows(body.max_tokens_per_doc, None),
        ignored=_ignored(body, _COHERE_IGNORED),
        cascade=cascade,
    )
    return _cohere(charge, counts, caller.request_id, body.top_n, "2", None)


def _texts(body: RerankRequest) -> list[str]:
    """What is scored of each document: the string, the `text` field, or the `rank_fields` as lines.

    A rank field no object document has is an InputError (a typo would score every document blank); one
    that only some have is left out of the others."""
    objects = [doc for doc in body.documents if not isinstance(doc, str)]
    for n, field in enumerate(body.rank_fields or ()):
        if objects and not any(field in doc for doc in objects):
            shown = json.dumps(field, ensure_ascii=False)
            raise InputError(f"rank_fields.{n}: no document has a field {shown}")
    texts = []
    for n, doc in enumerate(body.documents):
        if isinstance(doc, str):
            texts.append(doc)
        elif body.rank_fields:
            texts.append("\n".join(f"{f}: {_field_text(doc[f])}" for f in body.rank_fields if f in doc))
        elif isinstance(doc.get("text"), str):
            texts.append(str(doc["text"]))
        else:
            raise InputError(f"documents.{n}: an object needs a string `text` field, or name `rank_fields`")
    return texts


def _field_text(value: JsonValue) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@router.post(
    "/v1/rerank",
    response_model=CohereRerankResponse | JinaRerankResponse,
    response_model_exclude_none=True,
    summary="Rerank (Cohere v1 or Jina)",
    description=(
        "Cohere v1 → Cohere response (`id`, `results[].index`, `relevance_score`, `document` when asked "
        "for, `meta.billed_units`, api version 1). A `model` starting with `jina` is Jina's → Jina response "
        "(`model`, `usage.total_tokens`, `results[].document` unless `return_documents` is false)."
    ),
    openapi_extra=KEY_REQUIRED,
)
async def rerank(
    body: RerankRequest,
    request: Request,
    response: Response,
    course: CourseHeader = None,
    cascade: CascadeHeader = None,
) -> CohereRerankResponse | JinaRerankResponse:
    caller = Caller.of(request)
    texts = _texts(body)
    charge, counts = await rerank_once(
        caller,
        course,
        body.query,
        texts,
        response,
        body.model,
        windows=_windows(body.max_tokens_per_doc, body.max_chunks_per_doc),
        ignored=_ignored(body, _COHERE_IGNORED),
        cascade=cascade,
    )
    echo: list[StructuredDocument] = [{"text": d} if isinstance(d, str) else d for d in body.documents]
    if not body.jina:
        return _cohere(
            charge, counts, caller.request_id, body.top_n, "1", echo if body.return_documents else None
        )
    scores = as_probabilities(charge.response.scores, charge.response.scale)
    keep = body.return_documents is not False
    return JinaRerankResponse.model_validate(
        {
            "model": body.model or charge.backend,
            "usage": {"total_tokens": charge.response.usage.total_tokens},
            "results": [
                {"index": i, "relevance_score": scores[i], "document": echo[i] if keep else None}
                for i in rank_order(charge.response.scores, body.top_n)
            ],
        }
    )


_TEI_RANKS = TypeAdapter(list[TeiRank])


@router.post(
    "/rerank",
    response_model=list[TeiRank],
    response_model_exclude_none=True,
    summary="Rerank (text-embeddings-inference)",
    description="TEI request and response: `texts` in, a bare array best first out; usage in `x-compute-*`.",
    openapi_extra=KEY_REQUIRED,
)
async def tei_rerank(
    body: TeiRerankRequest,
    request: Request,
    response: Response,
    course: CourseHeader = None,
    cascade: CascadeHeader = None,
) -> list[TeiRank]:
    charge, _ = await rerank_once(
        Caller.of(request),
        course,
        body.query,
        body.texts,
        response,
        ignored=_ignored(body, ("truncate", "truncation_direction")),
        cascade=cascade,
    )
    usage = charge.response.usage
    response.headers["x-compute-tokens"] = str(usage.total_tokens)
    response.headers["x-compute-characters"] = str(len(body.query) + sum(len(t) for t in body.texts))
    response.headers["x-inference-time"] = str(round(usage.latency_s * 1000))
    raw, scale = charge.response.scores, charge.response.scale
    scores = as_logits(raw, scale) if body.raw_scores else as_probabilities(raw, scale)
    return _TEI_RANKS.validate_python(
        [
            {"index": i, "score": scores[i], "text": body.texts[i] if body.return_text else None}
            for i in rank_order(raw)
        ]
    )
