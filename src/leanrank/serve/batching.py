"""Micro-batching: concurrent rerank calls to a local model merged into one forward pass.

A cross-encoder scores (query, document) pairs, so pairs of different requests fit in one batch and the
model runs once instead of once per request: under load that is most of the throughput a CPU or GPU
has. Only a backend that says it can score several queries at once (`BatchReranker.rerank_batch`) is
batched; a paid API is never merged across requests, since each request must stay one billed call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from leanrank.rerank.base import BatchReranker, RerankRequest, RerankResponse
from leanrank.rerank.batch import Waiting, answer_waiting

__all__ = ["BatchReranker", "MicroBatcher"]


class MicroBatcher:
    """A `Reranker` that collects calls for `window_s` (or until `max_documents`) and sends them as one.

    Each caller gets the response to its own request, in the order it was queued; if the merged call
    fails, every caller in it gets the error. The merged call goes out from a task whose context is a copy
    of the first caller's (its timer) or the last one's (it filled the batch), so what it notes as possibly
    billed reaches each caller through its `Waiting` (`leanrank.rerank.batch.answer_each`).
    """

    def __init__(self, inner: BatchReranker, *, window_s: float, max_documents: int) -> None:
        self.inner = inner
        self._window_s = window_s
        self._max_documents = max_documents
        self._waiting: list[Waiting] = []
        self._documents = 0
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()

    @property
    def name(self) -> str:
        return self.inner.name

    async def rerank_batch(self, requests: Sequence[RerankRequest]) -> list[RerankResponse]:
        """A batch of the caller's own (`/v1/rerank/batch`) goes to the model as it is."""
        return await self.inner.rerank_batch(requests)

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        loop = asyncio.get_running_loop()
        waiting = Waiting(query, documents, loop.create_future())
        self._waiting.append(waiting)
        self._documents += len(documents)
        if self._documents >= self._max_documents:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._window_s, self._flush)
        return await waiting.answered()

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._waiting, self._documents = self._waiting, [], 0
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._running.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._running.discard)

    async def _send(self, batch: list[Waiting]) -> None:
        await answer_waiting(self.inner, batch)
