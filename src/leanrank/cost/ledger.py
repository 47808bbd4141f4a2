"""The cost ledger: one row per rerank call, durable before `record()` returns, queried for totals.

SQLite is the default (a file under `data_dir`, any number of processes on one machine): WAL mode lets
readers run beside the writer, and `synchronous=FULL` syncs the WAL at every commit, so a recorded call
survives a power cut and not just a crash of the process. That costs one fsync per call, small next to a
network rerank. PostgreSQL serves several machines (`postgresql://...`, through psycopg 3, pooled, with a
connect timeout). A retried request must not be billed twice: `(request_id, stage)` is unique and a
repeated write is dropped by the database (`INSERT ... ON CONFLICT DO NOTHING`), also between processes.
"""

from __future__ import annotations

import importlib.util
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    case,
    create_engine,
    distinct,
    event,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, ProgrammingError, SQLAlchemyError
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.sql.expression import ColumnElement, Executable
from sqlalchemy.types import TypeDecorator

from leanrank.cost.period import Period
from leanrank.errors import ConfigError, DependencyError, StoreError
from leanrank.rerank.base import BilledUnit, CountSource
from leanrank.settings import Settings

GroupBy = Literal["course", "backend", "day", "tenant"]
Scope = Literal["course", "tenant"]

DEFAULT_TABLE = "leanrank_rerank_calls"
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerRecord:
    """One rerank call: who it was for, what served it, what it consumed and cost (None: price unknown).

    `documents` counts the documents the call scored, `cache_hits` those of them served from the score
    cache (not sent, not billed).
    """

    time: datetime
    request_id: str
    course: str | None
    tenant: str | None
    stage: str
    backend: str
    model: str
    documents: int
    query_tokens: int
    document_tokens: int
    billed_units: float
    billed_unit: BilledUnit
    cost_usd: float | None
    latency_ms: float
    cache_hits: int
    count_source: CountSource

    def __post_init__(self) -> None:
        if self.time.tzinfo is None:
            raise ValueError("LedgerRecord.time must be timezone-aware (UTC)")

    @property
    def cache_hit(self) -> bool:
        """Every document came from the cache: nothing was sent to a backend."""
        return self.documents > 0 and self.cache_hits >= self.documents


@dataclass(frozen=True, slots=True)
class Total:
    """Sums over the calls of one group.

    `requests` counts distinct request ids; `unpriced` the calls whose cost is unknown (not in `cost_usd`).
    """

    key: str | None
    calls: int
    requests: int
    documents: int
    cache_hits: int
    query_tokens: int
    document_tokens: int
    cost_usd: float
    unpriced: int


class CostLedger(Protocol):
    """What budgets, the meter and reports need from a ledger."""

    def record(self, record: LedgerRecord) -> bool: ...

    def totals(self, by: GroupBy, period: Period) -> list[Total]: ...

    def spent(self, scope: Scope, name: str, period: Period) -> float: ...


