from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta, timezone
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from leanrank.cost.ledger import (
    DEFAULT_TABLE,
    HOLD_MARGIN,
    HOLD_TTL,
    Hold,
    Ledger,
    LedgerError,
    LedgerRecord,
    RequestConflictError,
    Reservation,
    Settlement,
    Total,
    _days,
)
from leanrank.cost.period import Period
from leanrank.errors import ConfigError, StoreError
from leanrank.settings import CostSettings, Settings
from tests.cost.conftest import NOV_3, make_record

NOVEMBER = Period.parse("2026-11")


def test_same_request_and_stage_is_recorded_once(ledger: Ledger) -> None:
    assert ledger.record(make_record("r1")) is True
    assert ledger.record(make_record("r1", cost_usd=99.0)) is False  # a retry: dropped, not updated
    assert ledger.record(make_record("r1", stage="rerank2")) is True  # another stage of the same request
    [total] = ledger.totals("course", NOVEMBER)
    assert (total.calls, total.requests, total.cost_usd) == (2, 1, pytest.approx(0.008))


def test_totals_say_what_the_gateway_cascade_saved(ledger: Ledger) -> None:
    ledger.record(make_record("a", documents=12, cost_usd=0.001, documents_received=100, full_cost_usd=0.008))
    ledger.record(make_record("b", documents=30, cost_usd=0.002))  # a search: nothing held back
    [total] = ledger.totals("course", NOVEMBER)
    assert (total.documents, total.documents_received) == (42, 130)
    assert total.full_cost_usd == pytest.approx(0.008 + 0.002)
    assert total.saved_usd == pytest.approx(0.007)


def test_totals_by_each_key_add_up_by_hand(ledger: Ledger) -> None:
    ledger.record(make_record("a", course="c1", tenant="t1", cost_usd=0.004))
    ledger.record(make_record("b", course="c1", tenant="t2", cost_usd=0.002, documents=50, cache_hits=10))
    ledger.record(
        make_record(
            "c",
            course="c2",
            tenant=None,
            backend="voyage:rerank-2.5",
            model="rerank-2.5",
            time=datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC),
            cost_usd=None,
            query_tokens=0,
            document_tokens=1000,
        )
    )
    ledger.record(make_record("outside", time=datetime(2026, 12, 1, 0, 0, tzinfo=UTC)))

    c1, c2 = ledger.totals("course", NOVEMBER)
    # Rows without the gateway's counts held nothing back: received = sent, full cost = cost.
    assert c1 == Total(
        "c1", 2, 2, 120 + 50, 10, 12 + 12, 19_200 + 19_200, c1.cost_usd, 0, 170, c1.full_cost_usd
    )
    assert c1.cost_usd == pytest.approx(0.004 + 0.002)
    assert c1.full_cost_usd == pytest.approx(c1.cost_usd)
    assert c2 == Total("c2", 1, 1, 120, 0, 0, 1000, 0.0, 1, 120, 0.0)  # unknown cost: counted, not summed
    assert [(t.key, t.calls) for t in ledger.totals("tenant", NOVEMBER)] == [("t1", 1), ("t2", 1), (None, 1)]
    assert [(t.key, t.calls) for t in ledger.totals("backend", NOVEMBER)] == [
        ("cohere:rerank-v3.5", 2),
        ("voyage:rerank-2.5", 1),
    ]
    assert [(t.key, t.calls) for t in ledger.totals("day", NOVEMBER)] == [
        ("2026-11-03", 2),
        ("2026-11-30", 1),
    ]
    assert [(t.key, t.calls) for t in ledger.totals("day", Period.parse("2026-12"))] == [("2026-12-01", 1)]


def test_day_boundaries_are_utc_whatever_the_offset_given(ledger: Ledger) -> None:
    moscow = timezone(timedelta(hours=3))
    ledger.record(make_record("late", time=datetime(2026, 11, 4, 1, 30, tzinfo=moscow)))  # 22:30 UTC, 3rd
    assert [t.key for t in ledger.totals("day", NOVEMBER)] == ["2026-11-03"]
    assert ledger.spent("course", "python-101", Period.parse("2026-11-03")) == pytest.approx(0.004)
    assert ledger.spent("course", "python-101", Period.parse("2026-11-04")) == 0.0


def test_spent_sums_known_costs_of_one_course_or_tenant(ledger: Ledger) -> None:
    ledger.record(make_record("a", course="c1", tenant="t1", cost_usd=0.25))
    ledger.record(make_record("b", course="c1", tenant="t2", cost_usd=0.5))
    ledger.record(make_record("c", course="c2", tenant="t1", cost_usd=None))
    assert ledger.spent("course", "c1", NOVEMBER) == 0.75
    assert ledger.spent("tenant", "t1", NOVEMBER) == 0.25
    assert ledger.spent("course", "nobody", NOVEMBER) == 0.0


