from __future__ import annotations

from pathlib import Path

import pytest

from leanrank.cost.ledger import Ledger
from leanrank.cost.period import Period
from leanrank.cost.plots import projection_chart, report_chart, report_figure
from leanrank.cost.pricing import Pricing
from leanrank.cost.projection import Volume, project
from leanrank.cost.report import cost_report
from tests.cost.conftest import make_record

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.sqlite'}")
    ledger.record(make_record("a", course="c1", cost_usd=0.004))
    ledger.record(make_record("b", course="c2", cost_usd=0.25))
    ledger.record(make_record("c", course="c2", cost_usd=None))
    return ledger


def test_report_rows_and_total(ledger: Ledger) -> None:
    report = cost_report(ledger, "course", Period.parse("2026-11"))
    assert [(r.key, r.calls, r.cost_usd, r.unpriced) for r in report.rows] == [
        ("c1", 1, 0.004, 0),
        ("c2", 2, 0.25, 1),
    ]
    total = report.total
    assert (total.key, total.calls, total.documents, total.unpriced) == (None, 3, 360, 1)
    assert total.cost_usd == pytest.approx(0.254)


def test_charts_are_png_files(ledger: Ledger, tmp_path: Path) -> None:
    report_chart(cost_report(ledger, "course", Period.parse("2026-11")), tmp_path / "report.png")
    pricing = Pricing.load()
    volume = Volume(2000, 10, 20, 160, 20)
    projection_chart(
        project(pricing.models.values(), pricing.gpus.values(), volume), tmp_path / "project.png"
    )
    for name in ("report.png", "project.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        assert len(data) > 10_000, name


def test_a_chart_of_zero_costs_has_no_negative_axis(tmp_path: Path) -> None:
    with Ledger(f"sqlite:///{tmp_path / 'free.sqlite'}") as free:
        free.record(make_record("a", course="c1", cost_usd=0.0))
        report = cost_report(free, "course", Period.parse("2026-11"))
    [axes] = report_figure(report).axes
    assert axes.get_ylim() == (0.0, 1.0)
