"""Reciprocal rank fusion as a pure function, with the same convention Qdrant uses inside the engine.

`score(d) = Σ_i w_i / (k + rank_i(d))`, ranks **0-based** (Cormack et al. 2009 write `1/(k + r)` with r
1-based; Qdrant's RRF starts at 0, so its top hit adds `w/k`). Keeping one convention lets the evaluation
harness fuse saved runs offline and get the engine's exact numbers.
"""

from __future__ import annotations

from collections.abc import Sequence


def rrf(
    rankings: Sequence[Sequence[str]], *, k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[str, float]]:
    """Fuse best-first id lists; returns (id, score) best first, ties broken by first appearance."""
    if k <= 0:
        raise ValueError("k must be positive")
    if weights is not None and len(weights) != len(rankings):
        raise ValueError("one weight per ranking")
    scores: dict[str, float] = {}
    for i, ranking in enumerate(rankings):
        w = 1.0 if weights is None else weights[i]
        for rank, doc in enumerate(ranking):
            scores[doc] = scores.get(doc, 0.0) + w / (k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])