def test_budget_totals_follow_every_write_and_agree_with_the_calls(ledger: Ledger) -> None:
    """Budgets read per-day running totals, not the calls: every way a call is written adds its known cost
    to its course's and tenant's day once, in the write's own transaction."""
    dec_1 = datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC)
    ledger.record(make_record("a", cost_usd=0.25))  # python-101 / school-a, Nov 3
    assert ledger.record(make_record("a", cost_usd=0.25)) is False  # a repeat adds nothing
    ledger.record(make_record("b", tenant=None, cost_usd=0.5))
    ledger.record(make_record("c", cost_usd=None))  # unpriced: nothing known to add
    ledger.record(make_record("d", time=dec_1, cost_usd=1.0))
    hold = Hold(NOV_3, "e", "rerank", "python-101", "school-a", 0.125, "cohere:rerank-v3.5", 10)
    ledger.reserve(hold, [], lambda _: True)
    maybe = make_record("e", stage="rerank:unconfirmed", cost_usd=0.0625)
    ledger.settle(make_record("e", cost_usd=0.125), [maybe])
    ledger.reserve(replace(hold, request_id="f"), [], lambda _: True)
    ledger.release(
        replace(hold, request_id="f"), [make_record("f", stage="rerank:unconfirmed", cost_usd=2.0)]
    )
    ledger.reserve(replace(hold, request_id="dead", amount_usd=4.0), [], lambda _: True)
    ledger.reserve(replace(hold, request_id="g", time=NOV_3 + HOLD_TTL * 2), [], lambda _: True)  # reaps
    # A write failing inside a shared commit (its savepoint rolls back) leaves no total behind.
    with ledger._commit_lock:
        failing = threading.Thread(target=_record_then_fail, args=(ledger, make_record("z", cost_usd=8.0)))
        ok = threading.Thread(target=lambda: ledger.record(make_record("h", cost_usd=16.0)))
        for thread in (failing, ok):
            thread.start()
        deadline = time.monotonic() + 30
        while len(ledger._queued) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    for thread in (failing, ok):
        thread.join(30)

    # By hand: a 0.25 + b 0.5 + e 0.125 + e? 0.0625 + f? 2.0 + dead? 4.0 + h 16.0 in November.
    assert ledger.spent("course", "python-101", NOVEMBER) == pytest.approx(22.9375)
    assert ledger.spent("tenant", "school-a", NOVEMBER) == pytest.approx(22.4375)  # b has no tenant
    assert ledger.spent("course", "python-101", Period.parse("2026-12")) == pytest.approx(1.0)
    both = Period.parse("2026-11-01..2026-12-31")
    assert ledger.spent("course", "python-101", both) == pytest.approx(23.9375)
    for scope in ("course", "tenant"):
        for period in (NOVEMBER, Period.parse("2026-12"), Period.parse("2026-11-03")):
            for total in ledger.totals(scope, period):
                if total.key is not None:  # no tenant: no budget to read
                    assert ledger.spent(scope, total.key, period) == pytest.approx(total.cost_usd)
    held = ledger.reserve(
        replace(hold, request_id="i", time=NOV_3), [("course", "python-101", NOVEMBER)], lambda _: True
    )
    # g's hold still counts; i's is not yet in
    assert held == Reservation([pytest.approx(22.9375 + 0.125)], True, [])


def _record_then_fail(ledger: Ledger, record: LedgerRecord) -> None:
    """A write that fails after inserting its call, inside the transaction: its savepoint rolls back."""

    def work(conn: sa.Connection) -> None:
        assert ledger._insert(conn, asdict(record) | {"cache_hit": record.cache_hit})
        raise RuntimeError("fails after its insert")

    with pytest.raises(RuntimeError):
        ledger._write(work, durable=True)


def test_spent_is_kept_per_whole_utc_day() -> None:
    half = Period(NOV_3, NOV_3 + timedelta(hours=12), "half a day")
    with pytest.raises(ValueError, match="per UTC day"):
        _days(half)


def test_empty_period_has_no_rows(ledger: Ledger) -> None:
    assert ledger.totals("course", NOVEMBER) == []


def test_sqlite_file_is_wal_and_syncs_every_commit(sqlite_url: str, tmp_path: Path) -> None:
    with Ledger(sqlite_url) as ledger:
        ledger.record(make_record())
        with ledger._engine.connect() as conn:  # the pragmas are per connection: ask one of the pool's
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    with sqlite3.connect(tmp_path / "ledger.sqlite") as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def _record_then_die(url: str) -> None:
    ledger = Ledger(url)
    ledger.record(make_record("last-words"))
    os.kill(os.getpid(), signal.SIGKILL)  # no close, no atexit, no flush


def test_a_record_survives_the_process_being_killed_right_after(sqlite_url: str) -> None:
    process = multiprocessing.get_context("spawn").Process(target=_record_then_die, args=(sqlite_url,))
    process.start()
    process.join(30)
    assert process.exitcode == -signal.SIGKILL
    with Ledger(sqlite_url) as ledger:
        assert [(t.calls, t.cost_usd) for t in ledger.totals("course", NOVEMBER)] == [(1, 0.004)]


