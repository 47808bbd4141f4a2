"""`Ledger.series`: the spend dashboard's sums per UTC hour or day, course, tenant and backend, on SQLite and
PostgreSQL alike."""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest

from leanrank.cost.ledger import Ledger, SeriesRow
from leanrank.cost.period import Period
from tests.cost.conftest import NOV_3, make_record

NOVEMBER = Period.parse("2026-11")
LOCAL = timezone(timedelta(hours=5))  # a call stamped in another zone still lands in its UTC bucket


def seed(ledger: Ledger) -> None:
    # Two calls in the 10:00 hour of Nov 3, one with savings recorded by the cascade.
    ledger.record(make_record("a", documents_received=300, full_cost_usd=0.010))
    ledger.record(make_record("b", cost_usd=0.002, latency_ms=15.0, time=NOV_3 + timedelta(minutes=59)))
    # 11:00, answered wholly from the cache: no cost, no backend latency.
    ledger.record(
        make_record("c", time=NOV_3 + timedelta(hours=1), cost_usd=0.0, cache_hits=120, latency_ms=0.0)
    )
    # Nov 4, 01:30 UTC written as 06:30 at +05:00; another tenant, an unknown price, another backend.
    ledger.record(
        make_record(
            "d",
            time=NOV_3.replace(day=4, hour=6, minute=30, tzinfo=LOCAL),
            tenant="school-b",
            backend="jina:m0",
            cost_usd=None,
            latency_ms=40.0,
        )
    )
    # Outside November: never counted.
    ledger.record(make_record("e", time=NOV_3.replace(month=12, day=1, hour=0)))


def test_hourly_buckets_sum_by_course_tenant_and_backend(ledger: Ledger) -> None:
    seed(ledger)
    rows = ledger.series("hour", NOVEMBER)
    assert [(r.bucket, r.tenant, r.backend, r.calls) for r in rows] == [
        ("2026-11-03T10:00", "school-a", "cohere:rerank-v3.5", 2),
        ("2026-11-03T11:00", "school-a", "cohere:rerank-v3.5", 1),
        ("2026-11-04T01:00", "school-b", "jina:m0", 1),
    ]
    first, cached, unpriced = rows
    assert first == SeriesRow(
        bucket="2026-11-03T10:00",
        course="python-101",
        tenant="school-a",
        backend="cohere:rerank-v3.5",
        calls=2,
        documents=240,
        documents_received=420,  # 300 recorded + 120 (no count recorded: what it scored)
        cache_hits=0,
        query_tokens=24,
        document_tokens=38_400,
        cost_usd=pytest.approx(0.006),
        unpriced=0,
        savings_usd=pytest.approx(0.006),  # 0.010 - 0.004; the call without full_cost_usd adds nothing
        backend_calls=2,
        latency_ms_sum=100.0,
        latency_ms_max=85.0,
    )
    assert (cached.cache_hits, cached.backend_calls, cached.latency_ms_sum, cached.latency_ms_max) == (
        120,
        0,
        0,
        0,
    )
    assert (unpriced.cost_usd, unpriced.unpriced, unpriced.latency_ms_sum) == (0.0, 1, 40.0)


def test_daily_buckets_merge_the_hours_of_a_utc_day(ledger: Ledger) -> None:
    seed(ledger)
    rows = ledger.series("day", NOVEMBER)
    assert [(r.bucket, r.backend, r.calls, r.cache_hits) for r in rows] == [
        ("2026-11-03", "cohere:rerank-v3.5", 3, 120),
        ("2026-11-04", "jina:m0", 1, 0),
    ]
    assert rows[0].cost_usd == pytest.approx(0.006)
    assert rows[0].backend_calls == 2


def test_an_empty_period_has_no_rows(ledger: Ledger) -> None:
    seed(ledger)
    assert ledger.series("day", Period.parse("2026-10")) == []
