"""Hosted and self-hosted rerank APIs as data: one `ProviderSpec` each, one adapter class for all.

The providers differ only in where things sit on the wire (URL path, documents key, results key, score
key, where usage is reported) and in their limits and billing unit, so those are fields, not branches.
Wire formats follow docs/PROVIDERS.md; limits it marks unverified are defaults the caller can override.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from leanrank.errors import ConfigError
from leanrank.rerank.base import BilledUnit, CountSource, RerankResponse, Scale, Usage
from leanrank.rerank.http import (
    BadResponseError,
    JsonClient,
    LoopClients,
    PayloadTooLargeError,
    RerankHttpError,
    check_endpoint,
)
from leanrank.rerank.windows import clip_tokens
from leanrank.retry import RetryPolicy

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reported:
    """Usage one response reported: billed units and, where the provider states it, the price paid."""

    units: float
    cost_usd: float | None = None


# (body, headers): the headers are looked up case-insensitively (`JsonReply.headers`).
UsageReader = Callable[[Any, Mapping[str, str]], Reported | None]


def _dig(body: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(body, dict):
            return None
        body = body.get(key)
    return body


def _number(value: Any) -> float | None:
    """A usage number: None when absent; a finite, non-negative number; else BadResponseError (a NaN
    would otherwise be priced and stored, an infinity trip no budget)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise BadResponseError(f"usage {_preview(value)} is not a finite, non-negative number")
    return float(value)


def body_usage(*paths: tuple[str, ...], cost: tuple[str, ...] = ()) -> UsageReader:
    """Units at the first of `paths` present in the JSON body (providers moved it between API versions)."""

    def read(body: Any, headers: Mapping[str, str]) -> Reported | None:
        for path in paths:
            units = _number(_dig(body, path))
            if units is not None:
                return Reported(units, _number(_dig(body, cost)) if cost else None)
        return None

    return read


def header_usage(name: str) -> UsageReader:
    """Units in a response header (TEI reports usage only there)."""

    def read(body: Any, headers: Mapping[str, str]) -> Reported | None:
        try:
            value = float(headers[name])
        except (KeyError, ValueError):
            return None
        units = _number(value)
        return None if units is None else Reported(units)

    return read


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """Everything that differs between providers.

    `path` may contain `{model}`. `results_key` None means the body is a bare array; `index_key` None means
    the results are plain scores in input order. `batch_multiple` aligns splits to the billing unit (Cohere
    bills per 100 documents, so a split of 150 + 150 would cost 4 units where 100 + 100 + 100 costs 3).
    `info_path` serves the model's limits (TEI's `GET /info`: `max_input_length` tokens per pair,
    `max_client_batch_size` texts per request); `truncate_body` asks the server to cut an input over its
    window, resent once after a 413 that says the input was too long.
    """

    name: str
    default_base_url: str | None
    path: str
    usage: UsageReader
    billed_unit: BilledUnit
    max_docs: int
    documents_key: str = "documents"
    query_key: str = "query"
    results_key: str | None = "results"
    index_key: str | None = "index"
    score_key: str = "relevance_score"
    model_in_body: bool = True
    needs_key: bool = True
    split_on_413: bool = False
    info_path: str | None = None
    truncate_body: Mapping[str, Any] | None = None
    batch_multiple: int = 1
    # Client-side caps from the provider's documented limits; the server would truncate beyond them anyway.
    max_doc_tokens: int | None = None
    max_query_tokens: int | None = None
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    # Hosted APIs answer probabilities; TEI and infinity do unless asked for `raw_scores` (then logits).
    scale: Scale = "probabilities"

    @property
    def env_prefix(self) -> str:
        return f"LEANRANK_{self.name.upper()}"


_TOTAL_TOKENS = body_usage(("usage", "total_tokens"))

