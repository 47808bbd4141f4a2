"""Reciprocal rank fusion as a pure function, with exactly the numbers Qdrant computes inside the engine.

Unweighted, `score(d) = Σ_i 1 / (k + rank_i(d))` with ranks **0-based** (Cormack et al. 2009 write
`1/(k + r)` with r 1-based; Qdrant's top hit adds `1/k`). Qdrant weights a list by stretching its ranks, not
by scaling its term: a list of weight `w` adds `1 / ((rank + 1) / w + k - 1)`, so `w = 0.5` scores rank r
like rank 2r + 1 of an unweighted list, and `w = 0` drops the list. Keeping the engine's formula lets the
evaluation harness fuse saved runs offline and get the engine's exact numbers.
"""

from __future__ import annotations

from collections.abc import Sequence


def rrf_term(rank: int, k: int, weight: float = 1.0) -> float:
    """What one list adds for a hit at 0-based `rank`: `1 / ((rank + 1) / weight + k - 1)`."""
    if weight == 0:
        return 0.0
    return 1.0 / ((rank + 1) / weight + k - 1)


def rrf(
    rankings: Sequence[Sequence[str]], *, k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[str, float]]:
    """Fuse best-first id lists; returns (id, score) best first, ties broken by first appearance."""
    if k <= 0:
        raise ValueError("k must be positive")
    if weights is not None and len(weights) != len(rankings):
        raise ValueError("one weight per ranking")
    if weights is not None and any(w < 0 for w in weights):
        raise ValueError("weights must not be negative")
    scores: dict[str, float] = {}
    for i, ranking in enumerate(rankings):
        w = 1.0 if weights is None else weights[i]
        for rank, doc in enumerate(ranking):
            scores[doc] = scores.get(doc, 0.0) + rrf_term(rank, k, w)
    return sorted(scores.items(), key=lambda item: -item[1])
