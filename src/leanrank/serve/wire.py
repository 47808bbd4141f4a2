"""Wire types: the JSON the service accepts and returns, kept apart from leanrank's domain types.

Rerank shapes copy the providers' documented wires (docs/PROVIDERS.md) so that their clients work
unchanged; everything else is leanrank's own. Converters from domain objects live in the routes.
Unknown request fields are refused (422 naming the field) rather than silently ignored, except on TEI's
wire, which ignores them as TEI does (and names them in the `x-leanrank-ignored` header).
Request numbers and flags are strict: pydantic's lax mode would read `"top_n": true` as 1, `"k": "3"` or
`2.0` as integers and `"return_documents": "yes"` or `1` as true, so a boolean, a string or a float where an
integer belongs (a boolean or a string where a number does, a number or a string where a boolean does) is a
422 naming the field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from leanrank.checks import LANGS, MAX_DEPTH, MAX_HEADING_SEGMENTS, MAX_HITS, non_text
from leanrank.cost.ledger import Bucket, GroupBy
from leanrank.cost.report import round_usd
from leanrank.rerank.base import BilledUnit, CountSource
from leanrank.types import Lang

Usd = Annotated[float, PlainSerializer(round_usd, return_type=float)]
"""A ledger sum in US dollars, written with `USD_DECIMALS` places (no float noise in usage JSON)."""

_QUERY = "Как работает цикл for в Python?"
_DOCS: list[JsonValue] = [
    "Цикл for перебирает элементы последовательности по одному.",
    "Functions are defined with the def keyword.",
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, data: Any) -> Any:
        """JSON may escape a lone UTF-16 surrogate (`"\\ud800"`), which no encoder, store or writer takes."""
        why = non_text(data, "the body")
        if why is not None:
            raise ValueError(why)
        return data


StructuredDocument = dict[str, JsonValue]


def _one_document(value: Any, handler: ValidatorFunctionWrapHandler) -> str | StructuredDocument:
    """One plain fault: pydantic's union error names each member's internal schema
    (`body.documents.0.dict[str,json-or-python[...]]: Input should be a valid dictionary`)."""
    try:
        document: str | StructuredDocument = handler(value)
    except ValidationError:
        raise PydanticCustomError(
            "document_type", 'a document must be a string or an object with a "text" field'
        ) from None
    return document


Document = Annotated[str | StructuredDocument, WrapValidator(_one_document)]


class _RerankFields(_Request):
    model: str | None = Field(
        None,
        max_length=256,
        description="Served by the policy's backend for this model; any other model is answered by the "
        "configured policy with `x-leanrank-model-ignored` set, or refused (`serve.unknown_model`).",
    )
    query: str = Field(description="The search query.")
    top_n: StrictInt | None = Field(None, ge=1, description="Return only the best N results.")
    max_tokens_per_doc: StrictInt | None = Field(
        None, ge=1, description="Applied: each document is cut to this many tokens before scoring."
    )
    priority: StrictInt | None = Field(
        None, ge=0, description="Ignored: requests are served in arrival order."
    )
    relevant_spans: JsonValue = Field(None, description="Ignored: no spans are returned.")


class CohereRerankRequest(_RerankFields):
    """Cohere v2 `POST /v2/rerank`.

    `model` picks the backend of the configured policy (`rerank.backend`) that serves it, see `model`.
    Fields accepted but not applied are named in the `x-leanrank-ignored` response header.
    """

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"model": "rerank-v3.5", "query": _QUERY, "documents": _DOCS}]}
    )

    documents: list[str] = Field(description="Texts to score against the query.")


class RerankRequest(_RerankFields):
    """`POST /v1/rerank`: Cohere v1 or Jina, told apart by `model` (a name starting with `jina` is Jina's).

    Documents are strings or objects: Jina's `{"text"}` / `{"id", "text"}`, Cohere v1's structured
    documents scored on their `text` field, or on `rank_fields` (sent as `field: value` lines).
    `max_chunks_per_doc` (Cohere v1) splits long documents into windows and keeps the best one's score.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"model": "rerank-multilingual-v3.0", "query": _QUERY, "documents": _DOCS, "top_n": 1},
                {"model": "jina-reranker-v2-base-multilingual", "query": _QUERY, "documents": _DOCS},
            ]
        }
    )

    documents: list[Document] = Field(
        description='Strings, or objects: `{"text": ...}` (with an `id`, Jina) or with `rank_fields`.'
    )
    return_documents: StrictBool | None = Field(
        None, description="Echo each document in its result (default: true for Jina, false for Cohere)."
    )
    rank_fields: list[str] | None = Field(None, min_length=1, description="Cohere v1: fields to score on.")
    max_chunks_per_doc: StrictInt | None = Field(
        None, ge=1, description="Cohere v1: windows scored per document."
    )

    @property
    def jina(self) -> bool:
        return (self.model or "").lower().startswith("jina")


