"""The rerank step: hand the candidates to a `Reranker`, keep the best `top_k`, record every stage's score."""

from __future__ import annotations

from collections.abc import Sequence

from leanrank.errors import BackendError
from leanrank.index.base import Candidate
from leanrank.rerank.base import Reranker, Usage
from leanrank.types import Hit


def first_stage_scores(cand: Candidate) -> dict[str, float]:
    """The first stage's view of a candidate; lists it was absent from are left out."""
    scores = {"fusion": cand.fused}
    if cand.dense is not None:
        scores["dense"] = cand.dense
    if cand.bm25 is not None:
        scores["bm25"] = cand.bm25
    return scores


class RerankStage:
    """Applies one reranker to the candidates; stable for ties, so equal scores keep the fusion order."""

    def __init__(self, reranker: Reranker, top_k: int) -> None:
        self.reranker = reranker
        self.top_k = top_k

    async def run(
        self, query: str, candidates: Sequence[Candidate], *, top_k: int | None = None
    ) -> tuple[list[Hit], Usage]:
        response = await self.reranker.rerank(query, [c.chunk.text for c in candidates])
        if len(response.scores) != len(candidates):
            raise BackendError(
                f"reranker {self.reranker.name} returned {len(response.scores)} scores "
                f"for {len(candidates)} documents"
            )
        order = sorted(range(len(candidates)), key=lambda i: -response.scores[i])
        hits = []
        for i in order[: top_k or self.top_k]:
            cand = candidates[i]
            score = response.scores[i]
            hits.append(Hit(cand.chunk_id, cand.chunk, score, {**first_stage_scores(cand), "rerank": score}))
        return hits, response.usage