def _write_many(
    url: str, table: str, first: int, last: int, start: Event, results: multiprocessing.Queue[int]
) -> None:
    with Ledger(url, table=table) as ledger:
        start.wait(30)  # both processes then also race to create the table
        results.put(sum(ledger.record(make_record(f"req-{i}", cost_usd=0.001)) for i in range(first, last)))


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_two_processes_writing_at_once_lose_and_duplicate_nothing(
    database: str, request: pytest.FixtureRequest, sqlite_url: str
) -> None:
    if database == "sqlite":
        url, table = sqlite_url, DEFAULT_TABLE
    else:
        url, table = request.getfixturevalue("pg_url"), request.getfixturevalue("pg_table")
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    # Overlapping ranges: requests 100..199 are written by both processes, at the same time.
    workers = [
        ctx.Process(target=_write_many, args=(url, table, a, b, start, results))
        for a, b in ((0, 200), (100, 300))
    ]
    for worker in workers:
        worker.start()
    start.set()
    inserted = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(30)
    assert sum(inserted) == 300
    with Ledger(url, table=table) as ledger:
        [total] = ledger.totals("course", NOVEMBER)
    assert (total.calls, total.requests) == (300, 300)
    assert total.cost_usd == pytest.approx(0.3)


def _reserve_many(
    url: str, table: str, first: int, start: Event, results: multiprocessing.Queue[int]
) -> None:
    """Twenty $0.002 holds for one course against a $0.02 cap; puts how many were admitted."""
    with Ledger(url, table=table) as ledger:
        start.wait(30)
        november = [("course", "python-101", NOVEMBER)]

        def fits(committed: Sequence[float]) -> bool:
            return committed[0] + 0.002 <= 0.02 + 1e-9

        admitted = 0
        for i in range(first, first + 20):
            hold = Hold(NOV_3, f"req-{i}", "rerank", "python-101", None, 0.002)
            admitted += ledger.reserve(hold, november, fits).admitted  # type: ignore[arg-type]
        results.put(admitted)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_two_processes_reserving_at_once_never_pass_a_cap_together(
    database: str, request: pytest.FixtureRequest, sqlite_url: str
) -> None:
    if database == "sqlite":
        url, table = sqlite_url, DEFAULT_TABLE
    else:
        url, table = request.getfixturevalue("pg_url"), request.getfixturevalue("pg_table")
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_reserve_many, args=(url, table, a, start, results)) for a in (0, 100)]
    for worker in workers:
        worker.start()
    start.set()
    admitted = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(30)
    assert sum(admitted) == 10  # 10 x $0.002 = the $0.02 cap, whoever got them


def test_a_held_or_recorded_request_id_is_refused_and_a_released_one_is_free(ledger: Ledger) -> None:
    hold = Hold(NOV_3, "r1", "rerank", "python-101", "school-a", 0.004)
    assert ledger.reserve(hold, [], lambda _: True) == Reservation([], True, [])
    with pytest.raises(RequestConflictError, match="'r1' is still running"):
        ledger.reserve(hold, [], lambda _: True)
    ledger.release(hold)
    ledger.reserve(hold, [], lambda _: True)
    assert ledger.settle(make_record("r1")) == Settlement(True, [], [])
    with pytest.raises(RequestConflictError, match="'r1' was already billed"):
        ledger.reserve(hold, [], lambda _: True)
    held = ledger.reserve(
        replace(hold, request_id="r2"), [("course", "python-101", NOVEMBER)], lambda _: True
    )
    # r1's record; r1's hold is gone with its settlement
    assert held == Reservation([pytest.approx(0.004)], True, [])


def test_an_expired_hold_of_a_dead_process_is_recorded_as_possibly_billed(ledger: Ledger) -> None:
    """A process killed mid-call leaves its hold: the provider may have billed the call. Once a hold without
    an expiry of its own expires (HOLD_TTL), the next reservation turns a paid one into a `:unconfirmed`
    record at its estimate and frees its id; a free call's hold leaves nothing."""
    paid = Hold(NOV_3, "dead", "rerank", "python-101", "school-a", 0.004, "cohere:rerank-v3.5", 150)
    free = Hold(NOV_3, "dead-free", "rerank", "python-101", "school-a", 0.0)
    for hold in (paid, free):
        ledger.reserve(hold, [], lambda _: True)
    later = replace(paid, time=NOV_3 + HOLD_TTL - timedelta(seconds=1), request_id="alive")
    ledger.reserve(later, [], lambda _: True)  # not expired yet: nothing recorded, the id still claimed
    assert ledger.totals("course", NOVEMBER) == []
    with pytest.raises(RequestConflictError, match="'dead' is still running"):
        ledger.reserve(replace(paid, time=later.time), [], lambda _: True)
    resent = replace(paid, time=NOV_3 + HOLD_TTL + timedelta(seconds=1))
    ledger.reserve(resent, [], lambda _: True)  # expired: recorded, and the resent id is free again
    (total,) = ledger.totals("course", NOVEMBER)
    assert (total.calls, total.unconfirmed, total.documents) == (1, 1, 150)
    assert total.cost_usd == pytest.approx(0.004)
    assert (total.unconfirmed_usd, total.unpriced) == (pytest.approx(0.004), 0)
    (by_backend,) = ledger.totals("backend", NOVEMBER)
    assert by_backend.key == "cohere:rerank-v3.5"


