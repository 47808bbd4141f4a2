"""The offline default reranker: keeps the first-stage (fusion) order and costs nothing."""

from __future__ import annotations

import time
from collections.abc import Sequence

from leanrank.rerank.base import RerankResponse, Usage


class IdentityReranker:
    """Scores `1 - i/n` for the i-th input, so the order handed in is the order handed back.

    Their scale is "rank": they depend on the input order, so no cache may keep them.
    """

    name = "identity"

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        t0 = time.perf_counter()
        n = len(documents)
        scores = tuple(1.0 - i / n for i in range(n))
        return RerankResponse(scores, Usage.free(n, time.perf_counter() - t0), scale="rank")