class RerankResult(BaseModel):
    index: int = Field(description="Position of the document in the request.")
    relevance_score: float = Field(description="In [0, 1]; documents with nothing to score get 0.")


class ApiVersion(BaseModel):
    version: str


class BilledUnits(BaseModel):
    search_units: float = Field(
        description="Search units billed downstream (0 unless the backend bills them)."
    )
    input_tokens: int | None = Field(None, description="Tokens billed downstream, for token-billed backends.")


class CascadeCounts(BaseModel):
    """What the gateway's cascade did with a request's documents (also in `x-leanrank-documents-*`)."""

    documents_received: int
    documents_forwarded: int = Field(description="Sent to the backend (and billed, unless cached).")
    documents_collapsed: int = Field(description="Duplicates answered with their representative's score.")
    documents_cached: int = Field(description="Of those forwarded, scored from the score cache.")


class CohereMeta(BaseModel):
    api_version: ApiVersion
    billed_units: BilledUnits
    leanrank: CascadeCounts | None = Field(None, description="leanrank's own: the cascade's counts.")


class CohereResult(RerankResult):
    document: StructuredDocument | None = Field(None, description="Cohere v1 with `return_documents`.")


class CohereRerankResponse(BaseModel):
    """Cohere v2 (and v1): results best first, billed units in `meta`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "5d0f3c7e9b1a4c2e8f6a1b2c3d4e5f60",
                    "results": [{"index": 0, "relevance_score": 0.98}, {"index": 1, "relevance_score": 0.02}],
                    "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
                }
            ]
        }
    )

    id: str
    results: list[CohereResult]
    meta: CohereMeta


class JinaResult(RerankResult):
    document: StructuredDocument | None = None


class JinaUsage(BaseModel):
    total_tokens: int


class JinaRerankResponse(BaseModel):
    """Jina: `model`, results best first with the documents (unless `return_documents` is false), usage."""

    model: str
    usage: JinaUsage
    results: list[JinaResult]


class TeiRerankRequest(_Request):
    """text-embeddings-inference `POST /rerank`.

    Scores are probabilities unless `raw_scores` (then logits), converted from the scale the backend
    declares. As TEI does, fields it does not know are ignored (the `rerankers` library sends `model` and
    `top_n`); they and `truncate`/`truncation_direction` are named in the `x-leanrank-ignored` header.
    """

    model_config = ConfigDict(
        extra="allow", json_schema_extra={"examples": [{"query": _QUERY, "texts": _DOCS}]}
    )

    query: str
    texts: list[str]
    truncate: StrictBool | None = None
    truncation_direction: Literal["Left", "Right", "left", "right"] | None = None
    raw_scores: StrictBool = False
    return_text: StrictBool = False


class TeiRank(BaseModel):
    index: int
    score: float
    text: str | None = None


class TeiInfo(BaseModel):
    """TEI's `GET /info`, the fields its clients read; the limits are the service's own."""

    model_id: str
    model_type: dict[str, JsonValue]
    max_input_length: int
    max_client_batch_size: int
    max_concurrent_requests: int
    version: str


class SteeringIn(BaseModel):
    """Examples from the student's context: chunk ids (a hit's `chunk_id`) and sources (lesson files)."""

    model_config = ConfigDict(extra="forbid")

    positive_chunks: list[str] = Field([], max_length=64, description="Chunks to move toward.")
    negative_chunks: list[str] = Field([], max_length=64, description="Chunks to move away from.")
    positive_sources: list[str] = Field([], max_length=16, description="Sources the student works in.")
    negative_sources: list[str] = Field([], max_length=16, description="Sources the student ruled out.")


class SearchRequest(_Request):
    """A question about one course: hybrid retrieval, then the rerank step."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"query": _QUERY, "course": "python-101", "k": 3, "langs": ["ru"]}]}
    )

    query: str = Field(description="The student's question.")
    course: str = Field(description="Course to search; the key must be allowed to use it.")
    k: StrictInt | None = Field(
        None, ge=1, le=MAX_HITS, description="Hits to return (rerank.top_k by default)."
    )
    depth: StrictInt | None = Field(
        None, ge=1, le=MAX_DEPTH, description="Candidates handed to the rerank step."
    )
    langs: list[Lang] = Field(
        [],
        max_length=len(LANGS),
        description="Only chunks containing one of these languages (mixed: containing both ru and en).",
    )
    heading_prefix: list[str] = Field(
        [],
        max_length=MAX_HEADING_SEGMENTS,
        description="Only chunks under the heading path these start, outermost first, as --heading takes it.",
    )
    min_relevance: StrictFloat | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Drop hits below this calibrated P(relevant).",
    )
    judge: StrictBool | None = Field(
        None, description="Run the LLM judge on the top hits (null: the server's judge.enabled)."
    )
    context: SteeringIn | None = Field(
        None, description="Steer the dense lists toward / away from these examples (retrieve.steer_strategy)."
    )


