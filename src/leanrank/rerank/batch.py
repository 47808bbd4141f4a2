"""Many (query, documents) requests in one call: what offline jobs (nightly re-ranking, evaluation) want.

A backend that scores several queries in one pass (`BatchReranker.rerank_batch`: the local engine sorts and
packs the pairs of all requests together) gets them as one call. Any other backend (the HTTP APIs: none of
the supported providers has a multi-query rerank endpoint) gets one call per request, at most
`concurrency` at a time; each call keeps its own retries, backoff and `Retry-After` handling
(`leanrank.rerank.http.RetryPolicy`), so a provider's 429 slows the batch down instead of failing it.

`Rendezvous` lets a caller that meters each request separately (one ledger record and one budget hold per
query, `leanrank.cost.meter.Meter`) still send them to the backend together. The calls go out from a task of
their own, so what each request's calls note as possibly billed (`http.billable_failures`: a dropped
attempt, a chain's failed link) is collected per request there and noted in its caller's context when its
answer arrives: each request's meter records its own, under its own id and course.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import cast

from leanrank.errors import BackendError
from leanrank.rerank.base import BatchReranker, Reranker, RerankRequest, RerankResponse
from leanrank.rerank.cache import score_scope
from leanrank.rerank.http import Billable, billable_failures, note_all

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
    reranker: Reranker,
    requests: Sequence[RerankRequest],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    billable: Sequence[Billable] | None = None,
) -> list[RerankResponse | Exception]:
    """As `rerank_many`, but each request's own failure in its place: one call to a batching backend
    answers (or fails) all of them, separate calls fail separately.

    `billable`, one per request: the calls made for each request that may still be billed
    (`http.billable_failures`) are noted into its own, as they fail, instead of the caller's context. A
    merged call is every request's: once it is over, its notes go into each list, and a meter records each
    at its own request's estimate, so together they are the one call's estimate once, as a merged call that
    answered is one record per request. Raises `ValueError` for a `concurrency` below 1 or a `billable` of
    another length than `requests`.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if billable is not None and len(billable) != len(requests):
        raise ValueError(f"{len(billable)} lists of billable calls for {len(requests)} requests")
    if not requests:
        return []
    if isinstance(reranker, BatchReranker):
        merged = Billable()
        try:
            with _noted(None if billable is None else merged):
                responses = await reranker.rerank_batch(requests)
        except Exception as exc:
            return [exc] * len(requests)
        finally:
            for noted in billable or ():
                noted.add(merged)
        if len(responses) != len(requests):
            failure = BackendError(
                f"reranker {reranker.name} answered {len(responses)} of {len(requests)} batched requests"
            )
            return [failure] * len(requests)
        return list(responses)
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> RerankResponse:
        query, documents = requests[i]
        async with slots:
            # Each call runs in a task of its own (`gather`), so the notes it sets up are its own.
            with _noted(None if billable is None else billable[i]):
                return await reranker.rerank(query, documents)

    answers = await asyncio.gather(*(one(i) for i in range(len(requests))), return_exceptions=True)
    for answer in answers:
        if isinstance(answer, BaseException) and not isinstance(answer, Exception):
            raise answer  # cancellation is not a request's failure
    return cast(list[RerankResponse | Exception], answers)


def _noted(into: Billable | None) -> AbstractContextManager[object]:
    """Possibly billed calls noted into `into` (`http.billable_failures`); None: where the caller's go."""
    return nullcontext() if into is None else billable_failures(into)


@dataclass(slots=True)
class Waiting:
    """One queued call of a batcher (this module's `Rendezvous`, the service's `MicroBatcher`): its request,
    the future its answer (or failure) is set on, and the calls made for it that their providers may still
    bill (`http.billable_failures`), filled as they fail, in the task that sends the batch."""

    query: str
    documents: Sequence[str]
    answer: asyncio.Future[RerankResponse]
    billable: Billable = field(default_factory=Billable)

    async def answered(self) -> RerankResponse:
        """The answer, raising its failure, with the calls made for it that may still be billed noted in the
        caller's context (`http.note_all`), where its meter collects them. A caller that stops waiting
        (cancelled: a client gone, the call deadline) notes those made so far, as a call of its own would have
        noted them, and the call in flight: a chain's link under way (`http.Billable.add`), else its meter
        records it (`http.Billable.unnoted`); any made for it after that are recorded nowhere.
        """
        try:
            return await self.answer
        finally:
            note_all(self.billable)


async def answer_waiting(
    reranker: Reranker, batch: Sequence[Waiting], *, concurrency: int = DEFAULT_CONCURRENCY
) -> None:
    """Answer each of `batch` with `answer_each`, its possibly billed calls into its `billable`; a caller
    that no longer waits (client disconnect) is skipped."""
    answers = await answer_each(
        reranker,
        [(w.query, w.documents) for w in batch],
        concurrency=concurrency,
        billable=[w.billable for w in batch],
    )
    for w, answer in zip(batch, answers, strict=True):
        if w.answer.done():
            continue
        if isinstance(answer, Exception):
            w.answer.set_exception(answer)
        else:
            w.answer.set_result(answer)


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
        return await waiting.answered()

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
        """In a task of its own, whose context is a copy of the last arriver's: each caller's possibly
        billed calls travel in its `Waiting`, not in that context."""
        with score_scope(self._scope):
            await answer_waiting(self.inner, batch, concurrency=self._concurrency)


class Seat:
    """One caller's place at a `Rendezvous`: a `Reranker` for exactly one call.

    `inner` is the rendezvous's backend, which its call goes to: what is sent for it is that backend's
    (`leanrank.rerank.windows.as_sent`: its configured windows and query cuts), estimated and checked as a
    call of its own would be."""

    def __init__(self, rendezvous: Rendezvous) -> None:
        self._rendezvous = rendezvous
        self._arrived = False
        self._done = False

    @property
    def inner(self) -> Reranker:
        return self._rendezvous.inner

    @property
    def name(self) -> str:
        return self.inner.name

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
