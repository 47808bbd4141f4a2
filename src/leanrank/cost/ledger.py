"""The cost ledger: one row per rerank call, durable before `record()` returns, queried for totals.

SQLite is the default (a file under `data_dir`, any number of processes on one machine): WAL mode lets
readers run beside the writer, and `synchronous=FULL` syncs the WAL at every commit, so a recorded call
survives a power cut and not just a crash of the process. That costs one fsync per call, small next to a
network rerank. PostgreSQL serves several machines (`postgresql://...`, through psycopg 3, pooled, with a
connect timeout). A retried request must not be billed twice: `(request_id, stage)` is unique and a
repeated write is dropped by the database (`INSERT ... ON CONFLICT DO NOTHING`), also between processes.

Before a call is made, `reserve` writes a hold (its estimated cost, under the same `(request_id, stage)`)
in one serialised transaction that also reads what is already spent and held, so concurrent calls, in
any number of processes or replicas, cannot all pass a budget meant for a few: SQLite takes the write
lock first (`BEGIN IMMEDIATE`), PostgreSQL the ledger's advisory lock (every write transaction takes it
first, so replicas never wait for each other's row locks in a cycle). Either waits at most the lock
timeout (`cost.ledger_lock_timeout_s`): a lock held longer (a stuck replica, a transaction left open by
hand) fails the write with `LedgerError`, writing nothing, rather than hanging every request behind it.
`settle` turns the hold into the call's record, `release` drops it. A hold also claims its request id: a
second call under the same id while the first runs, or after it was billed, is refused
(`RequestConflictError`). The answers of billed requests are kept beside (`keep_reply`), so a client
resending an id gets the first answer back.

Writes are group-committed: the writes of threads that arrive while a transaction commits share the next
one, each in its own savepoint (one write's failure leaves the others'), so concurrent requests pay one
sync to disk between them instead of one each. A hold is not a record: its transaction skips the sync
(`synchronous=NORMAL` on SQLite, `synchronous_commit=off` on PostgreSQL; both keep the database consistent
through a crash), and the settlement's synced commit later makes it durable with everything written before
it. A hold a power cut loses belonged to a process that died with it. Every call that writes a record
returns only once its transaction is synced.

Budgets read what a course or tenant spent this day or month at every paid call, inside the holds' lock, so
that sum must not grow with the ledger: summing a month's records took 33 ms a call at 100,000 records, and
every concurrent call waited for it. Each record therefore also adds its cost to a running total per
`(scope, name, UTC day)` in the same transaction (`<prefix>_spend`), and a period's spend is the sum of its
days: at most 31 rows whatever the volume.
"""

from __future__ import annotations

import importlib.util
import re
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
    and_,
    bindparam,
    case,
    create_engine,
    delete,
    distinct,
    event,
    exists,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.sql.compiler import Compiled
from sqlalchemy.sql.expression import ColumnElement, Delete, Insert, Select
from sqlalchemy.types import TypeDecorator

from leanrank.cost._names import chain_links, parse_backend
from leanrank.cost.period import Period
from leanrank.errors import ConfigError, DependencyError, LeanrankError, StoreError
from leanrank.rerank.base import BilledUnit, CountSource
from leanrank.settings import LEDGER_LOCK_TIMEOUT_S, Settings

_T = TypeVar("_T")
_Statement = Select[*tuple[Any, ...]] | Insert | Delete
GroupBy = Literal["course", "backend", "day", "tenant"]
Bucket = Literal["hour", "day"]
Scope = Literal["course", "tenant"]

DEFAULT_TABLE = "leanrank_rerank_calls"
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")
_SCHEMA_LOCK = 0x5C4E  # told apart from the writes' advisory lock of the same ledger
HOLD_TTL = timedelta(hours=1)
"""How long a hold that names no expiry of its own lasts (one written before the ledger's revision 0005, by an
older leanrank still running beside a newer one, or by a caller that gives none)."""
HOLD_MARGIN = timedelta(minutes=1)
"""What a hold's expiry adds to its call's deadline: the ledger writes on either side of the call (each waits
for the write lock up to the lock timeout, at most 30 s) and the clocks of machines sharing a PostgreSQL
ledger, which may disagree."""
REPLY_TTL = timedelta(days=1)
"""How long a billed request's answer is kept for replay (a later resend of its id is refused)."""
UNCONFIRMED = ":unconfirmed"
"""What a stage is suffixed with on the record of a call its provider may have billed though no answer was
used; the n-th such call under one `(request_id, stage)` (links of a fallback chain, attempts of a resent
request) adds `#n` from the second on."""


def unconfirmed_stage(stage: str, nth: int = 1) -> str:
    """The stage of the `nth` possibly billed call made for one `(request_id, stage)`: one record each."""
    return f"{stage}{UNCONFIRMED}" if nth == 1 else f"{stage}{UNCONFIRMED}#{nth}"


def _nth(stage: str) -> int:
    """`n` of an `unconfirmed_stage(…, n)`."""
    _, sep, n = stage.rpartition("#")
    return int(n) if sep and n.isdigit() else 1


class LedgerError(StoreError):
    """The cost ledger could not be read or written (not the index: the message names the database)."""


class RequestConflictError(LeanrankError):
    """A request id that is already in use: its call is still running, or it was billed for another body."""