def test_a_hold_expires_at_its_writer_s_deadline_then_its_id_is_served_and_recorded_once(
    ledger: Ledger,
) -> None:
    """A process with a 90 s call deadline is killed mid-call: its hold expires at 10:00 + 90 s + the margin
    (10:02:30), not an hour later. Until then a resend of its id is a 409 and its estimate is held; after,
    the resend is accepted, the dead call is recorded once as possibly billed (its $0.004 now counted as that
    record, not also as a hold), and later reservations record nothing more. A hold written by a process
    with a longer deadline (2 h) is honoured past HOLD_TTL: each writer's own deadline counts."""
    expires = NOV_3 + timedelta(seconds=90) + HOLD_MARGIN
    assert expires == datetime(2026, 11, 3, 10, 2, 30, tzinfo=UTC)
    dead = Hold(NOV_3, "dead", "rerank", "python-101", "school-a", 0.004, "cohere:rerank-v3.5", 150, expires)
    slow = replace(dead, request_id="slow", amount_usd=0.002, expires=NOV_3 + timedelta(hours=2))
    november = [("course", "python-101", NOVEMBER)]
    for hold in (dead, slow):
        ledger.reserve(hold, [], lambda _: True)

    def other(at: datetime, request_id: str) -> list[float]:
        free = Hold(at, request_id, "rerank", "python-101", "school-a", 0.0)
        return ledger.reserve(free, november, lambda _: True).committed  # type: ignore[arg-type]

    with pytest.raises(RequestConflictError, match="'dead' is still running"):
        ledger.reserve(replace(dead, time=expires), [], lambda _: True)
    assert other(expires, "o1") == [pytest.approx(0.006)]  # both holds
    assert ledger.totals("course", NOVEMBER) == []
    later = expires + timedelta(seconds=1)
    resent = replace(dead, time=later, expires=later + timedelta(seconds=90) + HOLD_MARGIN)
    reaped = make_record(
        "dead",
        stage="rerank:unconfirmed",
        documents=150,
        query_tokens=0,
        document_tokens=0,
        billed_units=0.0,
        billed_unit="none",
        latency_ms=0.0,
        count_source="estimate",
    )
    # The reservation says what its reaping wrote: the process that wrote it counts it (`/metrics`).
    assert ledger.reserve(resent, november, lambda _: True) == Reservation(
        [pytest.approx(0.006)], True, [reaped]
    )
    [maybe] = ledger.totals("course", NOVEMBER)
    assert (maybe.calls, maybe.unconfirmed, maybe.documents, maybe.unconfirmed_usd) == (
        1,
        1,
        150,
        pytest.approx(0.004),
    )
    assert ledger.settle(make_record("dead", time=later)) == Settlement(True, [], [])  # the resend is billed
    past_the_hour = NOV_3 + HOLD_TTL + timedelta(seconds=1)
    with pytest.raises(RequestConflictError, match="'slow' is still running"):
        ledger.reserve(replace(slow, time=past_the_hour), [], lambda _: True)
    # The dead call's record, the resend's, and the slow hold: nothing held twice, nothing recorded twice.
    assert other(past_the_hour, "o2") == [pytest.approx(0.004 + 0.004 + 0.002)]
    [total] = ledger.totals("course", NOVEMBER)
    assert (total.calls, total.requests, total.unconfirmed) == (2, 1, 1)
    assert total.cost_usd == pytest.approx(0.008)


