"""Maximal marginal relevance: an order that trades relevance against repeating what is already chosen.

Carbonell & Goldstein (1998), "The use of MMR, diversity-based reranking for reordering documents and
producing summaries", SIGIR '98, eq. 1: pick next the candidate maximising

    λ · Sim1(d, q) − (1 − λ) · max_{d' already picked} Sim2(d, d')

Here Sim1 is the first stage's fused score divided by the top one (RRF scores are rank based, so this is
a relevance in (0, 1] that does not depend on which lists a chunk was in), and Sim2 the cosine of the
chunks' dense vectors. λ = 1 is the relevance order; λ = 0 picks the candidate least like the ones before.
Why before the paid stage: the cascade's depth cut then keeps as many candidates as before, but fewer of them
are near-copies of one lesson, so more lessons reach the reranker (and, with `identity`, the first hits).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.floating]


def mmr_order(relevance: npt.ArrayLike, vectors: Vectors, lam: float) -> list[int]:
    """Indices of all candidates in MMR order (Carbonell & Goldstein 1998, eq. 1; see the module docstring).

    `relevance`: shape (n,), higher is better; `vectors`: shape (n, dim), need not be normalised (cosine
    is taken). Ties go to the earlier index, so λ = 1 keeps the input order of equal relevances.
    Raises `ValueError` for λ outside [0, 1] or mismatched shapes.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"MMR λ must be in [0, 1], got {lam}")
    rel = np.asarray(relevance, dtype=np.float64)
    rows = np.asarray(vectors, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] != rel.shape[0]:
        raise ValueError(f"{rel.shape[0]} relevances for vectors of shape {rows.shape}")
    n = rel.shape[0]
    if n == 0:
        return []
    unit = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T
    picked: list[int] = []
    left = np.ones(n, dtype=bool)
    redundancy = np.full(n, -np.inf)  # max cosine to anything picked; nothing picked yet
    for _ in range(n):
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        gain = np.where(left, lam * rel - (1.0 - lam) * penalty, -np.inf)
        best = int(np.argmax(gain))  # argmax returns the first of equal values
        picked.append(best)
        left[best] = False
        redundancy = np.maximum(redundancy, sim[best])
    return picked
