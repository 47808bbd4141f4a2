"""A budgeted reservation's latency as the ledger grows: what reading spend from day totals saves.

Every paid call reserves its estimate inside the ledger's holds lock, reading what its course and tenant
spent this month and day; concurrent calls wait for it. The ledger is filled with N calls of one course
and tenant this month (in bulk, through the same insert a recorded call uses, so the day totals follow),
then at each size, side by side in the same run:

- `reserve`: `Budget.reserve` + `release` with a month cap per course and a day cap per tenant, as the
  meter does before and after a paid call (SQLite on disk, the hold committed unsynced);
- `scan`: summing the month's calls of the course from the calls table, what a reservation read before
  the day totals (`SUM(cost_usd) ... WHERE course = ? AND time in month`, on its `(course, time)` index).

    .venv/bin/python bench/budget.py [--sizes 0,1000,10000,100000] [--rounds 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from leanrank.cost.budget import Budget
from leanrank.cost.ledger import Hold, Ledger, LedgerRecord
from leanrank.cost.period import Period
from leanrank.settings import BudgetSettings

_BULK = 5_000


def _call(i: int, now: datetime) -> LedgerRecord:
    return LedgerRecord(
        time=now - timedelta(seconds=i % 600),
        request_id=f"call-{i}",
        course="ml",
        tenant="school",
        stage="rerank",
        backend="cohere:rerank-v3.5",
        model="rerank-v3.5",
        documents=20,
        query_tokens=12,
        document_tokens=3_000,
        billed_units=1.0,
        billed_unit="search_units",
        cost_usd=0.002,
        latency_ms=80.0,
        cache_hits=0,
        count_source="reported",
    )


def _fill(ledger: Ledger, start: int, stop: int, now: datetime) -> None:
    for first in range(start, stop, _BULK):
        rows = [asdict(_call(i, now)) | {"cache_hit": False} for i in range(first, min(first + _BULK, stop))]
        ledger._write(lambda conn, rows=rows: [ledger._insert(conn, row) for row in rows], durable=True)


def _ms(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="0,1000,10000,100000")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    now = datetime.now(UTC)
    month = Period.month_of(now)
    rules = [
        BudgetSettings(scope="course", name="*", period="month", hard_usd=1e9),
        BudgetSettings(scope="tenant", name="*", period="day", soft_usd=1e9),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, Ledger(f"sqlite:///{tmp}/ledger.sqlite") as ledger:
        budget = Budget(rules, ledger)
        calls = ledger._table
        scan = select(func.sum(calls.c.cost_usd)).where(
            calls.c.course == "ml", calls.c.time >= month.start, calls.c.time < month.end
        )
        filled = 0
        for size in (int(s) for s in args.sizes.split(",")):
            _fill(ledger, filled, size, now)
            filled = max(filled, size)
            reserve, scanned = [], []
            for r in range(args.rounds):
                hold = Hold(now, f"h{size}-{r}", "rerank", "ml", "school", 0.002, "cohere:rerank-v3.5", 20)
                t0 = time.perf_counter()
                budget.reserve(hold, paid=True)
                ledger.release(hold)
                t1 = time.perf_counter()
                with ledger._engine.connect() as conn:
                    conn.execute(scan).scalar_one()
                t2 = time.perf_counter()
                reserve.append(t1 - t0)
                scanned.append(t2 - t1)
            rows.append(
                {
                    "calls": size,
                    "reserve_p50_ms": _ms(reserve, 50),
                    "reserve_p95_ms": _ms(reserve, 95),
                    "scan_p50_ms": _ms(scanned, 50),
                    "scan_p95_ms": _ms(scanned, 95),
                }
            )
    print("| calls this month | reserve + release p50 / p95 ms | month scan alone p50 / p95 ms |")
    print("|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['calls']:,} | {row['reserve_p50_ms']:.2f} / {row['reserve_p95_ms']:.2f} "
            f"| {row['scan_p50_ms']:.2f} / {row['scan_p95_ms']:.2f} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "budget.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