class UsageOut(BaseModel):
    """One rerank call's usage, as the CLI prints it (`null` where a field does not apply)."""

    search_units: float | None
    total_tokens: int
    query_tokens: int
    document_tokens: int
    billed_units: float
    billed_unit: BilledUnit
    cost_usd: float | None
    source: CountSource
    documents: int
    latency_s: float
    warnings: list[str] = Field([], description="Blank documents or non-finite scores, ranked last.")


class SearchHit(BaseModel):
    """A chunk of the course; `start`/`end` locate `text` in the source file's text as loaded (`Chunk`)."""

    chunk_id: str
    score: float
    text: str
    source: str
    lang: Lang
    heading: list[str] = Field(description="The heading path, outermost first.")
    heading_path: str = Field(description='The same path joined with " > ", as --heading takes it.')
    start: int = Field(
        description="Where `text` starts, in characters (code points) into the source file's text as loaded: "
        "a text file decoded, a UTF-8 BOM dropped, CRLF and CR as LF; a notebook's cell sources joined by "
        "blank lines; other formats' extracted text."
    )
    end: int = Field(description="Where `text` ends (exclusive), counted as `start` is.")
    tokens: int
    meta: dict[str, str]
    stage_scores: dict[str, float] = Field(description="Each stage's score: fusion, dense, bm25, rerank.")


class SearchResponse(BaseModel):
    request_id: str
    query: str
    course: str
    candidates: int = Field(description="Candidates that reached the rerank step.")
    retrieved: int = Field(description="Candidates the first stage found (0: a reused answer).")
    dropped: dict[str, int] = Field(description="Candidates each cascade stage kept from the reranker.")
    hits: list[SearchHit]
    served_by: str = Field(description="The rerank backend that produced the scores.")
    failed: list[str] = Field(description="Backends tried first that failed, with why.")
    usage: UsageOut
    cost_usd: float | None = Field(description="What this request cost, when the price is known.")
    judge_cost_usd: float | None = Field(
        None, description="What the LLM judge cost, when it ran and its price is known."
    )
    timings_ms: dict[str, float]


class CourseOut(BaseModel):
    course: str
    chunks: int


class CourseList(BaseModel):
    courses: list[CourseOut]


class DocumentOut(BaseModel):
    source: str
    chunks: int


class DocumentList(BaseModel):
    course: str
    documents: list[DocumentOut]


class FileResult(BaseModel):
    """One uploaded file's outcome; `kept` counts the chunks of a skipped file's earlier version, which
    still answer searches (`leanrank.pipeline.FileReport`)."""

    source: str
    status: Literal["added", "updated", "unchanged", "skipped", "removed"]
    chunks: int
    reason: str
    kept: int = 0


class IngestJobOut(BaseModel):
    """An upload's ingestion; small uploads come back `done`, large ones `queued` with a status URL."""

    id: str
    course: str
    status: Literal["queued", "running", "done", "failed"]
    bytes: int
    files: list[FileResult]
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    status_url: str


class Deleted(BaseModel):
    course: str
    source: str | None = None
    deleted_chunks: int


class UsageRowOut(BaseModel):
    """Ledger totals of one group; `cost_usd` leaves out the `unpriced` calls (unknown price)."""

    key: str | None = Field(description="The course, backend, UTC day or tenant; null: none recorded.")
    calls: int
    requests: int
    documents: int
    cache_hits: int
    query_tokens: int
    document_tokens: int
    cost_usd: Usd
    unpriced: int
    documents_received: int = Field(description="Documents clients sent; `documents` were reranked.")
    full_cost_usd: Usd = Field(description="What the calls would have cost had every received one been sent.")
    saved_usd: Usd = Field(description="`full_cost_usd - cost_usd`: what the gateway's cascade saved.")
    unconfirmed: int = Field(
        description="Calls the provider may have billed though no answer was used (a timeout, an unusable "
        "answer, a client gone): recorded at the estimate and part of `calls` and `cost_usd`."
    )
    unconfirmed_usd: Usd = Field(description="The estimated cost of the `unconfirmed` calls.")


class AgreementOut(BaseModel):
    """Reranker-embedder agreement of one course's searches since this process started."""

    searches: int = Field(description="Searches that reranked (identity's are not counted).")
    mean: float = Field(
        description="Mean share of the reranked first 10 found in the first stage's first 50."
    )