def test_every_possibly_billed_attempt_under_one_request_id_is_recorded(ledger: Ledger) -> None:
    """A resent request whose call fails again may be billed again: each attempt's calls get their own
    record (numbered after the earlier ones), and a hold released twice or reaped records its call once."""
    hold = Hold(NOV_3, "r", "rerank", "python-101", "school-a", 0.004, "cohere:rerank-v3.5", 120)
    call = make_record("r", count_source="estimate")  # the meter's record of a call at its estimate
    jina = replace(call, backend="jina:jina-reranker-v2", cost_usd=0.001)
    ledger.reserve(hold, [], lambda _: True)
    first = ledger.release(hold, [call])  # the first attempt timed out
    assert first == [replace(call, stage="rerank:unconfirmed")]
    assert ledger.release(hold, [call]) == []  # released again: its hold is gone, nothing more is recorded
    ledger.reserve(hold, [], lambda _: True)
    resend = ledger.release(hold, [call, jina])  # the resend: both links of its fallback chain timed out
    assert [r.stage for r in resend] == ["rerank:unconfirmed#2", "rerank:unconfirmed#3"]
    ledger.reserve(replace(hold, expires=NOV_3 + timedelta(minutes=1)), [], lambda _: True)  # then a kill
    later = replace(hold, request_id="next", time=NOV_3 + timedelta(minutes=2))
    [reaped] = ledger.reserve(later, [], lambda _: True).reaped
    assert (reaped.stage, reaped.cost_usd, reaped.count_source) == ("rerank:unconfirmed#4", 0.004, "estimate")
    t = ledger._table
    with ledger._engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.stage, t.c.backend).where(t.c.request_id == "r").order_by(t.c.id))
        recorded = [tuple(row) for row in rows]
    assert recorded == [
        ("rerank:unconfirmed", "cohere:rerank-v3.5"),
        ("rerank:unconfirmed#2", "cohere:rerank-v3.5"),
        ("rerank:unconfirmed#3", "jina:jina-reranker-v2"),
        ("rerank:unconfirmed#4", "cohere:rerank-v3.5"),  # the reaped hold, at its estimate
    ]
    assert ledger.spent("course", "python-101", NOVEMBER) == pytest.approx(0.004 * 3 + 0.001)


def test_from_settings_defaults_to_sqlite_in_data_dir(tmp_path: Path) -> None:
    with Ledger.from_settings(Settings(data_dir=tmp_path / "data")) as ledger:
        ledger.record(make_record())
    assert (tmp_path / "data" / "ledger.sqlite").is_file()


def test_plain_postgresql_urls_use_psycopg(pg_url: str, pg_table: str) -> None:
    plain = pg_url.replace("+psycopg", "")  # SQLAlchemy would pick psycopg2, which is not installed
    with Ledger(plain, table=pg_table) as ledger:
        assert ledger.record(make_record())


def test_ledger_url_comes_from_settings(tmp_path: Path) -> None:
    settings = Settings(cost={"ledger_url": f"sqlite:///{tmp_path / 'elsewhere.sqlite'}"})  # type: ignore[arg-type]
    with Ledger.from_settings(settings) as ledger:
        ledger.record(make_record())
    assert (tmp_path / "elsewhere.sqlite").is_file()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "not a database URL"),
        ("mysql://u@h/db", "only sqlite and postgresql"),
        ("sqlite://", "needs a file"),
    ],
)
def test_unusable_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Ledger(url)


def test_bad_table_name_is_refused(sqlite_url: str) -> None:
    with pytest.raises(ConfigError, match="table name"):
        Ledger(sqlite_url, table="calls; DROP TABLE x")


def test_unreachable_database_is_a_store_error_without_the_password() -> None:
    ledger = Ledger("postgresql+psycopg://u:s3cret@127.0.0.1:9/db", connect_timeout_s=2)
    with pytest.raises(StoreError, match=r"ledger postgresql\+psycopg://u:\*\*\*@127.0.0.1:9/db") as caught:
        ledger.record(make_record())
    assert "s3cret" not in str(caught.value)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_record(time=datetime(2026, 11, 3))


def test_cache_hit_means_nothing_was_sent() -> None:
    assert make_record(documents=5, cache_hits=5).cache_hit
    assert not make_record(documents=5, cache_hits=2).cache_hit
    assert not make_record(documents=0, cache_hits=0).cache_hit


def test_written_columns_round_trip(sqlite_url: str) -> None:
    record: LedgerRecord = make_record("x", tenant=None, cost_usd=None, cache_hits=120)
    with Ledger(sqlite_url) as ledger:
        ledger.record(record)
        with ledger._engine.connect() as conn:
            row = conn.execute(sa.text("SELECT * FROM leanrank_rerank_calls")).mappings().one()
    assert row["time"] == "2026-11-03 10:00:00.000000"
    assert (row["tenant"], row["cost_usd"], row["cache_hit"], row["cache_hits"]) == (None, None, 1, 120)
    assert (row["request_id"], row["billed_unit"], row["latency_ms"]) == ("x", "search_units", 85.0)


def test_concurrent_writes_share_one_commit_and_keep_their_own_errors(ledger: Ledger) -> None:
    """Group commit: writes queued while a commit runs go together in the next transaction; a write that
    fails there (a request id already held) fails alone, the others are committed before they return."""
    ledger.reserve(Hold(NOV_3, "taken", "rerank", "python-101", None, 0.0), [], lambda _: True)
    commits: list[int] = []
    sa.event.listen(ledger._engine, "commit", lambda _conn: commits.append(1))
    outcomes: dict[str, object] = {}

    def write(rid: str) -> None:
        try:
            if rid == "taken":
                ledger.reserve(Hold(NOV_3, rid, "rerank", "python-101", None, 0.0), [], lambda _: True)
            else:
                outcomes[rid] = ledger.record(make_record(rid))
        except RequestConflictError as exc:
            outcomes[rid] = exc

    names = [*(f"g{i}" for i in range(7)), "taken"]
    with ledger._commit_lock:  # a commit in progress: every write below queues behind it
        threads = [threading.Thread(target=write, args=(rid,)) for rid in names]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(ledger._queued) < len(names) and time.monotonic() < deadline:
            time.sleep(0.01)
    for thread in threads:
        thread.join(30)
    assert len(commits) == 1
    assert isinstance(outcomes.pop("taken"), RequestConflictError)
    assert outcomes == {f"g{i}": True for i in range(7)}
    [total] = ledger.totals("course", NOVEMBER)
    assert total.calls == 7


