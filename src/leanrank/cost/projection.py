"""`leanrank costs project`: monthly cost of a rerank volume at every priced API, and where a GPU wins.

With V rerank calls a month of n candidates each (q query tokens, t tokens per candidate):

- an API costs V × c, with c the price of one call under its billing rule: ceil(n / 100) search units,
  or q × n + n × t tokens;
- one always-on GPU costs G = $/hour × 730 a month and serves at most C = pairs/s × 3600 × 730 / n calls;
- the GPU is cheaper above V* = G / c. It exists only when V* ≤ C, i.e. when the API's price per call is
  above the GPU's at full load (G / C): past C every added GPU costs G and absorbs at most C × c of API
  spending, which is less than G whenever V* > C.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from leanrank.cost.ledger import CostLedger
from leanrank.cost.period import Period
from leanrank.cost.pricing import HOURS_PER_MONTH, GpuPrice, ModelPrice
from leanrank.errors import InputError


@dataclass(frozen=True, slots=True)
class Volume:
    """Rerank traffic: calls per course and month, and the shape of one call. `unconfirmed_calls` counts the
    measured calls recorded as possibly billed without an answer used (0 for an assumed volume)."""

    queries_per_course_month: float
    courses: int
    candidates: float
    tokens_per_candidate: float
    query_tokens: float
    unconfirmed_calls: int = 0

    @property
    def queries_per_month(self) -> float:
        return self.queries_per_course_month * self.courses


def measured_volume(ledger: CostLedger, period: Period) -> Volume:
    """The volume the ledger recorded over `period`, scaled to a month.

    Each recorded call counts as one query; candidates are the documents actually sent (cache hits left
    out). Providers that report one token total put the query's share into the documents' tokens, which
    leaves the priced total unchanged. A call recorded as possibly billed (a timeout, an unusable answer, a
    client gone) counts too, at the tokens of its estimate: its provider may bill it as a call
    (`costs project` says how many there were).
    """
    rows = ledger.totals("course", period)
    calls = sum(r.calls for r in rows)
    if not calls:
        raise InputError(f"no rerank calls recorded in {period.label}")
    sent = sum(r.documents - r.cache_hits for r in rows)
    return Volume(
        queries_per_course_month=calls / len(rows) / period.months,
        courses=len(rows),
        candidates=sent / calls,
        tokens_per_candidate=sum(r.document_tokens for r in rows) / sent if sent else 0.0,
        query_tokens=sum(r.query_tokens for r in rows) / calls,
        unconfirmed_calls=sum(r.unconfirmed for r in rows),
    )


@dataclass(frozen=True, slots=True)
class ApiCost:
    """One API's price of the volume: per call, per course and month, per month."""

    price: ModelPrice
    per_query: float
    per_course_month: float
    per_month: float


def api_cost(price: ModelPrice, volume: Volume) -> ApiCost:
    per_query = price.cost_for(
        volume.query_tokens, volume.candidates, volume.candidates * volume.tokens_per_candidate
    )
    return ApiCost(
        price, per_query, per_query * volume.queries_per_course_month, per_query * volume.queries_per_month
    )


def gpu_capacity(gpu: GpuPrice, candidates: float) -> float:
    """Calls a month one GPU serves flat out: pairs/s × 3600 × 730 / candidates."""
    return gpu.pairs_per_second * 3600 * HOURS_PER_MONTH / max(candidates, 1.0)


def gpu_month_cost(gpu: GpuPrice, queries_per_month: float, candidates: float) -> float:
    """As many always-on GPUs as the volume needs (at least one), for a month."""
    return max(1, math.ceil(queries_per_month / gpu_capacity(gpu, candidates))) * gpu.month_usd


@dataclass(frozen=True, slots=True)
class Crossover:
    """Monthly calls above which `gpu` is cheaper than `api` (None: never), and the same in courses."""

    api: str
    gpu: str
    queries_per_month: float | None
    courses: float | None


def crossover(api: ApiCost, gpu: GpuPrice, volume: Volume) -> Crossover:
    """V* = G / c when one GPU can serve V* calls; see the module docstring."""
    if api.per_query <= 0:
        return Crossover(api.price.key, gpu.key, None, None)
    calls = gpu.month_usd / api.per_query
    if calls > gpu_capacity(gpu, volume.candidates):
        return Crossover(api.price.key, gpu.key, None, None)
    per_course = volume.queries_per_course_month
    return Crossover(api.price.key, gpu.key, calls, calls / per_course if per_course > 0 else None)


@dataclass(frozen=True, slots=True)
class Projection:
    volume: Volume
    apis: tuple[ApiCost, ...]
    gpus: tuple[GpuPrice, ...]
    crossovers: tuple[Crossover, ...]


def project(prices: Iterable[ModelPrice], gpus: Iterable[GpuPrice], volume: Volume) -> Projection:
    """Every priced API, cheapest first, and each API's crossover with each GPU."""
    apis = tuple(sorted((api_cost(p, volume) for p in prices), key=lambda a: (a.per_month, a.price.key)))
    gpu_list = tuple(gpus)
    crossovers = tuple(crossover(a, g, volume) for a in apis for g in gpu_list)
    return Projection(volume, apis, gpu_list, crossovers)
