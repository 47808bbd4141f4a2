"""Metrics on tiny runs; expected values are written as the formulas (Järvelin nDCG: gain = grade)."""

from __future__ import annotations

from math import log2

import pytest

from leanrank.eval.metrics import (
    candidate_recall,
    cost_per_1k,
    pareto_frontier,
    percentiles,
    quality,
    significance,
)
from leanrank.eval.silver import silver_qrels, silver_scores
from tests.eval.conftest import PerMillion

JUDGED = {"q1": {"a": 1}, "q2": {"b": 2, "c": 1}}
RANKED = {"q1": ["x", "a", "y"], "q2": ["c", "x", "b"]}


def test_quality_matches_the_formulas() -> None:
    got = quality(JUDGED, RANKED)
    ndcg_q1 = (1 / log2(3)) / 1
    ndcg_q2 = (1 / log2(2) + 2 / log2(4)) / (2 / log2(2) + 1 / log2(3))
    assert got["ndcg@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2)
    assert got["recall@1"] == pytest.approx((0 + 1 / 2) / 2)
    assert got["recall@5"] == got["recall@100"] == pytest.approx(1.0)
    assert got["mrr@10"] == pytest.approx((1 / 2 + 1 / 1) / 2)
    assert got["precision@5"] == pytest.approx((1 / 5 + 2 / 5) / 2)


def test_a_judged_query_without_documents_scores_zero() -> None:
    got = quality(JUDGED, {"q1": [], "q3": ["a"]}, ["ndcg@10", "recall@5"])
    assert got == {"ndcg@10": 0.0, "recall@5": 0.0}
    assert quality({}, RANKED) == {}


def test_candidate_recall_is_the_share_of_queries_whose_relevant_doc_reached_the_reranker() -> None:
    assert candidate_recall(JUDGED, {"q1": ["a", "z"], "q2": ["x"], "q9": ["b"]}) == pytest.approx(1 / 2)
    assert candidate_recall({}, RANKED) is None


def test_significance_is_symmetric_and_one_for_identical_runs() -> None:
    other = {"q1": ["a"], "q2": ["x", "y"]}
    p = significance(JUDGED, {"A": RANKED, "B": RANKED, "C": other}, ["ndcg@10", "mrr@10"])
    assert p["A"]["B"] == {"ndcg@10": 1.0, "mrr@10": 1.0}
    assert p["A"]["C"] == p["C"]["A"]
    assert 0.0 < p["A"]["C"]["ndcg@10"] <= 1.0
    assert significance(JUDGED, {"A": RANKED}, ["ndcg@10"]) == {}


def test_cost_per_thousand_queries_is_the_mean_request_price_times_1000() -> None:
    price = PerMillion("jina", usd_per_million=2.0)
    requests: list[tuple[int, list[int]]] = [(10, [100, 200]), (20, [50])]
    expected = 1000 * ((2.0 / 1e6) * ((10 + 100) + (10 + 200)) + (2.0 / 1e6) * (20 + 50)) / 2
    assert cost_per_1k(price, requests) == pytest.approx(expected)
    assert cost_per_1k(price, []) == 0.0


def test_percentiles_interpolate_linearly() -> None:
    got = percentiles([float(x) for x in range(1, 101)])
    assert got == {"p50": pytest.approx(50.5), "p95": pytest.approx(95 + 0.05 * (96 - 95))}


def test_pareto_frontier_keeps_the_undominated_points_cheapest_first() -> None:
    points = [(1.0, 0.5), (2.0, 0.7), (3.0, 0.6), (2.0, 0.4), (5.0, 0.9), (5.0, 0.9), (0.5, 0.1)]
    assert pareto_frontier(points) == [6, 0, 1, 4, 5]
    assert pareto_frontier([]) == []


def test_silver_scores_are_overlap_and_ndcg_against_the_reference_top_k() -> None:
    reference = {"q1": [f"r{i}" for i in range(12)], "q2": []}
    ranking = {"q1": ["r0", "x", "r2", "y", "r4"]}
    assert silver_qrels(reference, 3) == {"q1": {"r0": 1, "r1": 1, "r2": 1}}
    got = silver_scores(reference, ranking)
    assert got["overlap@5"] == pytest.approx(3 / 5)
    assert got["overlap@10"] == pytest.approx(3 / 10)
    ideal = sum(1 / log2(i + 1) for i in range(1, 11))
    assert got["ndcg@10"] == pytest.approx((1 / log2(2) + 1 / log2(4) + 1 / log2(6)) / ideal)
