"""The `Reranker` contract: scores for every input document, in input order, and always a usage record.

The usage record is what the cost ledger bills from, so a backend that cannot report usage must still say
how it counted (`count_source`).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeGuard, runtime_checkable

BilledUnit = Literal["tokens", "search_units", "characters", "none"]
CountSource = Literal["reported", "tokenizer", "estimate", "none"]
# What a score means. "logits": a cross-encoder's raw output (any real number); "probabilities": in [0, 1]
# (what every hosted API answers); "rank": a position turned into a number (identity), not a relevance.
Scale = Literal["logits", "probabilities", "rank"]

UNSCORED = -math.inf
"""The score of a document nothing was scored for (blank text, a non-finite model output): ranked last."""
# On a logit wire `UNSCORED` becomes this: below any cross-encoder's output, and sigmoid(-1e3) == 0.0.
_LOGIT_FLOOR = -1000.0
_PROBABILITY_EPS = 1e-12


def is_blank(text: str) -> bool:
    """Whether `text` has nothing to score: only whitespace and invisible format characters (Unicode Cf:
    zero-width space and joiners, word joiner, BOM, soft hyphen). The one test of blankness: the guard never
    sends such a document, the gateway's cascade sets it aside, and a query of it is empty."""
    stripped = text.strip()  # str.strip drops exactly what str.isspace calls whitespace
    if stripped and unicodedata.category(stripped[0]) != "Cf":
        return False  # the usual case, decided by one character: every document of every call asks
    return all(ch.isspace() or unicodedata.category(ch) == "Cf" for ch in stripped)


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
    warnings: tuple[str, ...] = ()
    output_tokens: int = 0  # generated tokens (an LLM judge's answers), priced at the entry's output_price

    @property
    def total_tokens(self) -> int:
        """Tokens the call consumed; providers that report one total put it all in `document_tokens`."""
        return self.query_tokens + self.document_tokens

    @classmethod
    def free(cls, documents: int, latency_s: float) -> Usage:
        """Usage of a stage that sends nothing anywhere (identity, cache hit)."""
        return cls(0, 0, 0.0, "none", "none", latency_s, documents, 0.0)


def usage_json(usage: Usage) -> dict[str, Any]:
    """The usage record in the CLI's and the service's JSON shape (`null` where a field does not apply); here
    rather than at either edge, so neither depends on the other."""
    return {
        "search_units": usage.billed_units if usage.billed_unit == "search_units" else None,
        "total_tokens": usage.total_tokens,
        "query_tokens": usage.query_tokens,
        "document_tokens": usage.document_tokens,
        "billed_units": usage.billed_units,
        "billed_unit": usage.billed_unit,
        "cost_usd": usage.cost_usd,
        "source": usage.count_source,
        "documents": usage.documents,
        "latency_s": round(usage.latency_s, 6),
        "warnings": list(usage.warnings),
    }


@dataclass(frozen=True, slots=True)
class RerankResponse:
    """`scores[i]` belongs to `documents[i]` of the request; higher is better.

    `served_by` names the backend that produced the scores when a wrapper chose among several (fallback
    chains, budgets); `failed` lists the ones tried first, with why. `scale` is declared by the backend
    that scored (never guessed from the values); wire formats convert from it. A score may be `UNSCORED`.
    """

    scores: tuple[float, ...]
    usage: Usage
    served_by: str | None = None
    failed: tuple[str, ...] = ()
    scale: Scale = "probabilities"


@runtime_checkable
class Reranker(Protocol):
    """Async so network backends and local models share one pipeline without blocking the event loop."""

    @property
    def name(self) -> str: ...

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse: ...


def is_reranker(value: object) -> TypeGuard[Reranker]:
    """`isinstance(value, Reranker)` at a fraction of its cost (a runtime `Protocol` check walks the class's
    attributes, microseconds each): for walks through a policy's wrappers on every call."""
    return callable(getattr(value, "rerank", None)) and hasattr(value, "name")


RerankRequest = tuple[str, Sequence[str]]


@runtime_checkable
class BatchReranker(Protocol):
    """A `Reranker` that also scores many (query, documents) requests in one call, each with its usage."""

    @property
    def name(self) -> str: ...

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse: ...

    async def rerank_batch(self, requests: Sequence[RerankRequest]) -> list[RerankResponse]: ...


def rank_order(scores: Sequence[float], top_n: int | None = None) -> list[int]:
    """Indices best first, cut to `top_n`; ties keep input order, and NaN ranks with `UNSCORED` (last)."""
    return sorted(range(len(scores)), key=lambda i: -scores[i] if scores[i] == scores[i] else math.inf)[
        :top_n
    ]


def as_probabilities(scores: Sequence[float], scale: Scale) -> list[float]:
    """Scores for a 0–1 wire: logits through a sigmoid, the others as they are but never below 0 (a document
    the gateway held back under a forwarded 0 is scored below it, `leanrank.cascade.request.merge`);
    `UNSCORED` (or NaN) is 0.0."""
    out = []
    for s in scores:
        if not math.isfinite(s):
            out.append(1.0 if s == math.inf else 0.0)
        elif scale == "logits":
            out.append(1.0 / (1.0 + math.exp(-max(min(s, 500.0), -500.0))))
        else:
            out.append(max(s, 0.0))
    return out


def as_logits(scores: Sequence[float], scale: Scale) -> list[float]:
    """Finite raw scores: probabilities through the logit function (clamped off 0 and 1), logits and ranks
    as they are; `UNSCORED` (or NaN) is `_LOGIT_FLOOR`."""
    out = []
    for s in scores:
        if not math.isfinite(s):
            out.append(-_LOGIT_FLOOR if s == math.inf else _LOGIT_FLOOR)
        elif scale == "probabilities":
            p = min(max(s, _PROBABILITY_EPS), 1.0 - _PROBABILITY_EPS)
            out.append(math.log(p / (1.0 - p)))
        else:
            out.append(s)
    return out


def as_finite(scores: Sequence[float], scale: Scale) -> list[float]:
    """Scores on their own scale, JSON-safe: `UNSCORED` becomes the scale's lowest value."""
    return as_logits(scores, scale) if scale == "logits" else as_probabilities(scores, scale)