def test_a_hold_commits_without_a_sync_and_a_record_with_one(sqlite_url: str) -> None:
    with Ledger(sqlite_url) as ledger:
        modes: list[int] = []

        def seen(conn: sa.Connection) -> None:
            modes.append(conn.exec_driver_sql("PRAGMA synchronous").scalar())

        sa.event.listen(ledger._engine, "commit", seen)
        hold = Hold(NOV_3, "r1", "rerank", "python-101", None, 0.0)
        ledger.reserve(hold, [], lambda _: True)
        ledger.settle(make_record("r1"))
        ledger.reserve(replace(hold, request_id="r2"), [], lambda _: True)
        ledger.release(replace(hold, request_id="r2"))
        # schema (FULL); hold NORMAL, settlement FULL, hold NORMAL, release of a hold NORMAL
        assert modes == [2, 1, 2, 1, 1]


def _queue_batch(
    ledger: Ledger, writes: Sequence[Hold | LedgerRecord], errors: list[str]
) -> list[threading.Thread]:
    """Start `writes` (holds for tenant school-a, records) on threads that commit them together, in this
    order, as one group commit; failures go to `errors`."""

    def write(item: Hold | LedgerRecord) -> None:
        try:
            if isinstance(item, Hold):
                ledger.reserve(item, [("tenant", "school-a", NOVEMBER)], lambda _: True)
            else:
                ledger.settle(item)
        except StoreError as exc:
            errors.append(f"{item.request_id}: {exc}")

    threads = [threading.Thread(target=write, args=(item,)) for item in writes]
    with ledger._commit_lock:  # a commit in progress: the writes queue behind it, in order
        for n, thread in enumerate(threads, 1):
            thread.start()
            _until(lambda n=n: len(ledger._queued) == n)  # type: ignore[misc]
    return threads


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 20
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_two_replicas_reserving_and_recording_one_tenant_at_once_never_deadlock(
    pg_url: str, pg_table: str
) -> None:
    """PostgreSQL: one replica's group commit records a call of a tenant (locking its day total) and then
    reserves; another's reserves (holding the holds' lock) and then records a call of the same tenant.
    Every write transaction takes the ledger's lock first, so they queue; else each waits for the other
    and the database kills one, failing a call that was already served and paid for."""
    hold = Hold(NOV_3, "", "rerank", None, "school-a", 0.004)
    engine = sa.create_engine(pg_url)
    waiting = sa.text(  # sessions waiting for a lock on the ledger's tables, or for its advisory lock
        "SELECT count(*) FROM pg_stat_activity a WHERE a.wait_event_type = 'Lock' AND (a.query LIKE :table"
        " OR EXISTS (SELECT FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted AND l.objid = :lock))"
    )
    errors: list[str] = []
    with Ledger(pg_url, table=pg_table) as one, Ledger(pg_url, table=pg_table) as two:
        one.record(make_record("first"))  # the tenant's day total exists from here on
        where = {"table": f"%{pg_table}%", "lock": one._lock_id}
        # Autocommit: inside a transaction, pg_stat_activity stays as it was at the first look.
        with (
            engine.connect() as other,
            engine.connect().execution_options(isolation_level="AUTOCOMMIT") as probe,
        ):
            # A third replica is recording a call of the tenant: its day total is locked until it commits.
            other.execute(sa.text(f"UPDATE {pg_table}_spend SET cost_usd = cost_usd WHERE name = 'school-a'"))
            threads = _queue_batch(one, [make_record("a"), replace(hold, request_id="b")], errors)
            _until(lambda: probe.execute(waiting, where).scalar_one() >= 1)
            threads += _queue_batch(two, [replace(hold, request_id="c"), make_record("d")], errors)
            _until(lambda: probe.execute(waiting, where).scalar_one() >= 2)
            other.commit()
        for thread in threads:
            thread.join(30)
        assert errors == []
        [total] = one.totals("tenant", NOVEMBER)
        assert (total.calls, total.cost_usd) == (3, pytest.approx(0.012))
    engine.dispose()


