from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from leanrank.cost.period import DAYS_PER_MONTH, Period
from leanrank.errors import InputError


def test_month() -> None:
    p = Period.parse("2026-11")
    assert (p.start, p.end, p.label) == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
        "2026-11",
    )
    assert p.months == 1.0
    assert Period.parse("2026-12").end == datetime(2027, 1, 1, tzinfo=UTC)


def test_day_and_inclusive_range() -> None:
    day = Period.parse("2026-11-03")
    assert (day.start, day.end) == (datetime(2026, 11, 3, tzinfo=UTC), datetime(2026, 11, 4, tzinfo=UTC))
    assert day.months == pytest.approx(1 / DAYS_PER_MONTH)
    span = Period.parse("2026-11-01..2026-11-15")
    assert (span.start, span.end) == (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 16, tzinfo=UTC))
    assert span.months == pytest.approx(15 / 30.4375)
    assert Period.parse("2026-10-01..2026-12-31").months == 3.0


def test_of_a_moment_in_another_zone_is_the_utc_one() -> None:
    # 01:30 on Dec 1st in Moscow is still November in UTC.
    moment = datetime(2026, 12, 1, 1, 30, tzinfo=timezone(timedelta(hours=3)))
    assert Period.month_of(moment).label == "2026-11"
    assert Period.day_of(moment).label == "2026-11-30"


@pytest.mark.parametrize(
    "text", ["2026-13", "Nov 2026", "2026-11-31", "2026-11-05..2026-11-01", "", "9999-12-31", "9999-12"]
)
def test_bad_periods_are_input_errors(text: str) -> None:
    with pytest.raises(InputError, match="period"):
        Period.parse(text)