PROVIDERS: dict[str, ProviderSpec] = {
    spec.name: spec
    for spec in (
        ProviderSpec(
            "cohere",
            "https://api.cohere.com",
            "/v2/rerank",
            body_usage(("meta", "billed_units", "search_units")),
            "search_units",
            max_docs=10_000,
            batch_multiple=100,
            max_doc_tokens=4_096,  # v2's max_tokens_per_doc default
            max_query_tokens=2_048,
        ),
        ProviderSpec(
            "jina",
            "https://api.jina.ai",
            "/v1/rerank",
            _TOTAL_TOKENS,
            "tokens",
            max_docs=1_000,  # unverified
            extra_body={"return_documents": False},
        ),
        ProviderSpec(
            "voyage",
            "https://api.voyageai.com",
            "/v1/rerank",
            _TOTAL_TOKENS,
            "tokens",
            max_docs=1_000,
            results_key="data",
            extra_body={"return_documents": False, "truncation": True},
            max_query_tokens=8_000,
        ),
        ProviderSpec(
            "mixedbread",
            "https://api.mixedbread.com",
            "/v1/reranking",
            _TOTAL_TOKENS,
            "tokens",
            max_docs=1_000,
            documents_key="input",
            results_key="data",
            score_key="score",
            extra_body={"return_input": False},
            max_query_tokens=256,
        ),
        ProviderSpec(
            "siliconflow",
            "https://api.siliconflow.com",
            "/v1/rerank",
            body_usage(("meta", "tokens", "input_tokens"), ("tokens", "input_tokens")),
            "tokens",
            max_docs=1_000,  # unverified
            extra_body={"return_documents": False},
        ),
        ProviderSpec(
            "deepinfra",
            "https://api.deepinfra.com",
            "/v1/inference/{model}",
            body_usage(
                ("input_tokens",), ("inference_status", "tokens_input"), cost=("inference_status", "cost")
            ),
            "tokens",
            max_docs=1_024,
            results_key="scores",
            index_key=None,
            model_in_body=False,
        ),
        ProviderSpec(
            "fireworks",
            "https://api.fireworks.ai",
            "/inference/v1/rerank",
            _TOTAL_TOKENS,
            "tokens",
            max_docs=1_000,  # unverified
            results_key="data",
            extra_body={"return_documents": False},
        ),
        ProviderSpec(
            "tei",
            None,
            "/rerank",
            header_usage("x-compute-tokens"),
            "tokens",
            max_docs=32,  # TEI's default --max-client-batch-size; 413 beyond it is split anyway
            documents_key="texts",
            results_key=None,
            score_key="score",
            model_in_body=False,
            needs_key=False,
            split_on_413=True,
            info_path="/info",
            truncate_body={"truncate": True},
            extra_body={"raw_scores": False, "return_text": False},
            max_doc_tokens=8_192,  # bge-reranker-v2-m3's maximum; TEI truncates beyond the model's
        ),
        ProviderSpec(
            "infinity",
            "http://127.0.0.1:7997",
            "/rerank",
            _TOTAL_TOKENS,
            "characters",  # unless the server runs with --lengths-via-tokenize: pass billed_unit="tokens"
            max_docs=2_048,
            needs_key=False,
            extra_body={"return_documents": False},
        ),
    )
}


def estimate_tokens(text: str) -> int:
    """About four characters per token: a local count for providers that report none."""
    return math.ceil(len(text) / 4)