@dataclass(frozen=True, slots=True)
class Hold:
    """Spend set aside for one call before it is made: its estimated cost in US dollars (0 for free).

    `backend` (the paid backend's name, None for a free call) and `documents` say what the call is, so a hold
    left by a process that died mid-call is recorded as possibly billed once it expires. `expires` is when
    its call is over for sure (the writer's own deadline, plus `HOLD_MARGIN`), None: `HOLD_TTL` after `time`.
    Past it, the hold belongs to a process that died mid-call: it is no longer held against budgets nor
    claims its request id, and a paid one becomes a possibly billed record at its estimate (the provider may
    have answered).
    """

    time: datetime
    request_id: str
    stage: str
    course: str | None
    tenant: str | None
    amount_usd: float
    backend: str | None = None
    documents: int = 0
    expires: datetime | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """The HTTP answer a billed request got, replayed to a client that resends its request id.

    `fingerprint` identifies the request (path, headers that change it, body) it answered.
    """

    fingerprint: str
    status: int
    headers: str
    body: bytes


Admit = Callable[[Sequence[float]], bool]
"""Decides, inside the reserving transaction, from the spent + held total of each scope, if a hold fits."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerRecord:
    """One rerank call: who it was for, what served it, what it consumed and cost (None: price unknown).

    `documents` counts the documents the call scored, `cache_hits` those of them served from the score
    cache (not sent, not billed). A gateway call whose cascade held documents back also says how many the
    client sent (`documents_received`) and what sending them all would have cost (`full_cost_usd`, by the
    same provider's billing rule over them as the request would have sent them, never below `cost_usd`);
    both are None where unknown (searches, older rows).
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
    documents_received: int | None = None
    full_cost_usd: float | None = None

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
    `unconfirmed` counts the calls recorded as possibly billed (stage `<stage>:unconfirmed…`: a timeout, an
    unusable answer, a client gone) and `unconfirmed_usd` their estimated cost; both are also in `calls`
    and `cost_usd`, which budgets count.
    `documents_received` and `full_cost_usd` count a call without those facts as its own `documents` and
    `cost_usd` (nothing held back), so `saved_usd` is what the gateway's cascade saved.
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
    documents_received: int = 0
    full_cost_usd: float = 0.0
    unconfirmed: int = 0
    unconfirmed_usd: float = 0.0

    @property
    def saved_usd(self) -> float:
        return self.full_cost_usd - self.cost_usd


@dataclass(frozen=True, slots=True)
class SeriesRow:
    """Sums over the calls of one UTC time bucket, course, tenant (key id) and backend.

    `bucket` is the bucket's start, `YYYY-MM-DDTHH:00` (hour) or `YYYY-MM-DD` (day). `documents_received`
    counts what clients sent (a call recorded without it counts its scored `documents`); `savings_usd`
    sums `full_cost_usd - cost_usd` over the calls that recorded both. `latency_ms_sum`, `latency_ms_max`
    and `backend_calls` cover the calls that reached a backend (not answered wholly from the cache).
    """

    bucket: str
    course: str | None
    tenant: str | None
    backend: str
    calls: int
    documents: int
    documents_received: int
    cache_hits: int
    query_tokens: int
    document_tokens: int
    cost_usd: float
    unpriced: int
    savings_usd: float
    backend_calls: int
    latency_ms_sum: float
    latency_ms_max: float


@dataclass(frozen=True, slots=True)
class Reservation:
    """What `reserve` read and wrote: spent + held per `(scope, name, period)` before the hold (US dollars),
    whether `admit` let the hold in, and the possibly billed records it wrote for the expired holds it reaped
    (stages as recorded: `<stage>:unconfirmed…`), so the process that wrote them can count them."""

    committed: list[float]
    admitted: bool
    reaped: list[LedgerRecord]


@dataclass(frozen=True, slots=True)
class Settlement:
    """What `settle` wrote: whether the call was recorded (False: already there), the possibly billed records
    written with it (none once its hold was reaped), and the records a reaping reservation had written for
    this call at its estimate that the call's own record replaced (deleted)."""

    recorded: bool
    unconfirmed: list[LedgerRecord]
    replaced: list[LedgerRecord]


class CostLedger(Protocol):
    """What budgets, the meter, the service and reports need from a ledger."""

    def record(self, record: LedgerRecord) -> bool: ...

    def reserve(
        self, hold: Hold, scopes: Sequence[tuple[Scope, str, Period]], admit: Admit
    ) -> Reservation: ...

    def settle(self, record: LedgerRecord, unconfirmed: Sequence[LedgerRecord] = ()) -> Settlement: ...

    def release(self, hold: Hold, unconfirmed: Sequence[LedgerRecord] = ()) -> list[LedgerRecord]: ...

    def find_reply(self, key: str) -> Reply | None: ...

    def keep_reply(self, key: str, reply: Reply) -> None: ...

    def ping(self) -> None: ...

    def totals(self, by: GroupBy, period: Period) -> list[Total]: ...

    def spent(self, scope: Scope, name: str, period: Period) -> float: ...

    def series(self, bucket: Bucket, period: Period) -> list[SeriesRow]: ...


class _UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in and out, UTC stored: `timestamptz` on PostgreSQL, naive UTC text on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("ledger times must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value if value is None or value.tzinfo is not None else value.replace(tzinfo=UTC)


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
        Column("documents_received", Integer),
        Column("full_cost_usd", Float),
        UniqueConstraint("request_id", "stage", name=f"{name}_request_stage"),
        Index(f"{name}_time", "time"),
        Index(f"{name}_course_time", "course", "time"),
        Index(f"{name}_tenant_time", "tenant", "time"),
    )


def _holds_table(name: str, metadata: MetaData) -> Table:
    return Table(
        f"{name}_holds",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("time", _UtcDateTime(), nullable=False),
        Column("request_id", String(200), nullable=False),
        Column("stage", String(100), nullable=False),
        Column("course", String(200)),
        Column("tenant", String(200)),
        Column("amount_usd", Float, nullable=False),
        Column("backend", String(200)),
        Column("documents", Integer),
        Column("expires", _UtcDateTime()),
        UniqueConstraint("request_id", "stage", name=f"{name}_holds_request_stage"),
    )


def _replies_table(name: str, metadata: MetaData) -> Table:
    return Table(
        f"{name}_replies",
        metadata,
        Column("key", String(300), primary_key=True),
        Column("time", _UtcDateTime(), nullable=False),
        Column("fingerprint", String(64), nullable=False),
        Column("status", Integer, nullable=False),
        Column("headers", String(4000), nullable=False),
        Column("body", LargeBinary, nullable=False),
        Index(f"{name}_replies_time", "time"),
    )


def _row(item: Hold | LedgerRecord | Reply) -> dict[str, Any]:
    """A row's columns by field name, shallow (`dataclasses.asdict` deep-copies every value on a paid
    call's path, work a row does not need)."""
    return {f.name: getattr(item, f.name) for f in fields(item)}


def _spend_table(name: str, metadata: MetaData) -> Table:
    """Known cost per `(scope, name, UTC day)`: `scope` is `course` or `tenant`, `day` is `YYYY-MM-DD`."""
    return Table(
        f"{name}_spend",
        metadata,
        Column("scope", String(16), nullable=False),
        Column("name", String(200), nullable=False),
        Column("day", String(10), nullable=False),
        Column("cost_usd", Float, nullable=False),
        PrimaryKeyConstraint("scope", "name", "day", name=f"{name}_spend_key"),
    )


def _days(period: Period) -> tuple[str, str]:
    """`period` as `[first day, end day)` keys of the spend totals; raises `ValueError` for a period that
    does not start and end at UTC midnight (every budget period and every `Period.parse` one does)."""
    start, end = period.start.astimezone(UTC), period.end.astimezone(UTC)
    if any(edge.time() != datetime.min.time() for edge in (start, end)):
        raise ValueError(f"spend totals are kept per UTC day; period {period.label!r} is not whole days")
    return start.date().isoformat(), end.date().isoformat()


@dataclass(slots=True, eq=False)
class _Write:
    """One write waiting for a group commit, then its outcome."""

    work: Callable[[Connection], Any]
    durable: bool
    done: bool = False
    result: Any = None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class _Compiled:
    """One of a paid call's ledger statements, compiled once for SQLite and run on the driver's connection.

    SQLAlchemy's execution layer (the compiled-cache lookup, events, the result object) cost more than the
    statements themselves: a reservation and a settlement took 0.58 + 1.02 ms on SQLite through it, 0.22 +
    0.61 this way (in process; README, *Gateway overhead*). The SQL and the parameters' conversions are still
    SQLAlchemy's (the statement's own compilation, each bind's type's processor), so what is written is what
    `Connection.execute` would write.
    """

    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    literals: dict[str, Any]  # the statement's own values (`coalesce(sum(…), 0.0)`, `scope = 'course'`)

    @classmethod
    def of(cls, stmt: _Statement, dialect: Dialect, keys: Sequence[str] | None) -> _Compiled:
        """`stmt` for `dialect` (a positional paramstyle); `keys`: an insert's columns, in order."""
        compiled: Compiled = stmt.compile(dialect=dialect, column_keys=None if keys is None else list(keys))
        names = tuple(compiled.positiontup or ())  # type: ignore[attr-defined]
        binds = [compiled.binds[name] for name in names]  # type: ignore[attr-defined]
        processors = tuple(b.type.dialect_impl(dialect).bind_processor(dialect) for b in binds)
        literals = {name: b.value for name, b in zip(names, binds, strict=True) if not b.required}
        return cls(compiled.string, names, processors, literals)

    def params(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The positional parameters for `values` (a KeyError names one the statement needs and lacks)."""
        given = [values[name] if name in values else self.literals[name] for name in self.names]
        return tuple(
            value if process is None else process(value)
            for value, process in zip(given, self.processors, strict=True)
        )


def _url_of(settings: Settings) -> str:
    url = settings.cost.ledger_url
    if url is not None:
        return url.get_secret_value()
    return f"sqlite:///{(settings.data_dir / 'ledger.sqlite').absolute()}"


class Ledger:
    """A `CostLedger` on SQLAlchemy Core over SQLite or PostgreSQL; the tables are created, or an older
    schema upgraded in place, on first use (`leanrank.cost.migrations`).

    `table` names the table (tests give each run its own). `connect_timeout_s` bounds connecting to
    PostgreSQL and waiting for a pooled connection; `lock_timeout_s` how long a write waits for another
    connection's write lock (seconds, positive, else `ConfigError`). Database failures raise `LedgerError`
    (a `StoreError`) with the URL's password hidden.
    """

    def __init__(
        self,
        url: str,
        *,
        table: str = DEFAULT_TABLE,
        connect_timeout_s: float = 10.0,
        lock_timeout_s: float = LEDGER_LOCK_TIMEOUT_S,
        pool_size: int = 5,
    ) -> None:
        if not lock_timeout_s > 0:
            raise ConfigError(f"the ledger's lock timeout must be positive seconds, got {lock_timeout_s}")
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
        self._lock_timeout_s = lock_timeout_s
        self._engine = self._connect(parsed, connect_timeout_s, pool_size)
        self._table = _table(table)
        self._holds = _holds_table(table, self._table.metadata)
        self._replies = _replies_table(table, self._table.metadata)
        self._spend = _spend_table(table, self._table.metadata)
        self._prepare()
        self._lock_id = zlib.crc32(table.encode())  # PostgreSQL advisory lock of this ledger's writes
        # Whole milliseconds, at least 1: PostgreSQL reads 0 as "wait forever".
        self._set_lock_timeout = text(f"SET LOCAL lock_timeout = {max(1, round(lock_timeout_s * 1000))}")
        self._ready = False
        self._lock = threading.Lock()
        self._queued: list[_Write] = []
        self._queue_lock = threading.Lock()
        self._commit_lock = threading.Lock()  # one group commit at a time per ledger
        self._writers: dict[bool, Connection] = {}  # SQLite: kept open, per sync mode (`_writer`)
        self._compiled: dict[tuple[_Statement, tuple[str, ...] | None], _Compiled] = {}  # SQLite: `_run`

    def _prepare(self) -> None:
        """The statements every paid call runs (and a replayable request's), built once with bound
        parameters: building an expression and its cache key per call cost more than running it (a
        reservation took 0.92 ms and a settlement 1.39 ms on SQLite; with these, 0.35 and 0.53)."""
        h, t, s, r = self._holds, self._table, self._spend, self._replies
        dialect = postgresql if self._dialect == "postgresql" else sqlite
        rid, stage = bindparam("rid", type_=String()), bindparam("stage", type_=String())
        expired = or_(
            h.c.expires < bindparam("now"), and_(h.c.expires.is_(None), h.c.time < bindparam("old"))
        )
        self._reap_holds = delete(h).where(expired).returning(*h.c)
        self._any_expired = select(h.c.id).where(expired).limit(1)
        self._used = select(
            exists().where(h.c.request_id == rid, h.c.stage == stage),
            exists().where(t.c.request_id == rid, t.c.stage == stage),
        )
        self._add_hold = h.insert()
        self._drop_hold = delete(h).where(h.c.request_id == rid, h.c.stage == stage)
        self._add_call = (
            dialect.insert(t).on_conflict_do_nothing(index_elements=["request_id", "stage"]).returning(t.c.id)
        )
        self._reply = select(r.c.fingerprint, r.c.status, r.c.headers, r.c.body).where(
            r.c.key == bindparam("key", type_=String()), r.c.time >= bindparam("fresh")
        )
        self._drop_old_replies = delete(r).where(r.c.time < bindparam("old"))
        self._add_reply = dialect.insert(r).on_conflict_do_nothing()
        add = dialect.insert(s)
        self._add_spend = add.on_conflict_do_update(
            index_elements=["scope", "name", "day"], set_={"cost_usd": s.c.cost_usd + add.excluded.cost_usd}
        )
        # What a course or tenant (`name`) spent over days `[first, end)`, and held over `[start, stop)`.
        name = bindparam("name", type_=String())
        self._spent: dict[Scope, Select[Any]] = {}
        self._spent_and_held: dict[Scope, Select[Any]] = {}
        for scope in ("course", "tenant"):
            spent = select(func.coalesce(func.sum(s.c.cost_usd), 0.0)).where(
                s.c.scope == scope,
                s.c.name == name,
                s.c.day >= bindparam("first"),
                s.c.day < bindparam("end"),
            )
            held = select(func.coalesce(func.sum(h.c.amount_usd), 0.0)).where(
                h.c[scope] == name, h.c.time >= bindparam("start"), h.c.time < bindparam("stop")
            )
            self._spent[scope] = spent
            self._spent_and_held[scope] = select(spent.scalar_subquery(), held.scalar_subquery())

    @classmethod
    def from_settings(cls, settings: Settings) -> Ledger:
        """`cost.ledger_url`, else SQLite at `<data_dir>/ledger.sqlite`; `cost.ledger_lock_timeout_s`."""
        return cls(_url_of(settings), lock_timeout_s=settings.cost.ledger_lock_timeout_s)

    @staticmethod
    def missing(settings: Settings) -> bool:
        """True when the configured ledger is a SQLite file that is not there: nothing was ever recorded.

        A command that only reads the ledger answers "nothing spent" then, rather than open it: opening
        creates the file and its folder (a data directory that did not exist).
        """
        try:
            url = make_url(_url_of(settings))
        except ArgumentError:
            return False  # opening it names what is wrong
        database = url.database
        return (
            url.get_backend_name() == "sqlite"
            and database not in (None, "", ":memory:")
            and not Path(database).exists()
        )

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
        # `timeout` (the busy timeout) is how long a writer waits for another process's lock before failing.
        engine = create_engine(
            url, connect_args={"timeout": self._lock_timeout_s, "check_same_thread": False}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine

    def record(self, record: LedgerRecord) -> bool:
        """Write and commit one call; False when `(request_id, stage)` was already recorded."""
        row: dict[str, Any] = _row(record) | {"cache_hit": record.cache_hit}

        return self._write(lambda conn: self._insert(conn, row), durable=True)

    def reserve(self, hold: Hold, scopes: Sequence[tuple[Scope, str, Period]], admit: Admit) -> Reservation:
        """Spent + held per `(scope, name, period)` before this hold, whether `admit` let it in, and the
        possibly billed records written for the holds reaped.

        Holds expired at `hold.time` (each by its own `expires`) are reaped first, in the same transaction:
        neither the sums nor the conflict check see them. Raises `RequestConflictError` when
        `(request_id, stage)` is held by a live hold or recorded, `LedgerError` when the database fails or
        another connection holds the write lock past the lock timeout (nothing is written then).
        """

        def write(conn: Connection) -> Reservation:
            reaped = self._reap(conn, hold.time)
            self._check_unused(conn, hold)
            committed = [self._committed(conn, scope, name, period) for scope, name, period in scopes]
            admitted = admit(committed)
            if admitted:
                self._run(conn, self._add_hold, _row(hold), columns=True)
            return Reservation(committed, admitted, reaped)

        return self._write(write, durable=False)

    def settle(self, record: LedgerRecord, unconfirmed: Sequence[LedgerRecord] = ()) -> Settlement:
        """Record the call and drop its hold in one transaction: whether it was recorded (False: it already
        was), the possibly billed records written with it, and the reaped record it replaced, if any.

        `unconfirmed` are calls made before it for the same request (failed links of a fallback chain)
        that their provider may still bill; they are written in the same transaction, numbered as
        `release` numbers them. A call whose hold expired before it ended (its settlement waited past the
        deadline's margin) was recorded by the reaping reservation at its estimate: that record gives way
        to this one, so the call counts once, at what it cost."""
        row: dict[str, Any] = _row(record) | {"cache_hit": record.cache_hit}

        def write(conn: Connection) -> Settlement:
            held = self._run(conn, self._drop_hold, {"rid": record.request_id, "stage": record.stage})[1]
            written: list[LedgerRecord] = []
            if held:
                written = self._insert_unconfirmed(conn, record.request_id, record.stage, unconfirmed)
            recorded = self._insert(conn, row)
            replaced = self._drop_reaped(conn, record) if recorded and not held else []
            return Settlement(recorded, written, replaced)

        return self._write(write, durable=True)

    def release(self, hold: Hold, unconfirmed: Sequence[LedgerRecord] = ()) -> list[LedgerRecord]:
        """Drop a hold whose call failed; `unconfirmed` records the calls made for it (a single backend, the
        links of a fallback chain) that their providers may still have billed, in the same transaction.
        Returns the records written, under their stages.

        Their stages are given here: `<stage>:unconfirmed`, then `#2`, `#3`… in order, after the ones
        earlier attempts under the same request id left (a resend after a failure), so no attempt's calls
        replace another's. They are written only while the hold is there: once it expired, the reservation
        that reaped it recorded the call instead (and nothing is returned)."""

        def write(conn: Connection) -> list[LedgerRecord]:
            if self._run(conn, self._drop_hold, {"rid": hold.request_id, "stage": hold.stage})[1]:
                return self._insert_unconfirmed(conn, hold.request_id, hold.stage, unconfirmed)
            return []

        return self._write(write, durable=bool(unconfirmed))

    def find_reply(self, key: str) -> Reply | None:
        """The kept answer of the request `key` (`tenant/request id`), if any."""
        with self._errors(), self._engine.connect() as conn:
            row = conn.execute(self._reply, {"key": key, "fresh": datetime.now(UTC) - REPLY_TTL}).first()
        return None if row is None else Reply(row[0], int(row[1]), row[2], bytes(row[3]))

    def keep_reply(self, key: str, reply: Reply) -> None:
        """Keep the first answer of `key` for `REPLY_TTL`; a later one is dropped, older ones deleted."""
        now = datetime.now(UTC)
        row = _row(reply) | {"key": key, "time": now}

        def write(conn: Connection) -> None:
            conn.execute(self._drop_old_replies, {"old": now - REPLY_TTL})
            conn.execute(self._add_reply, row)

        self._write(write, durable=True)

    def _write(self, work: Callable[[Connection], _T], *, durable: bool) -> _T:
        """`work(conn)`'s result once its transaction has committed (synced to disk when `durable`).

        Group commit, leader/follower: the write is queued; the thread that next holds the commit lock
        commits everything queued by then in one transaction, so writes arriving during a commit share the
        next one. Each runs in a savepoint when it is not alone, so its error is its own.
        """
        item = _Write(work, durable)
        with self._errors():
            with self._queue_lock:
                self._queued.append(item)
            with self._commit_lock:
                if not item.done:  # else an earlier leader committed it while this thread waited
                    with self._queue_lock:
                        batch, self._queued = self._queued, []
                    self._commit(batch)
        if item.error is not None:
            raise item.error
        result: _T = item.result
        return result

    @contextmanager
    def _writer(self, durable: bool) -> Iterator[Connection]:
        """The connection a group commit writes on (under the commit lock, so one at a time).

        SQLite keeps one open per kind of commit, synced or not: checking one out of the pool, and setting
        its sync mode, at every commit cost about a tenth of a millisecond each of a paid call's two. One the
        database failed on is closed, and the next commit opens a new one. PostgreSQL checks one out of its
        pool, which replaces connections the server dropped."""
        options = {"sqlite_immediate": True, "sqlite_durable": durable}
        if self._dialect != "sqlite":
            with self._engine.connect().execution_options(**options) as pooled:
                yield pooled
            return
        kept = self._writers.get(durable)
        if kept is None:
            kept = self._writers[durable] = self._engine.connect().execution_options(**options)
        try:
            yield kept
        except SQLAlchemyError:
            del self._writers[durable]
            kept.close()
            raise

    def _commit(self, batch: list[_Write]) -> None:
        durable = any(w.durable for w in batch)
        try:
            with self._writer(durable) as conn, conn.begin():
                if self._dialect == "postgresql":
                    self._lock_writes(conn)
                    if not durable:
                        conn.execute(text("SET LOCAL synchronous_commit TO OFF"))
                if len(batch) == 1:
                    batch[0].result = batch[0].work(conn)  # a failure rolls back the whole transaction
                else:
                    for w in batch:
                        try:
                            with conn.begin_nested():
                                w.result = w.work(conn)
                        except Exception as exc:
                            w.error = self._failure(exc)
        except BaseException as exc:
            for w in batch:
                w.error = self._failure(exc)  # nothing of the batch was committed
            if not isinstance(exc, Exception):
                raise
        finally:
            for w in batch:
                w.done = True

    def _failure(self, exc: BaseException) -> BaseException:
        """A database error as `LedgerError`, with the URL's password hidden; others as raised."""
        if not isinstance(exc, SQLAlchemyError):
            return exc
        cause = getattr(exc, "orig", None) or exc
        first_line = (str(cause).strip().splitlines() or [""])[0]
        if _lock_wait_ended(cause):
            first_line = (
                f"{first_line} (another connection held the ledger's write lock longer than "
                f"cost.ledger_lock_timeout_s, {self._lock_timeout_s:g} s)"
            )
        failure = LedgerError(f"ledger {self._where}: {type(cause).__name__}: {first_line}")
        failure.__cause__ = exc
        return failure

    def ping(self) -> None:
        """Raise `LedgerError` unless the database answers (readiness)."""
        with self._errors(), self._engine.connect() as conn:
            conn.execute(select(1))

    def _lock_writes(self, conn: Connection) -> None:
        """PostgreSQL: this ledger's advisory lock, first thing in every write transaction, as SQLite's
        `BEGIN IMMEDIATE` takes its write lock. A group commit mixes holds (which need the lock to read
        spend and holds alone) with records (which lock their day totals): taking the lock at the first
        hold would let two replicas each hold what the other waits for, and the database kill one.
        The wait, and any other lock wait of the transaction, ends at the lock timeout (`SET LOCAL`: this
        transaction only) with `LockNotAvailable`, and the transaction rolls back."""
        conn.execute(self._set_lock_timeout)
        conn.execute(select(func.pg_advisory_xact_lock(self._lock_id)))

    def _reap(self, conn: Connection, now: datetime) -> list[LedgerRecord]:
        """Drop the holds expired at `now`, each paid one recorded as possibly billed: its process died
        between reserving and recording (a kill, a crash), after the provider may have been called. The
        record is the hold's estimate under `<stage>:unconfirmed` (a chain's is its dearest link's, recorded
        under its first link, the one called first; tokens unknown, so 0); a free call's hold leaves
        nothing. A hold expires at its own `expires`, written by the process that made it from its own
        deadline; one without expires `HOLD_TTL` after its time. Returns the records written."""
        when = {"now": now, "old": now - HOLD_TTL}
        written: list[LedgerRecord] = []
        if self._dialect == "sqlite" and not self._run(conn, self._any_expired, when)[0]:
            return written  # nearly always: SQLAlchemy's reaping statement (whose rows it converts) is spared
        for row in conn.execute(self._reap_holds, when).mappings().all():
            if row["backend"] is None:
                continue  # a free call's hold
            name = parse_backend(chain_links(row["backend"])[0])
            record = LedgerRecord(
                time=row["time"],
                request_id=row["request_id"],
                course=row["course"],
                tenant=row["tenant"],
                stage=row["stage"],
                backend=name.key,
                model=name.model,
                documents=row["documents"] or 0,
                query_tokens=0,
                document_tokens=0,
                billed_units=0.0,
                billed_unit="none",
                cost_usd=row["amount_usd"],
                latency_ms=0.0,
                cache_hits=0,
                count_source="estimate",
            )
            written += self._insert_unconfirmed(conn, row["request_id"], row["stage"], [record])
        return written

    def _insert_unconfirmed(
        self, conn: Connection, request_id: str, stage: str, records: Sequence[LedgerRecord]
    ) -> list[LedgerRecord]:
        """`records`, possibly billed calls of one attempt at `(request_id, stage)`, each under the next free
        `unconfirmed_stage(stage, n)`; the records written, under those stages."""
        if not records:
            return []
        t = self._table
        earlier = conn.execute(
            select(t.c.stage).where(t.c.request_id == request_id, self._unconfirmed_of(stage))
        )
        highest = max((_nth(found) for found in earlier.scalars()), default=0)
        staged = [replace(r, stage=unconfirmed_stage(stage, n)) for n, r in enumerate(records, highest + 1)]
        return [r for r in staged if self._insert(conn, _row(r) | {"cache_hit": False})]

    def _unconfirmed_of(self, stage: str) -> ColumnElement[bool]:
        first = unconfirmed_stage(stage)
        t = self._table
        return or_(t.c.stage == first, t.c.stage.startswith(f"{first}#", autoescape=True))

    def _drop_reaped(self, conn: Connection, record: LedgerRecord) -> list[LedgerRecord]:
        """Delete the record a reaping reservation wrote for `record`'s call (same request, stage family and
        hold time, at the estimate), take its cost back out of the day totals, and return it."""
        t = self._table
        reaped = conn.execute(
            delete(t)
            .where(
                t.c.request_id == record.request_id,
                self._unconfirmed_of(record.stage),
                t.c.time == record.time,
                t.c.count_source == "estimate",
            )
            .returning(*(t.c[f.name] for f in fields(LedgerRecord)))
        ).mappings()
        dropped = [LedgerRecord(**row) for row in reaped]
        for gone in dropped:
            if gone.cost_usd is not None:
                self._add_to_totals(conn, _row(gone) | {"cost_usd": -gone.cost_usd})
        return dropped

    def _check_unused(self, conn: Connection, hold: Hold) -> None:
        ((held, billed),) = self._run(conn, self._used, {"rid": hold.request_id, "stage": hold.stage})[0]
        if held or billed:
            why = "is still running" if held else "was already billed"
            raise RequestConflictError(
                f"request id {hold.request_id.split('/', 1)[-1]!r} {why}; send a new X-Request-Id "
                "for a new request"
            )

    def _committed(self, conn: Connection, scope: Scope, name: str, period: Period) -> float:
        (row,) = self._run(conn, self._spent_and_held[scope], self._period_params(name, period))[0]
        return float(row[0]) + float(row[1])

    @staticmethod
    def _period_params(name: str, period: Period) -> dict[str, Any]:
        first, end = _days(period)
        return {"name": name, "first": first, "end": end, "start": period.start, "stop": period.end}

    def totals(self, by: GroupBy, period: Period) -> list[Total]:
        """Sums per course, backend, UTC day (`YYYY-MM-DD`) or tenant over `period`, ordered by key."""
        t = self._table
        key = self._day() if by == "day" else t.c[by]
        maybe = t.c.stage.like(f"%{UNCONFIRMED}%")
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
                func.sum(func.coalesce(t.c.documents_received, t.c.documents)),
                func.coalesce(func.sum(func.coalesce(t.c.full_cost_usd, t.c.cost_usd)), 0.0),
                func.sum(case((maybe, 1), else_=0)),
                func.coalesce(func.sum(case((maybe, t.c.cost_usd), else_=0.0)), 0.0),
            )
            .where(t.c.time >= period.start, t.c.time < period.end)
            .group_by("key")
        )
        with self._errors(), self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        totals = [
            Total(
                r[0],
                int(r[1]),
                int(r[2]),
                int(r[3]),
                int(r[4]),
                int(r[5]),
                int(r[6]),
                float(r[7]),
                int(r[8]),
                documents_received=int(r[9]),
                full_cost_usd=float(r[10]),
                unconfirmed=int(r[11]),
                unconfirmed_usd=float(r[12]),
            )
            for r in rows
        ]
        return sorted(totals, key=lambda total: (total.key is None, total.key or ""))

    def spent(self, scope: Scope, name: str, period: Period) -> float:
        """Known cost of one course's or tenant's calls over `period` (whole UTC days; else `ValueError`)."""
        with self._errors(), self._engine.connect() as conn:
            return float(conn.execute(self._spent[scope], self._period_params(name, period)).scalar_one())

    def series(self, bucket: Bucket, period: Period) -> list[SeriesRow]:
        """Sums per UTC hour or day, course, tenant and backend over `period`, in time order (the spend
        dashboard's data). Only buckets that hold calls appear."""
        t = self._table
        time = t.c.time
        if self._dialect == "postgresql":
            form = 'YYYY-MM-DD"T"HH24:00' if bucket == "hour" else "YYYY-MM-DD"
            key = func.to_char(func.timezone("UTC", time), form)
        else:
            key = func.strftime("%Y-%m-%dT%H:00" if bucket == "hour" else "%Y-%m-%d", time)
        sent = t.c.cache_hit.is_(False)
        stmt = (
            select(
                key.label("bucket"),
                t.c.course,
                t.c.tenant,
                t.c.backend,
                func.count(),
                func.sum(t.c.documents),
                func.sum(func.coalesce(t.c.documents_received, t.c.documents)),
                func.sum(t.c.cache_hits),
                func.sum(t.c.query_tokens),
                func.sum(t.c.document_tokens),
                func.coalesce(func.sum(t.c.cost_usd), 0.0),
                func.sum(case((t.c.cost_usd.is_(None), 1), else_=0)),
                func.coalesce(func.sum(t.c.full_cost_usd - t.c.cost_usd), 0.0),
                func.sum(case((sent, 1), else_=0)),
                func.coalesce(func.sum(case((sent, t.c.latency_ms), else_=None)), 0.0),
                func.coalesce(func.max(case((sent, t.c.latency_ms), else_=None)), 0.0),
            )
            .where(time >= period.start, time < period.end)
            .group_by("bucket", t.c.course, t.c.tenant, t.c.backend)
        )
        with self._errors(), self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        out = [
            SeriesRow(
                bucket=r[0],
                course=r[1],
                tenant=r[2],
                backend=r[3],
                calls=int(r[4]),
                documents=int(r[5]),
                documents_received=int(r[6]),
                cache_hits=int(r[7]),
                query_tokens=int(r[8]),
                document_tokens=int(r[9]),
                cost_usd=float(r[10]),
                unpriced=int(r[11]),
                savings_usd=float(r[12]),
                backend_calls=int(r[13]),
                latency_ms_sum=float(r[14]),
                latency_ms_max=float(r[15]),
            )
            for r in rows
        ]
        return sorted(out, key=lambda s: (s.bucket, s.course or "", s.tenant or "", s.backend))

    def close(self) -> None:
        with self._commit_lock:
            for conn in self._writers.values():
                conn.close()
            self._writers.clear()
        self._engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _insert(self, conn: Connection, row: dict[str, Any]) -> bool:
        """Insert a record unless `(request_id, stage)` is already recorded, adding its known cost to its
        course's and tenant's day totals in the same transaction; False when it was already there."""
        # RETURNING, not rowcount: drivers disagree on rowcount once RETURNING is implicit.
        if not self._run(conn, self._add_call, row, columns=True)[0]:
            return False
        self._add_to_totals(conn, row)
        return True

    def _add_to_totals(self, conn: Connection, row: dict[str, Any]) -> None:
        """Add `row["cost_usd"]` (when known) to the day totals of its course and tenant."""
        day = row["time"].astimezone(UTC).date().isoformat()
        totals = [
            {"scope": scope, "name": row[scope], "day": day, "cost_usd": row["cost_usd"]}
            for scope in ("course", "tenant")
            if row[scope] is not None
        ]
        if row["cost_usd"] is not None and totals:
            self._run_many(conn, self._add_spend, totals)

    def _run(
        self, conn: Connection, stmt: _Statement, values: Mapping[str, Any], *, columns: bool = False
    ) -> tuple[list[Sequence[Any]], int]:
        """The rows `stmt` returns run with `values` in `conn`'s transaction, and how many rows it changed.

        On SQLite through the driver (`_Compiled`; `columns`: an insert of `values`' columns), a driver error
        raised as SQLAlchemy's, as `Connection.execute` raises it; elsewhere through `Connection.execute`."""
        if self._dialect != "sqlite":
            result = conn.execute(stmt, values)
            return (list(result.all()) if result.returns_rows else []), result.rowcount
        compiled = self._compiled_for(stmt, tuple(values) if columns else None)
        params = compiled.params(values)
        with _driver_errors(compiled.sql, params):
            cursor = conn.connection.driver_connection.execute(compiled.sql, params)  # type: ignore[union-attr]
            return cursor.fetchall(), cursor.rowcount

    def _run_many(self, conn: Connection, stmt: _Statement, rows: Sequence[Mapping[str, Any]]) -> None:
        """`stmt` run once per row of `rows` (an insert of the same columns each), as `_run` runs one."""
        if self._dialect != "sqlite":
            conn.execute(stmt, rows)
            return
        compiled = self._compiled_for(stmt, tuple(rows[0]))
        params = [compiled.params(row) for row in rows]
        with _driver_errors(compiled.sql, params):
            conn.connection.driver_connection.executemany(compiled.sql, params)  # type: ignore[union-attr]

    def _compiled_for(self, stmt: _Statement, columns: tuple[str, ...] | None) -> _Compiled:
        key = (stmt, columns)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = _Compiled.of(stmt, self._engine.dialect, columns)
        return compiled

    def _day(self) -> ColumnElement[str]:
        time = self._table.c.time
        if self._dialect == "postgresql":
            return func.to_char(func.timezone("UTC", time), "YYYY-MM-DD")
        return func.strftime("%Y-%m-%d", time)

    def _create_schema(self) -> None:
        """Create or upgrade the tables to the newest revision (`leanrank.cost.migrations`), holding the
        write lock: SQLite's `BEGIN IMMEDIATE`, a PostgreSQL advisory lock of this ledger's schema."""
        from leanrank.cost import migrations  # Alembic is imported once a ledger is used, not at start-up

        with self._engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
            if self._dialect == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(self._lock_id ^ _SCHEMA_LOCK)))
            migrations.upgrade(conn, self._table.name)

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
            raise self._failure(exc) from exc


