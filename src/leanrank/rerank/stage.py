"""The rerank step: hand the candidates to a `Reranker`, keep the best `top_k`, record every stage's score.

With a meter (the cost ledger, prices and budgets) the call is checked against the budget first, and
written to the ledger before its hits are returned; without one the reranker is called directly.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from leanrank.errors import BackendError
from leanrank.index.base import Candidate
from leanrank.rerank.base import Reranker, RerankResponse, Usage, as_finite, rank_order
from leanrank.types import Hit

if TYPE_CHECKING:
    from leanrank.cost.meter import Meter


def first_stage_scores(cand: Candidate) -> dict[str, float]:
    """The first stage's view of a candidate; lists it was absent from are left out."""
    scores = {"fusion": cand.fused}
    if cand.dense is not None:
        scores["dense"] = cand.dense
    if cand.bm25 is not None:
        scores["bm25"] = cand.bm25
    return scores


@dataclass(frozen=True, slots=True)
class StageResult:
    """Hits best first; who served them (a fallback or the budget may have chosen), at what cost."""

    hits: list[Hit]
    usage: Usage
    served_by: str
    cost_usd: float | None
    budget: str
    failed: tuple[str, ...]


class RerankStage:
    """Applies one reranker to the candidates; stable for ties, so equal scores keep the fusion order."""

    def __init__(
        self,
        reranker: Reranker,
        top_k: int,
        *,
        meter: Meter | None = None,
        fallback: Reranker | None = None,
    ) -> None:
        self.reranker = reranker
        self.top_k = top_k
        self.meter = meter
        self.fallback = fallback

    async def run(
        self,
        query: str,
        candidates: Sequence[Candidate],
        *,
        top_k: int | None = None,
        request_id: str | None = None,
        course: str | None = None,
        tenant: str | None = None,
        windows: Sequence[tuple[int, int]] | None = None,
    ) -> StageResult:
        """Rerank `candidates`; with `windows` (offsets into each chunk's text) only those parts are sent."""
        if windows is not None and len(windows) != len(candidates):
            raise ValueError(f"{len(windows)} windows for {len(candidates)} candidates")
        texts = [
            c.chunk.text if windows is None else c.chunk.text[windows[i][0] : windows[i][1]]
            for i, c in enumerate(candidates)
        ]
        budget = "ok"
        cost: float | None
        if self.meter is None:
            response: RerankResponse = await self.reranker.rerank(query, texts)
            cost = response.usage.cost_usd
        else:
            metered = await self.meter.rerank(
                self.reranker,
                query,
                texts,
                request_id=request_id or uuid.uuid4().hex,
                course=course,
                tenant=tenant,
                fallback=self.fallback,
            )
            response, cost, budget = metered.response, metered.cost_usd, metered.budget_state.level
        if len(response.scores) != len(candidates):
            raise BackendError(
                f"reranker {self.reranker.name} returned {len(response.scores)} scores "
                f"for {len(candidates)} documents"
            )
        # Unscored documents (blank, non-finite) rank last and carry their scale's lowest finite score.
        finite = as_finite(response.scores, response.scale)
        hits = []
        for i in rank_order(response.scores, top_k or self.top_k):
            cand = candidates[i]
            score = finite[i]
            sent = None if windows is None or windows[i] == (0, len(cand.chunk.text)) else windows[i]
            scores = {**first_stage_scores(cand), "rerank": score}
            hits.append(Hit(cand.chunk_id, cand.chunk, score, scores, sent))
        served_by = response.served_by or self.reranker.name
        return StageResult(hits, response.usage, served_by, cost, budget, response.failed)
