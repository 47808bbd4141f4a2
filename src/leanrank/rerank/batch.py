"""Many (query, documents) requests in one call: what offline jobs (nightly re-ranking, evaluation) want.

A backend that scores several queries in one pass (`BatchReranker.rerank_batch`: the local engine sorts and
packs the pairs of all requests together) gets them as one call. Any other backend (the HTTP APIs: none of
the supported providers has a multi-query rerank endpoint) gets one call per request, at most
`concurrency` at a time; each call keeps its own retries, backoff and `Retry-After` handling
(`leanrank.rerank.http.RetryPolicy`), so a provider's 429 slows the batch down instead of failing it.

`Rendezvous` lets a caller that meters each request separately (one ledger record and one budget hold per
query, `leanrank.cost.meter.Meter`) still send them to the backend together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from leanrank.errors import BackendError
from leanrank.rerank.base import BatchReranker, Reranker, RerankRequest, RerankResponse
from leanrank.rerank.cache import score_scope

DEFAULT_CONCURRENCY = 4
"""Concurrent calls to a backend without a batch API: enough to hide a round trip, few enough to stay under
the per-key request rates the providers publish (Cohere's trial keys: 10 rerank calls a minute)."""


async def rerank_many(
    reranker: Reranker, requests: Sequence[RerankRequest], *, concurrency: int = DEFAULT_CONCURRENCY
) -> list[RerankResponse]:
    """One response per request, in order, each with its own usage.

    Raises what the backend raises: for concurrent calls, the failure of the first request (in request
    order) that failed, once every call is over; `ValueError` for a `concurrency` below 1.
    """
    answers = await answer_each(reranker, requests, concurrency=concurrency)
    for answer in answers:
        if isinstance(answer, Exception):
            raise answer
    return cast(list[RerankResponse], answers)


async def answer_each(
    reranker: Reranker, requests: Sequence[RerankRequest], *, concurrency: int = DEFAULT_CONCURRENCY
) -> list[RerankResponse | Exception]:
    """As `rerank_many`, but each request's own failure in its place: one call to a batching backend
    answers (or fails) all of them, separate calls fail separately."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if not requests:
        return []
    if isinstance(reranker, BatchReranker):
        try:
            responses = await reranker.rerank_batch(requests)
        except Exception as exc:
            return [exc] * len(requests)
        if len(responses) != len(requests):
            failure = BackendError(
                f"reranker {reranker.name} answered {len(responses)} of {len(requests)} batched requests"
            )
            return [failure] * len(requests)
        return list(responses)
    slots = asyncio.Semaphore(concurrency)

    async def one(query: str, documents: Sequence[str]) -> RerankResponse:
        async with slots:
            return await reranker.rerank(query, documents)

    answers = await asyncio.gather(*(one(q, docs) for q, docs in requests), return_exceptions=True)
    for answer in answers:
        if isinstance(answer, BaseException) and not isinstance(answer, Exception):
            raise answer  # cancellation is not a request's failure
    return cast(list[RerankResponse | Exception], answers)


@dataclass(slots=True)
class Waiting:
    """One queued call of a batcher (this module's `Rendezvous`, the service's `MicroBatcher`)."""

    query: str
    documents: Sequence[str]
    answer: asyncio.Future[RerankResponse]


class Rendezvous:
    """Collects the calls of `expected` callers and sends them together with `rerank_many`.

    Each caller reranks through its own `seat()` (a `Reranker` under the inner backend's name, so prices
    and ledgers see that backend) and, once its call is over, says `done()` on it: a caller that never
    reached the backend (a budget cap chose the fallback, its hold was refused) is then no longer waited
    for. A batch goes out once every caller still expected has arrived; a merged call that fails fails each
    of its callers, separate calls (a backend without a batch API) fail only their own. `scope` is the
    score cache's tenant scope for the merged call (`leanrank.rerank.cache.score_scope`).
    """

    def __init__(
        self, inner: Reranker, expected: int, *, scope: str = "", concurrency: int = DEFAULT_CONCURRENCY
    ) -> None:
        self.inner = inner
        self._expected = expected
        self._scope = scope
        self._concurrency = concurrency
        self._waiting: list[Waiting] = []
        self._running: set[asyncio.Task[None]] = set()

    def seat(self) -> Seat:
        return Seat(self)

    async def _arrive(self, query: str, documents: Sequence[str]) -> RerankResponse:
        waiting = Waiting(query, documents, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        self._flush_if_complete()
        return await waiting.answer

    def _leave(self) -> None:
        self._expected -= 1
        self._flush_if_complete()

    def _flush_if_complete(self) -> None:
        if not self._waiting or len(self._waiting) < self._expected:
            return
        batch, self._waiting = self._waiting, []
        self._expected -= len(batch)
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._running.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._running.discard)

    async def _send(self, batch: list[Waiting]) -> None:
        with score_scope(self._scope):
            answers = await answer_each(
                self.inner, [(w.query, w.documents) for w in batch], concurrency=self._concurrency
            )
        for w, answer in zip(batch, answers, strict=True):
            if w.answer.done():  # the caller may have gone (client disconnect)
                continue
            if isinstance(answer, Exception):
                w.answer.set_exception(answer)
            else:
                w.answer.set_result(answer)


class Seat:
    """One caller's place at a `Rendezvous`: a `Reranker` for exactly one call."""

    def __init__(self, rendezvous: Rendezvous) -> None:
        self._rendezvous = rendezvous
        self._arrived = False
        self._done = False

    @property
    def name(self) -> str:
        return self._rendezvous.inner.name

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        if self._arrived or self._done:
            raise RuntimeError("a seat serves one call, before it is done")
        self._arrived = True
        return await self._rendezvous._arrive(query, documents)

    def done(self) -> None:
        """The caller's call is over (served, refused or failed); idempotent."""
        if not self._done and not self._arrived:
            self._rendezvous._leave()
        self._done = True
