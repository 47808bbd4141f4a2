"""Ledgers for the cost tests: SQLite in tmp_path, and the real PostgreSQL at 127.0.0.1:5432 when it is up.

Each PostgreSQL test gets its own table, dropped afterwards, so runs never see each other's rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from leanrank.cost.ledger import Ledger, LedgerRecord

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
NOV_3 = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)


def make_record(request_id: str = "r1", **fields: Any) -> LedgerRecord:
    """A Cohere call of 120 documents (2 search units, $0.004), overridable field by field."""
    values: dict[str, Any] = {
        "time": NOV_3,
        "request_id": request_id,
        "course": "python-101",
        "tenant": "school-a",
        "stage": "rerank",
        "backend": "cohere:rerank-v3.5",
        "model": "rerank-v3.5",
        "documents": 120,
        "query_tokens": 12,
        "document_tokens": 19_200,
        "billed_units": 2.0,
        "billed_unit": "search_units",
        "cost_usd": 0.004,
        "latency_ms": 85.0,
        "cache_hits": 0,
        "count_source": "reported",
    }
    return LedgerRecord(**(values | fields))


def _pg_reachable() -> str | None:
    engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        return f"PostgreSQL at 127.0.0.1:5432 is unreachable ({str(exc.orig).splitlines()[0]})"
    finally:
        engine.dispose()
    return None


@pytest.fixture(scope="session")
def pg_url() -> str:
    reason = _pg_reachable()
    if reason is not None:
        pytest.skip(reason)
    return PG_URL


@pytest.fixture
def pg_table(pg_url: str) -> Iterator[str]:
    """A fresh table name; every table whose name starts with it (holds, replies, the version table) is
    dropped after the test."""
    name = f"test_ledger_{uuid.uuid4().hex[:12]}"
    yield name
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        for table in sa.inspect(conn).get_table_names():
            if table.startswith(name):
                conn.execute(sa.text(f'DROP TABLE IF EXISTS "{table}" CASCADE'))
    engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.sqlite'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """The same tests on both databases."""
    if request.param == "sqlite":
        opened = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    else:
        opened = Ledger(request.getfixturevalue("pg_url"), table=request.getfixturevalue("pg_table"))
    with opened:
        yield opened
