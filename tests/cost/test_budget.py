from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from leanrank.cost.budget import Budget, BudgetExceededError, BudgetState
from leanrank.cost.ledger import Ledger
from leanrank.settings import BudgetSettings
from tests.cost.conftest import make_record

NOON = datetime(2026, 11, 3, 12, tzinfo=UTC)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")


def _spend(
    ledger: Ledger, usd: float, *, course: str = "c1", tenant: str = "t1", when: datetime = NOON
) -> None:
    ledger.record(make_record(uuid.uuid4().hex, course=course, tenant=tenant, cost_usd=usd, time=when))


def test_ok_soft_hard_transitions(ledger: Ledger) -> None:
    rule = BudgetSettings(scope="course", name="c1", period="month", soft_usd=1.0, hard_usd=2.0)
    budget = Budget([rule], ledger)
    assert budget.check("c1", None, NOON) == BudgetState("ok", 0.0, 1.0, rule)
    _spend(ledger, 0.99)
    assert budget.check("c1", None, NOON).level == "ok"
    _spend(ledger, 0.01)  # exactly the soft cap: reached
    assert budget.check("c1", None, NOON) == BudgetState("soft", pytest.approx(1.0), 1.0, rule)  # type: ignore[arg-type]
    _spend(ledger, 1.0)
    state = budget.check("c1", None, NOON)
    assert (state.level, state.spent_usd, state.cap_usd) == ("hard", pytest.approx(2.0), 2.0)


def test_month_and_day_periods_reset(ledger: Ledger) -> None:
    daily = BudgetSettings(scope="course", name="c1", period="day", hard_usd=1.0)
    monthly = BudgetSettings(scope="course", name="c1", period="month", hard_usd=5.0)
    _spend(ledger, 1.0, when=NOON)
    assert Budget([daily], ledger).check("c1", None, NOON).level == "hard"
    assert Budget([daily], ledger).check("c1", None, datetime(2026, 11, 4, 0, 0, tzinfo=UTC)).level == "ok"
    assert (
        Budget([monthly], ledger).check("c1", None, datetime(2026, 11, 30, 23, tzinfo=UTC)).spent_usd == 1.0
    )
    assert Budget([monthly], ledger).check("c1", None, datetime(2026, 12, 1, tzinfo=UTC)).spent_usd == 0.0


def test_scopes_and_wildcards(ledger: Ledger) -> None:
    _spend(ledger, 3.0, course="c1", tenant="t1")
    _spend(ledger, 1.0, course="c2", tenant="t1")
    each_course = BudgetSettings(scope="course", name="*", hard_usd=2.0)
    tenant = BudgetSettings(scope="tenant", name="t1", soft_usd=3.5)
    budget = Budget([each_course, tenant], ledger)
    assert budget.check("c1", "t1", NOON).level == "hard"  # c1 alone is over 2
    c2 = budget.check("c2", "t1", NOON)  # c2 is under its cap, but the tenant spent 4 ≥ 3.5
    assert (c2.level, c2.spent_usd, c2.rule) == ("soft", 4.0, tenant)
    assert budget.check("c2", "t2", NOON).level == "ok"
    assert budget.check(None, None, NOON) == BudgetState("ok", 0.0, None)


def test_ok_state_reports_the_nearest_cap(ledger: Ledger) -> None:
    _spend(ledger, 1.0)
    loose = BudgetSettings(scope="course", name="c1", hard_usd=100.0)
    tight = BudgetSettings(scope="tenant", name="t1", hard_usd=4.0)
    state = Budget([loose, tight], ledger).check("c1", "t1", NOON)
    assert (state.level, state.cap_usd, state.rule) == ("ok", 4.0, tight)


def test_soft_cap_warns_once_per_period_and_counts_every_time(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    _spend(ledger, 1.0)
    budget = Budget([BudgetSettings(scope="course", name="c1", soft_usd=0.5)], ledger)
    with caplog.at_level(logging.WARNING, logger="leanrank.cost.budget"):
        for _ in range(3):
            budget.check("c1", None, NOON)
    assert budget.soft_warnings == {"course:c1/month": 3}
    assert len(caplog.records) == 1
    assert "soft budget course:c1/month reached for c1 in 2026-11" in caplog.text


def test_settings_validate_caps() -> None:
    with pytest.raises(ValueError, match="soft_usd, hard_usd or both"):
        BudgetSettings(scope="course", name="c1")
    with pytest.raises(ValueError, match="must not exceed"):
        BudgetSettings(scope="course", name="c1", soft_usd=2, hard_usd=1)


def test_exceeded_error_says_what_to_do() -> None:
    rule = BudgetSettings(scope="tenant", name="t1", period="day", hard_usd=1.0)
    error = BudgetExceededError(BudgetState("hard", 1.25, 1.0, rule))
    assert str(error).startswith("budget tenant:t1/day reached: spent $1.2500 of $1.0000")
    assert "cost.fallback" in str(error)
