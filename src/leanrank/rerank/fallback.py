"""A chain of rerankers tried in order: a paid API first, a local model when it fails.

Only backend failures (timeouts, 5xx and 429 after retries, auth, bad responses) move on to the next
backend; a caller's own mistake would fail the same way everywhere, so it is raised at once.

A link whose call failed in a way its provider may still bill (`http.maybe_billed`: a timeout, an unusable
answer, a caller gone) is noted for the meter inside `http.billable_failures`, whether a later link served or
the chain failed as a whole; unless the HTTP layer noted that link's attempts itself as a cancellation cut
them off (`http.Billable.unnoted`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from leanrank.errors import BackendError, ConfigError
from leanrank.rerank.base import Reranker, RerankResponse
from leanrank.rerank.http import note_failure, under_way

_log = logging.getLogger(__name__)


class FallbackReranker:
    """Scores from the first backend that answers; the response says which one did and what failed before."""

    def __init__(self, chain: Sequence[Reranker]) -> None:
        if len(chain) < 2:
            raise ConfigError("a fallback chain needs at least two rerankers")
        self.chain = tuple(chain)

    @property
    def name(self) -> str:
        return " | ".join(r.name for r in self.chain)

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        failed: list[str] = []
        for backend in self.chain[:-1]:
            try:
                return self._served(await _tried(backend, query, documents), backend, failed)
            except BackendError as exc:
                _log.warning("reranker %s failed, falling back: %s", backend.name, exc)
                failed.append(f"{backend.name}: {exc}")
        last = self.chain[-1]
        return self._served(await _tried(last, query, documents), last, failed)

    @staticmethod
    def _served(response: RerankResponse, backend: Reranker, failed: list[str]) -> RerankResponse:
        return replace(
            response, served_by=response.served_by or backend.name, failed=(*failed, *response.failed)
        )


async def _tried(backend: Reranker, query: str, documents: Sequence[str]) -> RerankResponse:
    """`backend`'s answer; a failure its provider may still bill is noted first (`http.note_failure`). The
    link is noted as in flight while it works (`http.under_way`): a caller in another task that stops
    waiting (a batch's seat) counts it."""
    with under_way(backend.name):
        try:
            return await backend.rerank(query, documents)
        except BaseException as exc:
            note_failure(backend.name, exc)
            raise