def _lock_wait_ended(cause: BaseException) -> bool:
    """Whether a database error is a lock wait ended by the lock timeout: PostgreSQL's `lock_not_available`
    (SQLSTATE 55P03), SQLite's busy timeout ("database is locked")."""
    if isinstance(cause, sqlite3.OperationalError):
        return "database is locked" in str(cause)
    return getattr(cause, "sqlstate", None) == "55P03"


_WAL_TRY_MS = 100
"""How long one attempt to switch a database to WAL waits for another connection before letting go."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL and full syncs on every connection.

    Switching a database to WAL needs it to itself. A connection waiting for that holds a read lock, so it
    could deadlock with another process's connection that holds the write lock and waits for readers to
    leave before it commits: two processes opening an old ledger at once waited out the whole busy timeout.
    So the switch is tried in short attempts that let go in between, for as long as the busy timeout allows
    (an in-memory database stays `memory`); once the file is WAL, asking costs nothing.
    """
    dbapi_connection.isolation_level = None  # transactions begin in `_sqlite_begin`, not in the driver
    cursor = dbapi_connection.cursor()
    (waiting_ms,) = cursor.execute("PRAGMA busy_timeout").fetchone()
    deadline = time.monotonic() + waiting_ms / 1000
    cursor.execute(f"PRAGMA busy_timeout={_WAL_TRY_MS}")
    try:
        while True:
            try:
                mode = str(cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                mode = ""
            if mode in ("wal", "memory"):
                break
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError("database is locked: it could not be switched to WAL mode")
            time.sleep(0.05)
    finally:
        cursor.execute(f"PRAGMA busy_timeout={int(waiting_ms)}")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    """A write takes the write lock at BEGIN: two processes must not both read the old total. A write
    without a record (`sqlite_durable=False`: a hold) commits without syncing; the mode is per connection
    and cannot change inside a transaction, so it is set before one that needs the other mode."""
    options = conn.get_execution_options()
    mode = "FULL" if options.get("sqlite_durable", True) else "NORMAL"
    driver = conn.connection.driver_connection
    statements = ["BEGIN IMMEDIATE" if options.get("sqlite_immediate", False) else "BEGIN"]
    if conn.info.get("synchronous") != mode:  # per database connection: a write connection keeps its mode
        statements.insert(0, f"PRAGMA synchronous={mode}")
    for statement in statements:  # on the driver, as `Ledger._run` runs a paid call's statements
        with _driver_errors(statement, ()):
            driver.execute(statement)  # type: ignore[union-attr]
    conn.info["synchronous"] = mode


@contextmanager
def _driver_errors(statement: str, params: Any) -> Iterator[None]:
    """A SQLite driver error raised as SQLAlchemy raises it from `Connection.execute` (its `DBAPIError`
    subclass, the driver's error as `orig`), so the ledger's handling (`Ledger._failure`, dropping a failed
    writer connection) sees every error alike, whichever way its statement ran."""
    try:
        yield
    except sqlite3.Error as exc:
        raise DBAPIError.instance(statement, params, exc, sqlite3.Error) from exc
