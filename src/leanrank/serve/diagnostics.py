"""The reranker-embedder agreement of the searches this process served, per course, for `GET /v1/usage`.

A search reports the share of the reranked first 10 that the first stage ranked within its first 50
(`Pipeline` `SearchResult.agreement`). Kept in memory, since it is a diagnostic and not a bill: it starts
afresh with the process and each replica counts its own searches.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Agreement:
    """`searches` that reranked, and their mean agreement in [0, 1]."""

    searches: int
    mean: float


class AgreementTally:
    """Running sums per course; searches that reranked nothing (identity) are not counted."""

    def __init__(self) -> None:
        self._sums: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def add(self, course: str, agreement: float | None) -> None:
        if agreement is None:
            return
        with self._lock:
            n, total = self._sums.get(course, (0, 0.0))
            self._sums[course] = (n + 1, total + agreement)

    def by_course(self) -> dict[str, Agreement]:
        with self._lock:
            return {c: Agreement(n, total / n) for c, (n, total) in sorted(self._sums.items())}
