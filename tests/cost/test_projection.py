from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from leanrank.cost.ledger import Ledger
from leanrank.cost.period import Period
from leanrank.cost.pricing import ModelPrice, Pricing
from leanrank.cost.projection import (
    Volume,
    api_cost,
    crossover,
    gpu_capacity,
    gpu_month_cost,
    measured_volume,
    project,
)
from leanrank.errors import InputError
from tests.cost.conftest import make_record

PRICING = Pricing.load()
COHERE = PRICING.models["cohere:rerank-v3.5"]
VOYAGE = PRICING.models["voyage:rerank-2.5"]
H100 = PRICING.gpus["selfhost:h100"]
VOLUME = Volume(
    queries_per_course_month=2000, courses=10, candidates=20, tokens_per_candidate=160, query_tokens=20
)


def test_api_cost_by_hand() -> None:
    cohere = api_cost(COHERE, VOLUME)
    assert cohere.per_query == pytest.approx(1 * 2.00 / 1000)  # 20 candidates: one search unit
    assert cohere.per_course_month == pytest.approx(0.002 * 2000)
    assert cohere.per_month == pytest.approx(0.002 * 2000 * 10)
    voyage = api_cost(VOYAGE, VOLUME)
    assert voyage.per_query == pytest.approx((20 * 20 + 20 * 160) * 0.05 / 1e6)
    assert voyage.per_month == pytest.approx(3600 * 0.05 / 1e6 * 20_000)


def test_gpu_capacity_and_monthly_cost() -> None:
    assert H100.month_usd == pytest.approx(2.50 * 730)
    assert gpu_capacity(H100, 20) == pytest.approx(2000 * 3600 * 730 / 20)
    assert gpu_month_cost(H100, 0, 20) == pytest.approx(2.50 * 730)  # one GPU is the floor
    capacity = gpu_capacity(H100, 20)
    assert gpu_month_cost(H100, capacity, 20) == pytest.approx(2.50 * 730)
    assert gpu_month_cost(H100, capacity + 1, 20) == pytest.approx(2 * 2.50 * 730)


def test_crossover_volume_is_gpu_month_over_api_call_price() -> None:
    c = crossover(api_cost(COHERE, VOLUME), H100, VOLUME)
    assert c.queries_per_month == pytest.approx(2.50 * 730 / 0.002)  # 912,500 calls a month
    assert c.courses == pytest.approx(912_500 / 2000)
    # At that volume both cost the same.
    assert api_cost(COHERE, VOLUME).per_query * c.queries_per_month == pytest.approx(H100.month_usd)


def test_no_crossover_when_the_gpu_cannot_serve_that_volume() -> None:
    slow = replace(H100, pairs_per_second=1.0)  # 131,400 calls a month at 20 candidates
    assert crossover(api_cost(COHERE, VOLUME), slow, VOLUME).queries_per_month is None
    just_enough = replace(H100, pairs_per_second=912_500 * 20 / (3600 * 730))
    assert crossover(api_cost(COHERE, VOLUME), just_enough, VOLUME).queries_per_month == pytest.approx(
        912_500
    )


def test_free_api_has_no_crossover() -> None:
    free = ModelPrice("x", "free", "per_million_tokens", 0.0, COHERE.as_of, "https://x", True)
    assert crossover(api_cost(free, VOLUME), H100, VOLUME).queries_per_month is None


def test_project_sorts_cheapest_first_and_pairs_every_api_with_every_gpu() -> None:
    p = project([COHERE, VOYAGE], PRICING.gpus.values(), VOLUME)
    assert [a.price.key for a in p.apis] == ["voyage:rerank-2.5", "cohere:rerank-v3.5"]
    assert len(p.crossovers) == 2 * 2


def test_measured_volume_by_hand(tmp_path: Path) -> None:
    with Ledger(f"sqlite:///{tmp_path / 'l.sqlite'}") as ledger:
        ledger.record(make_record("a", course="c1", documents=20, query_tokens=20, document_tokens=3200))
        ledger.record(
            make_record("b", course="c1", documents=20, cache_hits=5, query_tokens=20, document_tokens=2400)
        )
        ledger.record(make_record("c", course="c2", documents=30, query_tokens=10, document_tokens=4500))
        month = measured_volume(ledger, Period.parse("2026-11"))
        half = measured_volume(ledger, Period.parse("2026-11-01..2026-11-15"))
        with pytest.raises(InputError, match="no rerank calls recorded in 2026-10"):
            measured_volume(ledger, Period.parse("2026-10"))
    assert month.courses == 2
    assert month.queries_per_course_month == pytest.approx(3 / 2)
    assert month.candidates == pytest.approx((20 + 15 + 30) / 3)  # cache hits were not sent
    assert month.tokens_per_candidate == pytest.approx((3200 + 2400 + 4500) / 65)
    assert month.query_tokens == pytest.approx(50 / 3)
    assert half.queries_per_course_month == pytest.approx(1.5 / (15 / 30.4375))
