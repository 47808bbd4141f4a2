"""Reporting periods in UTC, written the way people ask for them: `2026-11`, `2026-11-03`, `A..B`.

Bills are monthly and budgets reset at UTC midnight or at the first of the month, so every period is a
half-open UTC interval `[start, end)` and a day or month boundary never depends on the server's zone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from leanrank.errors import InputError

DAYS_PER_MONTH = 365.25 / 12

_MONTH = re.compile(r"(\d{4})-(\d{2})")
_FORMS = "YYYY-MM, YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD"


@dataclass(frozen=True, slots=True)
class Period:
    """`start` inclusive, `end` exclusive, both aware UTC; `label` is how the user wrote it."""

    start: datetime
    end: datetime
    label: str

    @classmethod
    def parse(cls, text: str) -> Period:
        """A month (`2026-11`), a day (`2026-11-03`) or an inclusive range (`2026-11-01..2026-11-15`)."""
        text = text.strip()
        month = _MONTH.fullmatch(text)
        try:
            if month:
                return cls.month_of(datetime(int(month[1]), int(month[2]), 1, tzinfo=UTC))
            first, sep, last = text.partition("..")
            start = date.fromisoformat(first)
            end = date.fromisoformat(last) if sep else start
        except ValueError:
            raise InputError(f"period {text!r}: expected {_FORMS}") from None
        if end < start:
            raise InputError(f"period {text!r}: the range ends before it starts")
        if end >= date.max:  # the period ends at the next midnight, which must exist
            final = date.max - timedelta(days=1)
            raise InputError(f"period {text!r}: the last day a period may hold is {final}")
        return cls(_midnight(start), _midnight(end + timedelta(days=1)), text)

    @classmethod
    def month_of(cls, when: datetime) -> Period:
        """The UTC calendar month holding `when`."""
        when = when.astimezone(UTC)
        start = datetime(when.year, when.month, 1, tzinfo=UTC)
        end = datetime(when.year + when.month // 12, when.month % 12 + 1, 1, tzinfo=UTC)
        return cls(start, end, f"{when.year:04d}-{when.month:02d}")

    @classmethod
    def day_of(cls, when: datetime) -> Period:
        """The UTC day holding `when`."""
        day = when.astimezone(UTC).date()
        return cls(_midnight(day), _midnight(day + timedelta(days=1)), day.isoformat())

    @property
    def months(self) -> float:
        """Length in months: whole calendar months count exactly, anything else as days / 30.44."""
        s, e = self.start, self.end
        if s.day == e.day == 1 and s.time() == e.time() == datetime.min.time():
            return float((e.year - s.year) * 12 + e.month - s.month)
        return (e - s) / timedelta(days=DAYS_PER_MONTH)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