class HttpReranker:
    """A `Reranker` over one provider's HTTP API.

    The key and base URL come from the arguments, else from `LEANRANK_<PROVIDER>_API_KEY` /
    `LEANRANK_<PROVIDER>_BASE_URL`. Documents beyond `max_docs` (the provider's per-request limit by
    default) are sent in consecutive requests, one at a time to stay under per-key rate limits, and merged.
    A server that publishes its limits (`info_path`) is asked once: its batch size replaces `max_docs` when
    smaller, and documents are cut client-side to fit its input window. A 413 for a batch too big halves it,
    keeps the slices already scored, and remembers the size that worked; a 413 for an input too long
    resends that slice once with `truncate_body`.
    One pooled HTTP client per event loop serves every `rerank` call made on it (`LoopClients`): the
    service reuses its connections for the process's life instead of opening one per call.

    Usage: `billed_units` is what the responses reported, summed over requests (`count_source="reported"`);
    if any response reported none, the whole call is counted locally with `count` — the model's own
    tokenizer where the catalog knows it (`count_source="tokenizer"`), else four characters per token
    (`"estimate"`). Token totals that providers report include the query and cannot be split, so they go
    to `document_tokens` with `query_tokens` 0; otherwise both token fields are local counts.
    """

    def __init__(
        self,
        spec: ProviderSpec,
        model: str = "",
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        max_docs: int | None = None,
        billed_unit: BilledUnit | None = None,
        query_key: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        count: Callable[[str], int] | None = None,
        count_source: CountSource = "estimate",
    ) -> None:
        if spec.model_in_body and not model:
            raise ConfigError(f"{spec.name} reranker needs a model name, e.g. {spec.name}:MODEL")
        base = base_url or os.environ.get(f"{spec.env_prefix}_BASE_URL") or spec.default_base_url
        if not base:
            raise ConfigError(
                f"{spec.name} reranker needs a base URL: pass it or set {spec.env_prefix}_BASE_URL"
            )
        key = api_key or os.environ.get(f"{spec.env_prefix}_API_KEY") or None
        if spec.needs_key and key is None:
            raise ConfigError(
                f"{spec.name} reranker needs an API key: pass it or set {spec.env_prefix}_API_KEY"
            )
        check_endpoint(spec.name, base, timeout_s)
        limit = spec.max_docs if max_docs is None else max_docs
        if limit < 1:
            raise ConfigError(f"max_docs must be positive, got {limit}")
        self._spec = spec
        self._model = model
        self._base_url = base
        self._retry = retry or RetryPolicy()
        multiple = spec.batch_multiple
        self._step = limit - limit % multiple if limit >= multiple else limit
        self._billed_unit = billed_unit or spec.billed_unit
        self._query_key = query_key or spec.query_key
        self._extra_body = {**spec.extra_body, **(extra_body or {})}
        self.scale: Scale = "logits" if self._extra_body.get("raw_scores") is True else spec.scale
        self._max_input_tokens: int | None = None
        self._info_read = False
        self._count = count or estimate_tokens
        self._count_source: CountSource = count_source if count is not None else "estimate"
        self._clients = LoopClients(
            lambda: JsonClient(spec.name, base, api_key=key, timeout_s=timeout_s, retry=self._retry)
        )

    @property
    def name(self) -> str:
        return f"{self._spec.name}:{self._model or self._base_url}"

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        t0 = time.perf_counter()
        docs = list(documents)
        if not docs:
            return RerankResponse((), Usage(0, 0, 0.0, self._billed_unit, "none", 0.0, 0), scale=self.scale)
        scores: list[float] = []
        reports: list[Reported | None] = []
        client = await self._clients.get()
        if self._spec.info_path is not None and not self._info_read:
            await self._read_info(client, self._spec.info_path)
        await self._score_all(client, query, self._fitted(query, docs), scores, reports)
        usage = self._usage(query, docs, reports, time.perf_counter() - t0)
        return RerankResponse(tuple(scores), usage, scale=self.scale)

    async def _read_info(self, client: JsonClient, path: str) -> None:
        """Learn the server's limits once; a server without them keeps the configured ones."""
        self._info_read = True
        try:
            info = (await client.get(path)).body
        except RerankHttpError as exc:
            _log.warning("%s publishes no limits, keeping the configured ones: %s", self.name, exc)
            return
        batch = _number(_dig(info, ("max_client_batch_size",)))
        window = _number(_dig(info, ("max_input_length",)))
        if batch is not None and batch >= 1:
            self._step = min(self._step, int(batch))
        if window is not None and window >= 1:
            self._max_input_tokens = int(window)

    def _fitted(self, query: str, docs: list[str]) -> list[str]:
        """`docs` cut to the server's input window, the query and the pair's special tokens counted."""
        if self._max_input_tokens is None:
            return docs
        room = self._max_input_tokens - self._count(query) - _PAIR_SPECIALS
        return docs if room < 1 else [clip_tokens(doc, room, self._count) for doc in docs]

    async def _score_all(
        self,
        client: JsonClient,
        query: str,
        docs: list[str],
        scores: list[float],
        reports: list[Reported | None],
    ) -> None:
        """Score `docs` in slices of the current step, which a 413 for a batch too big may lower meanwhile."""
        start = 0
        while start < len(docs):
            part = docs[start : start + self._step]
            await self._score(client, query, part, scores, reports)
            start += len(part)

    async def _score(
        self,
        client: JsonClient,
        query: str,
        docs: list[str],
        scores: list[float],
        reports: list[Reported | None],
    ) -> None:
        """Append the scores of `docs` in input order; on 413, split or truncate where the server wants it."""
        payload: dict[str, Any] = {self._query_key: query, self._spec.documents_key: docs, **self._extra_body}
        if self._spec.model_in_body:
            payload = {"model": self._model, **payload}
        path = self._spec.path.format(model=self._model)
        try:
            reply = await client.post(path, payload, billed_as=self.name)
        except PayloadTooLargeError as exc:
            if not self._spec.split_on_413:
                raise
            truncate = self._spec.truncate_body
            if _input_too_long(exc) and truncate is not None:
                reply = await client.post(path, {**payload, **truncate}, billed_as=self.name)
            elif len(docs) > 1 and not _input_too_long(exc):
                self._step = min(self._step, len(docs) // 2)
                await self._score_all(client, query, docs, scores, reports)
                return
            else:
                raise
        scores.extend(self._parse_scores(reply.body, len(docs)))
        reports.append(self._spec.usage(reply.body, reply.headers))

    def _parse_scores(self, body: Any, n: int) -> list[float]:
        spec = self._spec
        where = f"{spec.name} {spec.path}"
        results = body if spec.results_key is None else _dig(body, (spec.results_key,))
        if not isinstance(results, list) or len(results) != n:
            raise BadResponseError(f"{where}: expected {n} results, got {_preview(results)}")
        if spec.index_key is None:
            values = [_number_or_none(item) for item in results]
            if any(v is None for v in values):
                raise BadResponseError(f"{where}: non-numeric score in {_preview(results)}")
            return [v for v in values if v is not None]
        by_index: dict[int, float] = {}
        for item in results:
            index = _dig(item, (spec.index_key,))
            score = _number_or_none(_dig(item, (spec.score_key,)))
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n or score is None:
                raise BadResponseError(f"{where}: bad result {_preview(item)} for {n} documents")
            if index in by_index:
                raise BadResponseError(f"{where}: index {index} returned twice")
            by_index[index] = score
        return [by_index[i] for i in range(n)]

    def _usage(self, query: str, docs: list[str], reports: list[Reported | None], latency_s: float) -> Usage:
        query_tokens = self._count(query)
        document_tokens = sum(self._count(doc) for doc in docs)
        if reports and all(report is not None for report in reports):
            known = [report for report in reports if report is not None]
            units = sum(report.units for report in known)
            costs = [report.cost_usd for report in known]
            cost = sum(c for c in costs if c is not None) if all(c is not None for c in costs) else None
            if self._billed_unit == "tokens":
                return Usage(0, int(units), units, "tokens", "reported", latency_s, len(docs), cost)
            return Usage(
                query_tokens,
                document_tokens,
                units,
                self._billed_unit,
                "reported",
                latency_s,
                len(docs),
                cost,
            )
        estimates: dict[BilledUnit, float] = {
            # Token-billed providers pay for the query once per document.
            "tokens": query_tokens * len(docs) + document_tokens,
            "search_units": sum(
                math.ceil(len(docs[i : i + self._step]) / 100) for i in range(0, len(docs), self._step)
            ),
            "characters": len(query) * len(docs) + sum(len(doc) for doc in docs),
            "none": 0.0,
        }
        return Usage(
            query_tokens,
            document_tokens,
            float(estimates[self._billed_unit]),
            self._billed_unit,
            self._count_source,
            latency_s,
            len(docs),
        )


# `<s> query </s></s> document </s>`: what XLM-R cross-encoders add around a pair.
_PAIR_SPECIALS = 4
# TEI: "batch size 64 > maximum allowed batch size 32" versus "`inputs` must have less than 512 tokens".
_BATCH_TOO_BIG = re.compile(r"batch size", re.IGNORECASE)
_INPUT_TOO_LONG = re.compile(r"must have less than|too long|tokens", re.IGNORECASE)


def _input_too_long(exc: PayloadTooLargeError) -> bool:
    """Whether a 413 says an input is over the model's window (not that the batch is over the server's)."""
    message = str(exc)
    return not _BATCH_TOO_BIG.search(message) and bool(_INPUT_TOO_LONG.search(message))


def _number_or_none(value: Any) -> float | None:
    """A score as sent; NaN and infinities pass, for the guard to rank last with a warning (one policy for
    every backend, `leanrank.rerank.guard`); what is not a number at all is a malformed answer."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