def test_a_call_settled_after_its_hold_was_reaped_counts_once_at_its_cost(ledger: Ledger) -> None:
    """The settlement waited past the deadline's margin: another reservation reaped the hold and recorded
    the call at its estimate. The settlement's record replaces that one; the day totals follow."""
    hold = Hold(NOV_3, "late", "rerank", "python-101", "school-a", 0.5, "cohere:rerank-v3.5", 120)
    ledger.reserve(replace(hold, expires=NOV_3 + timedelta(minutes=4)), [], lambda _: True)
    ledger.reserve(replace(hold, request_id="other", time=NOV_3 + timedelta(minutes=5)), [], lambda _: True)
    assert ledger.spent("course", "python-101", NOVEMBER) == pytest.approx(0.5)  # reaped, at the estimate
    settled = ledger.settle(make_record("late", cost_usd=0.004))
    assert (settled.recorded, settled.unconfirmed) == (True, [])
    [replaced] = settled.replaced  # what the reaping wrote, now gone: `/metrics` takes it back apart
    assert (replaced.stage, replaced.cost_usd, replaced.documents) == ("rerank:unconfirmed", 0.5, 120)
    t = ledger._table
    with ledger._engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.stage, t.c.cost_usd).where(t.c.request_id == "late")).all()
    assert [tuple(r) for r in rows] == [("rerank", 0.004)]
    assert ledger.spent("course", "python-101", NOVEMBER) == pytest.approx(0.004)
    assert ledger.spent("tenant", "school-a", Period.day_of(NOV_3)) == pytest.approx(0.004)


def test_possibly_billed_records_are_numbered_after_the_highest_one_there(ledger: Ledger) -> None:
    """A chain `free | paid` numbered its paid link's record `#2` by place before the ledger numbered
    them: a resend's record must not take `#2` again (it would be dropped as a duplicate)."""
    ledger.record(make_record("r", stage="rerank:unconfirmed#2", count_source="estimate"))
    hold = Hold(NOV_3, "r", "rerank", "python-101", "school-a", 0.004, "cohere:rerank-v3.5", 120)
    ledger.reserve(hold, [], lambda _: True)
    ledger.release(hold, [make_record("r", count_source="estimate")])
    t = ledger._table
    with ledger._engine.connect() as conn:
        stages = conn.execute(sa.select(t.c.stage).where(t.c.request_id == "r").order_by(t.c.id)).scalars()
        assert list(stages) == ["rerank:unconfirmed#2", "rerank:unconfirmed#3"]


@contextmanager
def _write_lock_held(database: str, url: str, table: str) -> Iterator[None]:
    """Another connection holding the ledger's write lock in an open transaction (a stuck replica, a
    transaction left open by hand): PostgreSQL's advisory lock of the ledger (key: CRC-32 of its table's
    name), SQLite's write lock."""
    if database == "sqlite":
        stuck = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        stuck.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            stuck.execute("ROLLBACK")
            stuck.close()
        return
    engine = sa.create_engine(url)
    try:
        with engine.connect() as other:
            other.execute(sa.select(sa.func.pg_advisory_xact_lock(zlib.crc32(table.encode()))))
            try:
                yield
            finally:
                other.rollback()
    finally:
        engine.dispose()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_write_lock_held_elsewhere_fails_a_reservation_at_the_lock_timeout_writing_nothing(
    request: pytest.FixtureRequest, tmp_path: Path, database: str
) -> None:
    """The reservation would also reap an expired hold. With the lock held elsewhere it waits up to the lock
    timeout (0.2 s), then fails with `LedgerError` (the service's 503), naming the setting; it wrote nothing:
    the expired hold is still there, unreaped, and the request id is free. Once the lock is let go, the same
    reservation goes through."""
    if database == "sqlite":
        url, table = f"sqlite:///{tmp_path / 'ledger.sqlite'}", DEFAULT_TABLE
    else:
        url, table = request.getfixturevalue("pg_url"), request.getfixturevalue("pg_table")
    dead = Hold(NOV_3, "dead", "rerank", "python-101", "school-a", 0.004, "cohere:rerank-v3.5", 120, NOV_3)
    hold = Hold(NOV_3 + timedelta(minutes=1), "blocked", "rerank", "python-101", "school-a", 0.002)
    november = [("course", "python-101", NOVEMBER)]
    with Ledger(url, table=table, lock_timeout_s=0.2) as ledger:
        ledger.record(make_record("before"))
        ledger.reserve(dead, [], lambda _: True)
        outcome: list[Reservation | BaseException] = []

        def reserve() -> None:
            try:
                outcome.append(ledger.reserve(hold, november, lambda _: True))
            except BaseException as exc:
                outcome.append(exc)

        with _write_lock_held(database, url, table):
            waiting = threading.Thread(target=reserve)
            waiting.start()
            waiting.join(10)  # a few seconds: it returns, however long it took
            returned = not waiting.is_alive()
        waiting.join(30)  # one that waited on would go on once the lock is let go
        assert returned, "the reservation waited for the lock past its timeout"
        [failure] = outcome
        assert isinstance(failure, LedgerError), failure
        assert "cost.ledger_lock_timeout_s, 0.2 s" in str(failure)
        [total] = ledger.totals("course", NOVEMBER)
        assert (total.calls, total.unconfirmed, total.cost_usd) == (1, 0, pytest.approx(0.004))
        with ledger._engine.connect() as conn:
            assert conn.execute(sa.select(ledger._holds.c.request_id)).scalars().all() == ["dead"]
        later = ledger.reserve(hold, november, lambda _: True)
        assert (later.committed, later.admitted) == ([pytest.approx(0.004 + 0.004)], True)
        assert [(r.request_id, r.stage) for r in later.reaped] == [("dead", "rerank:unconfirmed")]


