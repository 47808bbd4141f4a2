"""Limits and backpressure: refuse what is too big before any model runs, and fail fast when full.

A request over a limit gets 413 naming the setting (`serve.max_documents`, ...). Under overload a bounded
gate answers 429 at once instead of queueing without bound: a client can retry elsewhere, while a growing
queue only turns every request into a timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from leanrank.errors import QueryTooLongError
from leanrank.rerank.base import is_blank
from leanrank.rerank.providers import estimate_tokens
from leanrank.serve.errors import EmptyInputError, LimitExceededError, OverloadedError
from leanrank.serve.metrics import Metrics
from leanrank.settings import Settings


def check_rerank(settings: Settings, query: str, documents: Sequence[str], windows_per_doc: int = 1) -> int:
    """Refuse empty or oversized rerank requests; the request's estimated tokens (for the rate limits).

    Tokens are estimated at four characters each and counted the way token-billed providers bill them:
    the query once per document plus every document (a guard, not a bill: no tokenizer on the hot path).
    With `windows_per_doc` (Cohere's `max_chunks_per_doc`) each window is a document sent and billed, so
    the limits hold for documents × windows, the product Cohere bounds too.
    """
    limits = settings.serve
    if is_blank(query):
        raise EmptyInputError("the query is empty")
    if not documents:
        raise EmptyInputError("no documents to rerank")
    if len(query) > settings.max_query_chars:
        raise QueryTooLongError(
            f"the query has {len(query)} characters, the limit is {settings.max_query_chars} "
            "(LEANRANK_MAX_QUERY_CHARS)"
        )
    sent = len(documents) * windows_per_doc
    if sent > limits.max_documents:
        what = "documents" if windows_per_doc == 1 else "documents × max_chunks_per_doc"
        raise LimitExceededError("max_documents", sent, limits.max_documents, what)
    tokens = estimate_tokens(query) * sent + sum(estimate_tokens(d) for d in documents)
    if tokens > limits.max_tokens:
        raise LimitExceededError("max_tokens", tokens, limits.max_tokens, "estimated tokens")
    return tokens


class Gate:
    """At most `slots` requests at work and `queue` waiting; the next one is refused with 429."""

    def __init__(self, slots: int, queue: int, metrics: Metrics) -> None:
        self._slots = asyncio.Semaphore(slots)
        self._queue = queue
        self._waiting = 0
        self._metrics = metrics

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._slots.locked() and self._waiting >= self._queue:
            self._metrics.rejected.inc()
            raise OverloadedError("the service is at capacity; retry shortly")
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        self._metrics.in_flight.inc()
        try:
            yield
        finally:
            self._metrics.in_flight.dec()
            self._slots.release()