class UsageReport(BaseModel):
    """Ledger totals over a period, grouped one way, never beyond the courses the key may see."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "period": "2026-11",
                    "start": "2026-11-01T00:00:00Z",
                    "end": "2026-12-01T00:00:00Z",
                    "by": "course",
                    "rows": [
                        {
                            "key": "python-101",
                            "calls": 1200,
                            "requests": 1200,
                            "documents": 24000,
                            "cache_hits": 5100,
                            "query_tokens": 0,
                            "document_tokens": 0,
                            "cost_usd": 2.4,
                            "unpriced": 0,
                            "documents_received": 120000,
                            "full_cost_usd": 2.4,
                            "saved_usd": 0.0,
                            "unconfirmed": 2,
                            "unconfirmed_usd": 0.004,
                        }
                    ],
                    "calls": 1200,
                    "cost_usd": 2.4,
                    "unpriced": 0,
                    "unconfirmed": 2,
                }
            ]
        }
    )

    period: str
    start: datetime
    end: datetime
    by: GroupBy
    rows: list[UsageRowOut]
    calls: int
    cost_usd: Usd
    unpriced: int
    unconfirmed: int = Field(description="Calls possibly billed without an answer used (in `calls`).")
    agreement: dict[str, AgreementOut] = Field(
        {},
        description="Per course the key may see: reranker-embedder agreement of the searches this process "
        "served (a diagnostic kept in memory, not in the ledger).",
    )


class Status(BaseModel):
    status: str


class ErrorBody(BaseModel):
    """Every error: a message (as `error`, `message` and `detail`), a stable type, the limit concerned (if
    any) and the request id to quote."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": "documents: 1200 is above the limit of 1000 (serve.max_documents)",
                    "message": "documents: 1200 is above the limit of 1000 (serve.max_documents)",
                    "detail": "documents: 1200 is above the limit of 1000 (serve.max_documents)",
                    "error_type": "limit_exceeded",
                    "limit": "max_documents",
                    "request_id": "5d0f3c7e9b1a4c2e8f6a1b2c3d4e5f60",
                }
            ]
        }
    )

    error: str
    message: str = Field(description="The same text as `error`: the Cohere SDK reads this field.")
    detail: str = Field(
        description="The same text as `error`: Jina's clients (LangChain, LlamaIndex) read this field."
    )
    error_type: str
    limit: str | None = None
    request_id: str | None = None


class SeriesRowOut(BaseModel):
    """Ledger sums of one UTC time bucket, course, tenant (key id) and backend."""

    bucket: str = Field(description="Bucket start, UTC: `YYYY-MM-DDTHH:00` (hour) or `YYYY-MM-DD` (day).")
    course: str | None
    tenant: str | None
    backend: str
    calls: int
    documents: int = Field(description="Documents scored (sent to a backend or served from the cache).")
    documents_received: int = Field(description="Documents clients sent, before the cascade dropped any.")
    cache_hits: int
    query_tokens: int
    document_tokens: int
    cost_usd: Usd
    unpriced: int
    savings_usd: Usd = Field(description="Full-forwarding cost minus cost, over calls that recorded both.")
    backend_calls: int = Field(description="Calls that reached a backend (not wholly from the cache).")
    latency_ms_sum: float = Field(description="Backend latency summed over `backend_calls`, milliseconds.")
    latency_ms_max: float


class BudgetOut(BaseModel):
    """One configured cap (a `*` rule once per course or tenant seen) and the spend of its current period."""

    scope: Literal["course", "tenant"]
    name: str
    period: Literal["day", "month"]
    soft_usd: float | None
    hard_usd: float | None
    spent_usd: Usd = Field(description="Known cost so far in the cap's current UTC day or month.")


class UsageSeries(BaseModel):
    """The spend dashboard's data: ledger sums per time bucket over a period, and the budget caps."""

    period: str
    start: datetime
    end: datetime
    bucket: Bucket
    rows: list[SeriesRowOut]
    budgets: list[BudgetOut]


_ERROR_CODES = {
    400: "Empty query or no documents.",
    401: "Missing or invalid API key.",
    403: "The key may not use this course or endpoint.",
    404: "No such course, document or job.",
    409: "The X-Request-Id was used for another request, or its first attempt is still running.",
    413: "Over a configured limit; `limit` names it.",
    422: "Invalid request; the message names the field.",
    424: "The rerank backend failed (every link of a fallback chain).",
    429: "At capacity, or over the key's rate limit (`serve.rate_limits`); retry after `Retry-After` s.",
    503: "Starting, stopping, or the index or the cost ledger is unavailable (the message says which).",
    507: "The server's disk is full: the write was refused, nothing changed.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route can answer, all with `ErrorBody`."""
    return {code: {"model": ErrorBody, "description": _ERROR_CODES[code]} for code in codes}
