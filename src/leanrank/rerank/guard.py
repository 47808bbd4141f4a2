"""What every backend needs before and after scoring, done once: blank documents and non-finite scores.

A document that is empty, or only whitespace and invisible characters (`base.is_blank`), has nothing to
score; sent to a paid API it costs money, and some providers reject the whole request for it. It is never
sent: it gets `UNSCORED` (ranked last) and the rest are scored; a request of blank documents only makes no
call at all. A score that is NaN or
infinite (a local model in half precision can emit them) is one policy everywhere: ranked last as
`UNSCORED`, with a warning in the usage record, so no sort misorders and no wire ever carries `null`.
A query or document that is not text (a lone surrogate: `leanrank.checks`) is the caller's error,
`InputError` naming it, before any backend is called: no encoder or HTTP client takes one.
`catalog.reranker` puts every backend it builds behind this guard, and so do the entry points that take a
`Reranker` object (the service, the pipeline, the LangChain and LlamaIndex adapters).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace

from leanrank.checks import check_text, check_texts
from leanrank.errors import BackendError
from leanrank.rerank.base import (
    UNSCORED,
    BatchReranker,
    Reranker,
    RerankRequest,
    RerankResponse,
    Usage,
    is_blank,
)


def _kept(query: str, documents: Sequence[str], where: str = "") -> list[int]:
    """Indexes of the documents to send; `InputError` when the query or a document is not text (`where`
    prefixes the name: a batch's entry)."""
    check_text(query, f"{where}the query")
    check_texts(documents, f"{where}document")
    return [i for i, doc in enumerate(documents) if not is_blank(doc)]


def _blank_response(n: int, latency_s: float) -> RerankResponse:
    usage = replace(Usage.free(n, latency_s), warnings=(f"{n} blank documents ranked last, not sent",))
    return RerankResponse((UNSCORED,) * n, usage)


def _merged(response: RerankResponse, n: int, kept: list[int], backend: str) -> RerankResponse:
    """`response` to the kept documents spread back over all `n`; blank and non-finite ones `UNSCORED`."""
    if len(response.scores) != len(kept):
        raise BackendError(
            f"reranker {backend} returned {len(response.scores)} scores for {len(kept)} documents"
        )
    scores = [UNSCORED] * n
    bad = 0
    for i, score in zip(kept, response.scores, strict=True):
        if math.isfinite(score):
            scores[i] = score
        else:
            bad += 1
    warnings = list(response.usage.warnings)
    if n > len(kept):
        warnings.append(f"{n - len(kept)} blank documents ranked last, not sent")
    if bad:
        warnings.append(f"{bad} non-finite scores from {response.served_by or backend} ranked last")
    usage = replace(response.usage, warnings=tuple(warnings))
    return replace(response, scores=tuple(scores), usage=usage)


class GuardedReranker:
    """`inner` behind the guard (see the module docstring); same name, so ledgers and prices are unchanged."""

    def __init__(self, inner: Reranker) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        t0 = time.perf_counter()
        kept = _kept(query, documents)
        if not kept and documents:
            return _blank_response(len(documents), time.perf_counter() - t0)
        sent = documents if len(kept) == len(documents) else [documents[i] for i in kept]
        response = await self.inner.rerank(query, sent)
        return _merged(response, len(documents), kept, self.name)


class GuardedBatchReranker(GuardedReranker):
    """The guard over a backend that also scores many requests in one pass (micro-batching keeps working)."""

    def __init__(self, inner: BatchReranker) -> None:
        super().__init__(inner)
        self._batch = inner.rerank_batch

    async def rerank_batch(self, requests: Sequence[RerankRequest]) -> list[RerankResponse]:
        t0 = time.perf_counter()
        kept = [_kept(query, documents, f"request {j}: ") for j, (query, documents) in enumerate(requests)]
        work = [
            (query, [documents[i] for i in keep])
            for (query, documents), keep in zip(requests, kept, strict=True)
            if keep or not documents
        ]
        done = await self._batch(work) if work else []
        if len(done) != len(work):
            raise BackendError(f"reranker {self.name} answered {len(done)} of {len(work)} batched requests")
        answers = iter(done)
        latency = time.perf_counter() - t0
        responses = []
        for (_, documents), keep in zip(requests, kept, strict=True):
            if not keep and documents:
                responses.append(_blank_response(len(documents), latency))
            else:
                responses.append(_merged(next(answers), len(documents), keep, self.name))
        return responses


def guard(inner: Reranker) -> Reranker:
    """`inner` behind the guard; one that batches (`rerank_batch`) stays batchable."""
    if isinstance(inner, GuardedReranker):
        return inner
    if isinstance(inner, BatchReranker):
        return GuardedBatchReranker(inner)
    return GuardedReranker(inner)
