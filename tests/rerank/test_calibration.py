"""Calibration: isotonic and Platt fits on cases with known answers, the dated JSON files, refusals."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import pytest

from leanrank.errors import ConfigError, InputError
from leanrank.rerank.base import UNSCORED
from leanrank.rerank.calibration import Calibration, calibration_error, fit, load_calibrations

DAY = date(2026, 11, 29)


def test_isotonic_pools_adjacent_violators_and_interpolates_between_steps() -> None:
    # Means by score: 1, 0, 0, 1, 1 -> PAV pools the first three into 1/3.
    cal = fit([1, 2, 3, 4, 5], [True, False, False, True, True], backend="b", method="isotonic", fitted=DAY)
    assert cal.x == (1.0, 3.0, 4.0, 5.0)  # a step's inner points are dropped, its ends kept
    assert cal.y == pytest.approx((1 / 3, 1 / 3, 1.0, 1.0))
    assert cal.probability([0.0, 2.0, 3.5, 9.0, UNSCORED]) == pytest.approx([1 / 3, 1 / 3, 2 / 3, 1.0, 0.0])
    assert (cal.pairs, cal.positives) == (5, 3)


def test_platt_recovers_the_closed_form_of_a_symmetric_case() -> None:
    # n relevant at +1 and n irrelevant at -1: Platt's targets are (n+1)/(n+2) and 1/(n+2), so the maximum
    # likelihood sigmoid is b = 0, a = log(n + 1).
    n = 9
    cal = fit([1.0] * n + [-1.0] * n, [True] * n + [False] * n, backend="b", fitted=DAY)
    assert (cal.a, cal.b) == (pytest.approx(math.log(10), rel=1e-4), pytest.approx(0.0, abs=1e-4))
    assert cal.probability([1.0, -1.0]) == pytest.approx([0.909091, 0.090909], rel=1e-4)


def test_platt_is_scale_free_on_the_raw_score() -> None:
    """Scores a thousand times larger give the same probabilities: the fit standardises them first."""
    scores = [0.1, 0.4, 0.35, 0.8, 0.7, 0.2, 0.9, 0.05]
    labels = [False, False, True, True, True, False, True, False]
    small = fit(scores, labels, backend="b", fitted=DAY)
    large = fit([1000 * s for s in scores], labels, backend="b", fitted=DAY)
    assert small.probability(scores) == pytest.approx(large.probability([1000 * s for s in scores]), rel=1e-4)
    # Recorded, and checked against a Nelder-Mead fit of Platt's loss on the raw scores (a=4.3469, b=-1.8591).
    assert (small.a, small.b) == (pytest.approx(4.3469, rel=1e-3), pytest.approx(-1.8591, rel=1e-3))
    assert small.probability([0.05, 0.9]) == pytest.approx([0.1622, 0.8863], abs=1e-3)


def test_brier_and_ece_are_computed_as_defined() -> None:
    assert calibration_error([0.1, 0.9], [False, True]) == pytest.approx({"brier": 0.01, "ece": 0.1})


def test_non_finite_scores_are_left_out_and_one_class_is_refused() -> None:
    cal = fit([1.0, UNSCORED, 2.0, math.nan], [False, True, True, True], backend="b", fitted=DAY)
    assert (cal.pairs, cal.positives) == (2, 1)
    with pytest.raises(InputError, match="relevant and irrelevant"):
        fit([1.0, 2.0], [True, True], backend="b")
    with pytest.raises(InputError, match="isotonic or platt"):
        fit([1.0, 2.0], [True, False], backend="b", method="spline")  # type: ignore[arg-type]


def test_a_calibration_is_written_as_dated_json_and_read_back(tmp_path: Path) -> None:
    cal = fit(
        [1, 2, 3, 4],
        [False, True, False, True],
        backend="cohere:rerank-v3.5",
        method="isotonic",
        fitted=DAY,
        dataset="own:x",
        settings={"retrieve": {"rrf_k": 7}},
    )
    path = cal.write(tmp_path)
    assert path.name == "cohere_rerank-v3.5-2026-11-29.json"
    assert json.loads(path.read_text())["fitted"] == "2026-11-29"
    assert Calibration.read(path) == cal


def test_the_newest_calibration_of_each_backend_wins(tmp_path: Path) -> None:
    old = fit([1, 2], [False, True], backend="identity", fitted=date(2026, 1, 1))
    new = fit([1, 3], [False, True], backend="identity", fitted=date(2026, 6, 1))
    other = fit([1, 2], [False, True], backend="local:m", fitted=date(2025, 1, 1))
    for cal in (new, old, other):
        cal.write(tmp_path)
    assert load_calibrations(tmp_path) == {"identity": new, "local:m": other}
    assert load_calibrations(tmp_path / "absent") == {}


@pytest.mark.parametrize(
    ("body", "fault"),
    [
        ("not json", "Expecting value"),
        ('{"method": "spline", "backend": "b", "fitted": "2026-11-29"}', "isotonic or platt"),
        ('{"method": "platt", "fitted": "2026-11-29"}', "backend"),
        (
            '{"method": "isotonic", "backend": "b", "fitted": "2026-11-29", "x": [1, 0], "y": [0, 1]}',
            "increasing",
        ),
        (
            '{"method": "isotonic", "backend": "b", "fitted": "2026-11-29", "x": [0, 1], "y": [0, 2]}',
            "outside",
        ),
        ('{"method": "platt", "backend": "b", "fitted": "2026-11-29", "a": NaN}', "not finite"),
    ],
)
def test_a_bad_file_is_a_config_error_naming_it(tmp_path: Path, body: str, fault: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(body)
    with pytest.raises(ConfigError, match=fault) as caught:
        Calibration.read(path)
    assert str(path) in str(caught.value)
