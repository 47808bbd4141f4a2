"""Ledger schema migrations on real SQLite and PostgreSQL: new ledgers, ledgers made before migrations
(schema and rows in `data/`, written by leanrank's code of before), and two processes opening one at once."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from leanrank.cost import migrations
from leanrank.cost.ledger import (
    DEFAULT_TABLE,
    HOLD_TTL,
    Hold,
    Ledger,
    RequestConflictError,
    _sqlite_pragmas,
)
from leanrank.cost.period import Period
from leanrank.errors import ConfigError
from tests.cost.conftest import NOV_3, make_record

DATA = Path(__file__).parent / "data"
NOVEMBER = Period.parse("2026-11")


def _tables(prefix: str) -> list[str]:
    return [prefix, f"{prefix}_holds", f"{prefix}_replies", f"{prefix}_spend"]


def _schema(url: str, prefix: str) -> dict[str, Any]:
    """The schema as the database reports it (columns, keys, unique constraints, indexes), prefix elided."""
    engine = sa.create_engine(url)
    inspector = sa.inspect(engine)

    def named(items: list[Any]) -> list[tuple[str, tuple[str, ...]]]:
        return sorted((str(i["name"]).replace(prefix, "P"), tuple(i["column_names"])) for i in items)

    schema = {
        table.replace(prefix, "P"): {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
            "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
            "unique": named(inspector.get_unique_constraints(table)),
            "indexes": named(inspector.get_indexes(table)),
        }
        for table in _tables(prefix)
        if inspector.has_table(table)
    }
    engine.dispose()
    return schema


def _at(url: str, prefix: str) -> str | None:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        revision = migrations.current(conn, prefix)
    engine.dispose()
    return revision


def _legacy(url: str, prefix: str) -> None:
    """The ledger `prefix` as leanrank made it before migrations: its DDL and two calls and a hold.

    The SQLite script is a dump of a file the old code wrote; PostgreSQL gets the DDL the old code
    issued, and the same rows through plain inserts.
    """
    if url.startswith("sqlite"):
        with sqlite3.connect(sa.make_url(url).database or "") as conn:
            conn.executescript((DATA / "ledger-0.1.sqlite.sql").read_text().replace(DEFAULT_TABLE, prefix))
        conn.close()
        return
    ddl = (DATA / "ledger-0.1.postgresql.sql").read_text().replace(DEFAULT_TABLE, prefix)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in filter(str.strip, ddl.split(";")):
            conn.exec_driver_sql(statement)
        calls = sa.Table(prefix, sa.MetaData(), autoload_with=conn)
        holds = sa.Table(f"{prefix}_holds", sa.MetaData(), autoload_with=conn)
        old = ((1, "python-101", "school-a", 0.004, 0), (2, "c2", None, None, 120))
        for n, course, tenant, cost, hits in old:
            conn.execute(
                calls.insert().values(
                    time=NOV_3.replace(minute=n),
                    request_id=f"old-{n}",
                    course=course,
                    tenant=tenant,
                    stage="rerank",
                    backend="cohere:rerank-v3.5",
                    model="rerank-v3.5",
                    documents=120,
                    query_tokens=12,
                    document_tokens=19_200,
                    billed_units=2.0,
                    billed_unit="search_units",
                    cost_usd=cost,
                    latency_ms=85.0,
                    cache_hit=hits == 120,
                    cache_hits=hits,
                    count_source="reported",
                )
            )
        conn.execute(holds.insert().values(time=NOV_3, request_id="old-3", stage="rerank", amount_usd=0.002))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(URL, table prefix) of an empty database on each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.sqlite'}", DEFAULT_TABLE
    else:
        yield request.getfixturevalue("pg_url"), request.getfixturevalue("pg_table")


def test_a_new_ledger_is_at_the_newest_revision_and_matches_the_code(database: tuple[str, str]) -> None:
    url, prefix = database
    with Ledger(url, table=prefix) as ledger:
        ledger.record(make_record())
        ours = set(_tables(prefix))
        with ledger._engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_name": lambda name, kind, _parent: kind != "table" or name in ours,
                },
            )
            # What the migrations built against what the code reads and writes: nothing differs.
            assert compare_metadata(context, ledger._table.metadata) == []
    assert _at(url, prefix) == migrations.head() == "0005"


def test_revision_0001_is_the_schema_made_before_migrations(
    database: tuple[str, str], tmp_path: Path
) -> None:
    url, prefix = database
    if url.startswith("sqlite"):
        old_url, new_url, new_prefix = url, f"sqlite:///{tmp_path / 'new.sqlite'}", prefix
    else:
        old_url, new_url, new_prefix = url, url, f"{prefix}_r1"  # the pg_table fixture drops both
    _legacy(old_url, prefix)
    engine = sa.create_engine(new_url)
    with engine.begin() as conn:
        migrations.upgrade(conn, new_prefix, "0001")
    engine.dispose()
    assert _schema(new_url, new_prefix) == _schema(old_url, prefix)


def test_a_ledger_made_before_migrations_is_upgraded_in_place(database: tuple[str, str]) -> None:
    url, prefix = database
    _legacy(url, prefix)
    assert _at(url, prefix) is None
    with Ledger(url, table=prefix) as ledger:
        c2, python = ledger.totals("course", NOVEMBER)
        assert (python.key, python.calls, python.cost_usd) == ("python-101", 1, pytest.approx(0.004))
        assert (c2.key, c2.calls, c2.unpriced, c2.cache_hits) == ("c2", 1, 1, 120)
        # The day totals budgets read are computed from the calls already there (c2's one is unpriced).
        assert ledger.spent("course", "python-101", NOVEMBER) == pytest.approx(0.004)
        assert ledger.spent("tenant", "school-a", Period.day_of(NOV_3)) == pytest.approx(0.004)
        assert ledger.spent("course", "c2", NOVEMBER) == 0.0
        with pytest.raises(RequestConflictError, match="'old-3' is still running"):  # the hold is kept
            ledger.reserve(Hold(NOV_3, "old-3", "rerank", None, None, 0.0), [], lambda _: True)
        assert ledger.record(make_record("old-1")) is False  # the unique key is kept
        assert ledger.record(make_record("new-1")) is True
        t = ledger._table
        with ledger._engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.c.request_id, t.c.documents_received, t.c.full_cost_usd).order_by(t.c.id)
            ).all()
    assert [tuple(r) for r in rows] == [("old-1", None, None), ("old-2", None, None), ("new-1", None, None)]
    assert _at(url, prefix) == migrations.head()
    with Ledger(url, table=prefix) as again:  # opening an upgraded ledger changes nothing
        assert [t.calls for t in again.totals("course", NOVEMBER)] == [1, 2]


def test_a_hold_written_at_revision_0003_keeps_its_hour_after_the_upgrade(database: tuple[str, str]) -> None:
    """A paid call's hold left at revision 0003 (no `expires`) by a process killed mid-call: the upgrade to
    0005 keeps it, it still claims its id for `HOLD_TTL`, then is recorded once as possibly billed; a hold
    written after the upgrade carries its own expiry."""
    url, prefix = database
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        migrations.upgrade(conn, prefix, "0003")
        holds = sa.Table(f"{prefix}_holds", sa.MetaData(), autoload_with=conn)
        conn.execute(
            holds.insert().values(
                time=NOV_3,
                request_id="old",
                stage="rerank",
                tenant="school-a",
                amount_usd=0.004,
                backend="cohere:rerank-v3.5",
                documents=150,
            )
        )
    engine.dispose()
    resend = Hold(NOV_3 + timedelta(minutes=59), "old", "rerank", None, "school-a", 0.0)
    with Ledger(url, table=prefix) as ledger:
        with pytest.raises(RequestConflictError, match="'old' is still running"):
            ledger.reserve(resend, [], lambda _: True)
        past = NOV_3 + HOLD_TTL + timedelta(seconds=1)
        ledger.reserve(replace(resend, time=past, expires=past + timedelta(minutes=4)), [], lambda _: True)
        ledger.reserve(replace(resend, time=past, request_id="next"), [], lambda _: True)  # nothing more
        [total] = ledger.totals("tenant", NOVEMBER)
        h = ledger._holds
        with ledger._engine.connect() as conn:
            kept = conn.execute(sa.select(h.c.request_id, h.c.expires).order_by(h.c.request_id)).all()
    assert (total.calls, total.unconfirmed, total.documents) == (1, 1, 150)
    assert total.cost_usd == pytest.approx(0.004)
    assert [tuple(row) for row in kept] == [("next", None), ("old", past + timedelta(minutes=4))]
    assert _at(url, prefix) == "0005"


def test_a_ledger_from_a_newer_leanrank_is_refused_untouched(sqlite_url: str) -> None:
    with Ledger(sqlite_url) as ledger:
        ledger.record(make_record())
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE {DEFAULT_TABLE}_alembic_version SET version_num = '0999'")
    engine.dispose()
    with Ledger(sqlite_url) as ledger, pytest.raises(ConfigError, match=r"revision '0999'.*upgrade leanrank"):
        ledger.totals("course", NOVEMBER)
    assert _at(sqlite_url, DEFAULT_TABLE) == "0999"


def _open_and_write(url: str, prefix: str, request_id: str, start: Event, results: Any) -> None:
    with Ledger(url, table=prefix) as ledger:
        start.wait(30)  # both processes find the old schema and race to upgrade it
        results.put(ledger.record(make_record(request_id)))


def test_two_processes_opening_an_old_ledger_at_once_upgrade_it_once(database: tuple[str, str]) -> None:
    url, prefix = database
    _legacy(url, prefix)
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    workers = [
        ctx.Process(target=_open_and_write, args=(url, prefix, name, start, results)) for name in ("a", "b")
    ]
    for worker in workers:
        worker.start()
    start.set()
    written = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(30)
    assert written == [True, True]
    assert _at(url, prefix) == migrations.head()
    with Ledger(url, table=prefix) as ledger:
        assert sum(t.calls for t in ledger.totals("course", NOVEMBER)) == 4


def test_a_connection_switches_an_old_ledger_to_wal_while_another_process_writes(tmp_path: Path) -> None:
    """An old ledger is not in WAL mode yet. While another connection holds its write lock, SQLite refuses
    the switch at once ("database is locked", no waiting): the new connection failed. Now it tries again
    until the writer commits, and neither waits on the other."""
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE t (x INTEGER)")
    writer = sqlite3.connect(path, isolation_level=None, timeout=5, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    opened: dict[str, Any] = {}

    def open_one() -> None:
        conn = sqlite3.connect(path, isolation_level=None, timeout=5, check_same_thread=False)
        _sqlite_pragmas(conn, None)
        opened["mode"] = conn.execute("PRAGMA journal_mode").fetchone()[0]
        opened["busy_timeout"] = conn.execute("PRAGMA busy_timeout").fetchone()[0]
        conn.close()

    opening = threading.Thread(target=open_one)
    opening.start()
    time.sleep(0.3)  # the new connection is asking while the write lock is held
    writer.execute("COMMIT")
    opening.join(10)
    writer.close()
    assert opened == {"mode": "wal", "busy_timeout": 5000}  # switched, and its own timeout restored