class _UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, UTC stored: `timestamptz` on PostgreSQL, naive UTC text on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("ledger times must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value


def _table(name: str) -> Table:
    return Table(
        name,
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("time", _UtcDateTime(), nullable=False),
        Column("request_id", String(200), nullable=False),
        Column("course", String(200)),
        Column("tenant", String(200)),
        Column("stage", String(100), nullable=False),
        Column("backend", String(500), nullable=False),
        Column("model", String(500), nullable=False),
        Column("documents", Integer, nullable=False),
        Column("query_tokens", Integer, nullable=False),
        Column("document_tokens", Integer, nullable=False),
        Column("billed_units", Float, nullable=False),
        Column("billed_unit", String(16), nullable=False),
        Column("cost_usd", Float),
        Column("latency_ms", Float, nullable=False),
        Column("cache_hit", Boolean, nullable=False),
        Column("cache_hits", Integer, nullable=False),
        Column("count_source", String(16), nullable=False),
        UniqueConstraint("request_id", "stage", name=f"{name}_request_stage"),
        Index(f"{name}_time", "time"),
        Index(f"{name}_course_time", "course", "time"),
        Index(f"{name}_tenant_time", "tenant", "time"),
    )


class Ledger:
    """A `CostLedger` on SQLAlchemy Core over SQLite or PostgreSQL; the table is created on first use.

    `table` names the table (tests give each run its own). Database failures raise `StoreError` with the
    URL's password hidden.
    """

    def __init__(
        self,
        url: str,
        *,
        table: str = DEFAULT_TABLE,
        connect_timeout_s: float = 10.0,
        pool_size: int = 5,
    ) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ConfigError(
                "cost.ledger_url is not a database URL (sqlite:///PATH, postgresql+psycopg://...)"
            ) from None
        if not _TABLE_NAME.fullmatch(table):
            raise ConfigError(f"ledger table name {table!r}: letters, digits and _ only, at most 41")
        self._where = parsed.render_as_string(hide_password=True)
        self._dialect = parsed.get_backend_name()
        self._engine = self._connect(parsed, connect_timeout_s, pool_size)
        self._table = _table(table)
        self._ready = False
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Ledger:
        """`cost.ledger_url`, else SQLite at `<data_dir>/ledger.sqlite`."""
        url = settings.cost.ledger_url
        if url is not None:
            return cls(url.get_secret_value())
        return cls(f"sqlite:///{(settings.data_dir / 'ledger.sqlite').absolute()}")

    def _connect(self, url: URL, timeout_s: float, pool_size: int) -> Engine:
        if self._dialect == "postgresql":
            if importlib.util.find_spec("psycopg") is None:
                raise DependencyError("psycopg", "postgres")
            return create_engine(
                url.set(drivername="postgresql+psycopg"),  # the driver the `postgres` extra installs
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_timeout=timeout_s,
                pool_pre_ping=True,
                # libpq takes whole seconds and treats values below 2 as 2.
                connect_args={"connect_timeout": max(2, round(timeout_s))},
            )
        if self._dialect != "sqlite":
            raise ConfigError(f"ledger database {self._where}: only sqlite and postgresql are supported")
        if url.database in (None, "", ":memory:"):
            raise ConfigError("the SQLite ledger needs a file: sqlite:///PATH")
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        # `timeout` is how long a writer waits for another process's lock before failing.
        engine = create_engine(
            url, connect_args={"timeout": max(timeout_s, 30.0), "check_same_thread": False}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine

    def record(self, record: LedgerRecord) -> bool:
        """Write and commit one call; False when `(request_id, stage)` was already recorded."""
        row: dict[str, Any] = asdict(record) | {"cache_hit": record.cache_hit}
        with self._errors(), self._engine.begin() as conn:
            # RETURNING, not rowcount: drivers disagree on rowcount once RETURNING is implicit.
            return conn.execute(self._insert_once(row)).first() is not None

    def totals(self, by: GroupBy, period: Period) -> list[Total]:
        """Sums per course, backend, UTC day (`YYYY-MM-DD`) or tenant over `period`, ordered by key."""
        t = self._table
        key = self._day() if by == "day" else t.c[by]
        stmt = (
            select(
                key.label("key"),
                func.count(),
                func.count(distinct(t.c.request_id)),
                func.sum(t.c.documents),
                func.sum(t.c.cache_hits),
                func.sum(t.c.query_tokens),
                func.sum(t.c.document_tokens),
                func.coalesce(func.sum(t.c.cost_usd), 0.0),
                func.sum(case((t.c.cost_usd.is_(None), 1), else_=0)),
            )
            .where(t.c.time >= period.start, t.c.time < period.end)
            .group_by("key")
        )
        with self._errors(), self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        totals = [
            Total(
                r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6]), float(r[7]), int(r[8])
            )
            for r in rows
        ]
        return sorted(totals, key=lambda total: (total.key is None, total.key or ""))

    def spent(self, scope: Scope, name: str, period: Period) -> float:
        """Known cost of one course's or tenant's calls over `period`."""
        t = self._table
        stmt = select(func.coalesce(func.sum(t.c.cost_usd), 0.0)).where(
            t.c[scope] == name, t.c.time >= period.start, t.c.time < period.end
        )
        with self._errors(), self._engine.connect() as conn:
            return float(conn.execute(stmt).scalar_one())

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _insert_once(self, row: dict[str, Any]) -> Executable:
        conflict = ["request_id", "stage"]
        t = self._table
        if self._dialect == "postgresql":
            return (
                postgresql.insert(t)
                .values(row)
                .on_conflict_do_nothing(index_elements=conflict)
                .returning(t.c.id)
            )
        return sqlite.insert(t).values(row).on_conflict_do_nothing(index_elements=conflict).returning(t.c.id)

    def _day(self) -> ColumnElement[str]:
        time = self._table.c.time
        if self._dialect == "postgresql":
            return func.to_char(func.timezone("UTC", time), "YYYY-MM-DD")
        return func.strftime("%Y-%m-%d", time)

    def _create_schema(self) -> None:
        """CREATE ... IF NOT EXISTS, retried once: two processes creating it at once may both pass it."""
        for attempt in (1, 2):
            try:
                with self._engine.begin() as conn:
                    conn.execute(CreateTable(self._table, if_not_exists=True))
                    for index in sorted(self._table.indexes, key=lambda i: str(i.name)):
                        conn.execute(CreateIndex(index, if_not_exists=True))
                return
            except (IntegrityError, ProgrammingError):
                if attempt == 2:
                    raise

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            if not self._ready:
                with self._lock:
                    if not self._ready:
                        self._create_schema()
                        self._ready = True
            yield
        except SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc
            first_line = (str(cause).strip().splitlines() or [""])[0]
            raise StoreError(f"ledger {self._where}: {type(cause).__name__}: {first_line}") from exc


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()