def test_the_lock_timeout_comes_from_settings_and_fits_the_hold_margin(tmp_path: Path) -> None:
    """SQLite's busy timeout is the same setting (in ms); at most 30 s, so a hold's minute of margin covers
    a wait on either side of its call."""
    settings = Settings(data_dir=tmp_path, cost=CostSettings(ledger_lock_timeout_s=0.2))
    with Ledger.from_settings(settings) as ledger, ledger._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 200
    assert CostSettings().ledger_lock_timeout_s == 5.0
    for refused in (0.0, 31.0):
        with pytest.raises(ValidationError, match="ledger_lock_timeout_s"):
            CostSettings(ledger_lock_timeout_s=refused)
    with pytest.raises(ConfigError, match="lock timeout must be positive"):
        Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}", lock_timeout_s=0)


def test_sqlite_writes_keep_one_connection_per_sync_mode_and_set_each_mode_once(tmp_path: Path) -> None:
    """Ten paid calls (a hold, unsynced; then its record, synced) write on two connections, one per sync
    mode, and set each mode once: NORMAL for holds (the records' connection was set to FULL by the record
    before counting). A write refused by the ledger itself (a hold under a request id already billed) keeps
    its connection."""
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as ledger:
        ledger.record(make_record("first"))
        writers: set[int] = set()
        modes: list[str] = []

        def trace(driver: sqlite3.Connection) -> None:
            """Note the statements run on `driver` (the ledger runs a paid call's on the driver itself)."""

            def note(statement: str) -> None:
                if statement.startswith("BEGIN IMMEDIATE"):
                    writers.add(id(driver))
                if statement.startswith("PRAGMA synchronous="):
                    modes.append(statement.rsplit("=", 1)[1])

            driver.set_trace_callback(note)

        for kept in ledger._writers.values():
            trace(kept.connection.driver_connection)
        sa.event.listen(ledger._engine, "connect", lambda driver, _record: trace(driver))

        def hold(request_id: str) -> Hold:
            backend = "cohere:rerank-v3.5"
            return Hold(NOV_3, request_id, "rerank", "python-101", "school-a", 0.002, backend, 20)

        for i in range(10):
            ledger.reserve(hold(f"call-{i}"), [], lambda _: True)
            ledger.settle(make_record(f"call-{i}"))
        assert (len(writers), modes) == (2, ["NORMAL"])
        with pytest.raises(RequestConflictError):
            ledger.reserve(hold("call-0"), [], lambda _: True)
        ledger.reserve(hold("call-10"), [], lambda _: True)
        assert (len(writers), modes) == (2, ["NORMAL"])
        [total] = ledger.totals("course", NOVEMBER)
        assert total.calls == 11


def test_a_statement_failing_on_the_driver_is_a_ledger_error_that_writes_nothing(tmp_path: Path) -> None:
    """A settlement's insert fails inside SQLite (a trigger refuses it, as a full disk or a corrupt page
    would): `LedgerError`, the whole transaction rolled back (the hold still claims its id, no spend is
    counted), and the next write on a fresh connection records the call once."""
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as ledger:
        hold = Hold(NOV_3, "r1", "rerank", "python-101", "school-a", 0.004, "cohere:rerank-v3.5", 20)
        ledger.reserve(hold, [], lambda _: True)
        with ledger._engine.begin() as conn:
            refuse = "BEGIN SELECT RAISE(ABORT, 'no room'); END"
            conn.exec_driver_sql(f"CREATE TRIGGER refuse BEFORE INSERT ON {DEFAULT_TABLE} {refuse}")
        with pytest.raises(LedgerError, match="no room"):
            ledger.settle(make_record("r1"))
        with pytest.raises(RequestConflictError, match="still running"):
            ledger.reserve(hold, [], lambda _: True)
        assert ledger.totals("course", NOVEMBER) == []
        assert ledger.spent("course", "python-101", NOVEMBER) == 0.0
        with ledger._engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER refuse")
        assert ledger.settle(make_record("r1")).recorded
        [total] = ledger.totals("course", NOVEMBER)
        assert (total.calls, total.cost_usd) == (1, pytest.approx(0.004))
        assert ledger.spent("course", "python-101", NOVEMBER) == pytest.approx(0.004)
