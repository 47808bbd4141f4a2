"""A chain of rerankers tried in order: a paid API first, a local model when it fails.

Only backend failures (timeouts, 5xx and 429 after retries, auth, bad responses) move on to the next
backend; a caller's own mistake would fail the same way everywhere, so it is raised at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from leanrank.errors import BackendError, ConfigError
from leanrank.rerank.base import Reranker, RerankResponse
from leanrank.rerank.http import MAYBE_BILLED

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
        unconfirmed: list[str] = []
        for backend in self.chain[:-1]:
            try:
                return self._served(await backend.rerank(query, documents), backend, failed, unconfirmed)
            except BackendError as exc:
                _log.warning("reranker %s failed, falling back: %s", backend.name, exc)
                failed.append(f"{backend.name}: {exc}")
                if isinstance(exc, MAYBE_BILLED):
                    unconfirmed.append(backend.name)
        last = self.chain[-1]
        return self._served(await last.rerank(query, documents), last, failed, unconfirmed)

    @staticmethod
    def _served(
        response: RerankResponse, backend: Reranker, failed: list[str], unconfirmed: list[str]
    ) -> RerankResponse:
        return replace(
            response,
            served_by=response.served_by or backend.name,
            failed=(*failed, *response.failed),
            unconfirmed=(*unconfirmed, *response.unconfirmed),
        )
