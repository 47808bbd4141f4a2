"""Issue 20's harness numbers by hand on a made-up run: sources in the top 5, what came back and how much
of it is relevant, skipped questions; the (score, relevant) pairs calibration fits on and its trade-off."""

from __future__ import annotations

from datetime import date

import pytest

from leanrank.eval.calibrate import judged_pairs, trade_off
from leanrank.eval.configs import PRESETS
from leanrank.eval.datasets import Dataset, Doc, Query
from leanrank.eval.report import markdown, summarise
from leanrank.eval.runner import ConfigRun, EvalResult, QueryOutcome
from leanrank.rerank.calibration import Calibration

DATA = Dataset(
    "made-up",
    tuple(Doc(d, "text", "c", "s1", "en") for d in ("a", "b", "c", "z")),
    tuple(Query(q, "question", "en", "c") for q in ("q1", "q2", "q3")),
    qrels={"q1": {"a": 1}, "q2": {"z": 1}, "q3": {}},
)


def outcome(qid: str, ranking: tuple[str, ...], **extra: object) -> QueryOutcome:
    return QueryOutcome(qid, ranking, (), 1, {}, served_by="identity", **extra)  # type: ignore[arg-type]


RUN = ConfigRun(
    PRESETS["default"],
    (
        outcome("q1", ("a", "b", "c"), scores=(0.9, 0.5, 0.1), sources=("s1", "s1", "s2")),
        outcome("q2", ("b",), scores=(0.2,), sources=("s3",)),
        outcome("q3", (), dropped={"min_similarity": 3}),
    ),
)


def test_what_came_back_by_hand() -> None:
    [row] = summarise(EvalResult(DATA, (RUN,), None, 0, 0.0)).configs
    assert row.distinct_sources_5 == pytest.approx((2 + 1 + 0) / 3)
    assert row.hits_per_query == pytest.approx(4 / 3)
    assert row.hit_precision == pytest.approx((1 / 3 + 0) / 2)  # judged questions with hits
    assert row.answered == pytest.approx(1 / 2)  # q1 got its relevant hit, q2 did not
    assert row.skipped == pytest.approx(1 / 3)
    assert row.agreement is None  # identity reranks nothing
    report = markdown(summarise(EvalResult(DATA, (RUN,), None, 0, 0.0)))
    assert "| default | 1.00 | 1.3 | 0.167 | 0.500 | 33.3% | — |" in report


def test_calibration_pairs_and_the_threshold_trade() -> None:
    backend, scores, labels = judged_pairs(RUN, DATA)
    assert (backend, scores, labels) == ("identity", [0.9, 0.5, 0.1, 0.2], [True, False, False, False])
    cal = Calibration("identity", "isotonic", date(2026, 11, 29), "d", 4, 1, x=(0.0, 1.0), y=(0.0, 1.0))
    low, high = trade_off(cal, scores, labels, thresholds=(0.15, 0.6))
    assert (low.kept, low.precision, low.recall) == (0.75, pytest.approx(1 / 3), 1.0)
    assert (high.kept, high.precision, high.recall) == (0.25, 1.0, 1.0)


def test_the_report_s_notes_end_before_the_first_table_s_heading() -> None:
    noted = Dataset(DATA.name, DATA.docs, DATA.queries, qrels=DATA.qrels, notes=("q3: no judgement",))
    lines = markdown(summarise(EvalResult(noted, (RUN,), None, 0, 0.0))).splitlines()
    at = lines.index("- q3: no judgement")
    assert lines[at + 1 : at + 3] == ["", "## Quality and what reaches the reranker"]
