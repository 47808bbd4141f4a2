"""The `Reranker` contract: scores for every input document, in input order, and always a usage record.

The usage record is what the cost ledger bills from, so a backend that cannot report usage must still say
how it counted (`count_source`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

BilledUnit = Literal["tokens", "search_units", "characters", "none"]
CountSource = Literal["reported", "tokenizer", "estimate", "none"]


@dataclass(frozen=True, slots=True)
class Usage:
    """What one rerank call consumed and, where known, cost."""

    query_tokens: int
    document_tokens: int
    billed_units: float
    billed_unit: BilledUnit
    count_source: CountSource
    latency_s: float
    documents: int
    cost_usd: float | None = None
    cache_hits: int = 0

    @property
    def total_tokens(self) -> int:
        """Tokens the call consumed; providers that report one total put it all in `document_tokens`."""
        return self.query_tokens + self.document_tokens

    @classmethod
    def free(cls, documents: int, latency_s: float) -> Usage:
        """Usage of a stage that sends nothing anywhere (identity, cache hit)."""
        return cls(0, 0, 0.0, "none", "none", latency_s, documents, 0.0)


@dataclass(frozen=True, slots=True)
class RerankResponse:
    """`scores[i]` belongs to `documents[i]` of the request; higher is better.

    `served_by` names the backend that produced the scores when a wrapper chose among several (fallback
    chains, budgets); `failed` lists the ones tried first, with why.
    """

    scores: tuple[float, ...]
    usage: Usage
    served_by: str | None = None
    failed: tuple[str, ...] = ()


@runtime_checkable
class Reranker(Protocol):
    """Async so network backends and local models share one pipeline without blocking the event loop."""

    @property
    def name(self) -> str: ...

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse: ...
