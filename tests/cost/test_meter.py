from __future__ import annotations

import asyncio
import math
import re
import socket
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from leanrank.cost.budget import Budget, BudgetExceededError
from leanrank.cost.ledger import Ledger, LedgerError, LedgerRecord, RequestConflictError
from leanrank.cost.meter import Meter, usage_bounds
from leanrank.cost.period import Period
from leanrank.cost.pricing import Pricing
from leanrank.cost.projection import measured_volume
from leanrank.errors import ConfigError
from leanrank.rerank.base import Reranker, RerankResponse, Usage
from leanrank.rerank.batch import Rendezvous, Seat
from leanrank.rerank.catalog import _HttpOptions
from leanrank.rerank.fallback import FallbackReranker
from leanrank.rerank.guard import guard
from leanrank.rerank.http import BadResponseError, RerankServerError, RerankTimeoutError, note_billable
from leanrank.rerank.identity import IdentityReranker
from leanrank.rerank.providers import PROVIDERS, HttpReranker
from leanrank.rerank.windows import WindowedReranker, WindowPolicy
from leanrank.retry import RetryPolicy
from leanrank.settings import CALL_DEADLINE_S, BudgetSettings, Settings
from tests.cost.conftest import NOV_3, make_record
from tests.rerank.servers import DROP, FakeProvider, Fault, adapter, silent
from tests.rerank.test_windows import words

NOVEMBER = Period.parse("2026-11")
DOCS = [f"документ номер {i}" for i in range(120)]
PRICING = Pricing.load()


@dataclass
class FakeReranker:
    """A backend answering with a fixed usage shape: the meter is tested, not a provider."""

    name: str
    usage: Callable[[str, Sequence[str]], Usage]
    served_by: str | None = None
    calls: int = 0
    fails: Exception | None = None
    first_score: float = 0.0

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        self.calls += 1
        await asyncio.sleep(0)  # let concurrent calls interleave, as network calls do
        if self.fails is not None:
            raise self.fails
        scores = (self.first_score, *(-float(i) for i in range(1, len(documents))))
        return RerankResponse(scores, self.usage(query, documents), served_by=self.served_by)


def cohere_usage(query: str, documents: Sequence[str]) -> Usage:
    units = float(-(-len(documents) // 100))
    return Usage(0, 0, units, "search_units", "reported", 0.2, len(documents))


def cohere() -> FakeReranker:
    return FakeReranker("cohere:rerank-v3.5", cohere_usage)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")


def meter(ledger: Ledger, *rules: BudgetSettings) -> Meter:
    return Meter(ledger, PRICING, Budget(rules, ledger) if rules else None, clock=lambda: NOV_3)


async def test_a_paid_call_is_priced_recorded_and_returned(ledger: Ledger) -> None:
    backend = cohere()
    got = await meter(ledger).rerank(
        backend, "что такое список", DOCS, request_id="q1", course="py", tenant="t"
    )
    assert got.served_by == "cohere:rerank-v3.5"
    assert got.cost_usd == pytest.approx(0.004)  # 120 documents = 2 search units at $2 / 1k
    assert got.response.usage.cost_usd == pytest.approx(0.004)
    assert (got.budget_state.level, got.recorded) == ("ok", True)
    assert len(got.response.scores) == 120
    [total] = ledger.totals("backend", NOVEMBER)
    assert (total.key, total.calls, total.documents, total.cost_usd) == ("cohere:rerank-v3.5", 1, 120, 0.004)


async def test_a_paid_call_s_hold_names_its_backend_while_it_runs(ledger: Ledger, tmp_path: Path) -> None:
    """What a process killed mid-call leaves behind (the ledger records it once it expires): the paid
    backend, the documents and the estimate; a free call's hold names no backend. Each expires once its
    call is over for sure: 10:00 + the default deadline (180 s) + the margin (60 s)."""
    seen: list[tuple[object, ...]] = []

    async def look(query: str, documents: Sequence[str]) -> RerankResponse:
        with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
            seen.extend(
                db.execute("SELECT backend, documents, amount_usd, expires FROM leanrank_rerank_calls_holds")
            )
        return RerankResponse(tuple(0.0 for _ in documents), cohere_usage(query, documents))

    paid = cohere()
    paid.rerank = look  # type: ignore[method-assign]
    await meter(ledger).rerank(paid, "q", DOCS, request_id="q1", course="py")
    free = IdentityReranker()
    free.rerank = look  # type: ignore[method-assign]
    await meter(ledger).rerank(free, "q", DOCS, request_id="q2", course="py")
    expires = "2026-11-03 10:04:00.000000"
    assert seen == [("cohere:rerank-v3.5", 120, pytest.approx(0.004), expires), (None, 0, 0.0, expires)]


@pytest.mark.parametrize("seated", [False, True], ids=["direct", "rendezvous-seat"])
async def test_a_backend_s_own_windows_behind_the_guard_are_held_as_sent(
    ledger: Ledger, tmp_path: Path, seated: bool
) -> None:
    """A backend configured to window long documents (`long_docs=maxpool`) sits behind the guard: the hold
    counts its windows too, called directly (`/v1/rerank`) or through a rendezvous seat (`/v1/rerank/batch`,
    whose seat used to hide them: 30 documents, 1 unit). The same 30 documents of 8 words in windows of 2:
    120 documents billed, 2 search units = $0.004 at $2 / 1k; a cascade that kept 15 of them sends 60 (1
    unit, $0.002) and would have cost $0.004 sending all 30 received (the seat's: $0.002)."""
    docs = [" ".join(f"d{i}w{j}" for j in range(8)) for i in range(30)]
    holds: list[tuple[object, ...]] = []

    async def look(query: str, documents: Sequence[str]) -> RerankResponse:
        with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
            holds.extend(db.execute("SELECT documents, amount_usd FROM leanrank_rerank_calls_holds"))
        return RerankResponse(tuple(0.0 for _ in documents), cohere_usage(query, documents))

    paid = cohere()
    paid.rerank = look  # type: ignore[method-assign]
    configured = guard(WindowedReranker(paid, WindowPolicy(max_tokens=2, max_windows=10), words))

    def backend() -> Reranker:
        return Rendezvous(configured, 1).seat() if seated else configured

    m = meter(ledger)
    await m.rerank(backend(), "q", docs, request_id="g1", course="py")
    kept = await m.rerank(backend(), "q", docs[:15], request_id="g2", course="py", received=docs)
    assert holds == [(30, pytest.approx(0.004)), (15, pytest.approx(0.002))]
    assert (kept.cost_usd, kept.full_cost_usd) == (pytest.approx(0.002), pytest.approx(0.004))


async def test_a_windowed_call_is_held_and_estimated_by_the_windows_it_sends(
    ledger: Ledger, tmp_path: Path
) -> None:
    """Cohere v1's `max_chunks_per_doc`: 30 documents of 8 words, windows of 2 words (one token a word
    here), so each document is sent as 4 windows and each window is a document billed: 30 × 4 = 120
    documents = ceil(120 / 100) = 2 search units = $0.004 at $2 / 1k, not the 1 unit ($0.002) of 30
    documents. The hold says so while the call runs; a call that times out is recorded at that estimate."""
    docs = [" ".join(f"d{i}w{j}" for j in range(8)) for i in range(30)]
    policy = WindowPolicy(max_tokens=2, max_windows=10)
    holds: list[tuple[object, ...]] = []
    sent: list[int] = []

    async def look(query: str, documents: Sequence[str]) -> RerankResponse:
        with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
            holds.extend(db.execute("SELECT documents, amount_usd FROM leanrank_rerank_calls_holds"))
        sent.append(len(documents))
        return RerankResponse(tuple(0.0 for _ in documents), cohere_usage(query, documents))

    paid = cohere()
    paid.rerank = look  # type: ignore[method-assign]
    m = meter(ledger)
    got = await m.rerank(WindowedReranker(paid, policy, words), "q", docs, request_id="v1", course="py")
    assert (holds, sent) == ([(30, pytest.approx(0.004))], [120])
    assert got.cost_usd == pytest.approx(0.004)  # what the stand-in reported: 2 units
    timed_out = FakeReranker("cohere:rerank-v3.5", cohere_usage, fails=RerankTimeoutError("timed out"))
    with pytest.raises(RerankTimeoutError):
        await m.rerank(WindowedReranker(timed_out, policy, words), "q", docs, request_id="v2", course="py")
    [(stage, backend, _, _, units, unit, cost)] = _unconfirmed_rows(tmp_path)
    assert (stage, backend, units, unit, cost) == (
        "rerank:unconfirmed",
        "cohere:rerank-v3.5",
        2.0,
        "search_units",
        pytest.approx(0.004),
    )


async def test_a_document_over_the_context_is_held_and_recorded_as_its_chunks(
    ledger: Ledger, tmp_path: Path
) -> None:
    """Cohere's context holds 4,096 tokens of query and document: a 1,000-token query (4,350 Latin characters
    / 4.35, the character estimate) leaves 3,096, so a 4,096-token document (17,818 characters / 4.35 =
    4,096.1) is 2 chunks, and 60 of them are 120 billed documents = 2 search units = $0.004, not the 1 unit
    of 60 documents counted whole. The hold, the record of a timed-out call and the bound on what a provider
    may report all follow that rule."""
    query, docs = "x" * 4_350, ["y" * 17_818] * 60
    holds: list[tuple[object, ...]] = []

    async def look(query: str, documents: Sequence[str]) -> RerankResponse:
        with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
            holds.extend(db.execute("SELECT documents, amount_usd FROM leanrank_rerank_calls_holds"))
        usage = Usage(0, 0, 2.0, "search_units", "reported", 0.2, len(documents))  # the provider's count
        return RerankResponse(tuple(0.0 for _ in documents), usage)

    paid = cohere()
    paid.rerank = look  # type: ignore[method-assign]
    m = meter(ledger)
    got = await m.rerank(paid, query, docs, request_id="c1", course="py")
    assert (holds, got.cost_usd) == ([(60, pytest.approx(0.004))], pytest.approx(0.004))
    timed_out = FakeReranker("cohere:rerank-v3.5", cohere_usage, fails=RerankTimeoutError("timed out"))
    with pytest.raises(RerankTimeoutError):
        await m.rerank(timed_out, query, docs, request_id="c2", course="py")
    [(stage, _, _, _, units, unit, cost)] = _unconfirmed_rows(tmp_path)
    assert (stage, units, unit, cost) == ("rerank:unconfirmed", 2.0, "search_units", pytest.approx(0.004))


async def test_a_reused_request_id_is_refused_before_the_provider_is_paid_again(ledger: Ledger) -> None:
    m, backend = meter(ledger), cohere()
    first = await m.rerank(backend, "q", DOCS, request_id="q1", course="py")
    with pytest.raises(RequestConflictError, match="'q1' was already billed"):
        await m.rerank(backend, "q", DOCS, request_id="q1", course="py")
    assert (first.recorded, backend.calls) == (True, 1)
    assert [t.calls for t in ledger.totals("course", NOVEMBER)] == [1]


async def test_budget_moves_from_paid_to_fallback_at_the_hard_cap(ledger: Ledger) -> None:
    # $0.004 a call against a hard cap of $0.010: two paid calls (0 + 0.004, 0.004 + 0.004 fit), then
    # free: a third would make 0.012, over the cap, so it is not made.
    m, backend = meter(ledger, BudgetSettings(scope="course", name="py", hard_usd=0.010)), cohere()
    served = []
    for i in range(3):
        got = await m.rerank(backend, "q", DOCS, request_id=f"q{i}", course="py", fallback=IdentityReranker())
        served.append((got.served_by, got.budget_state.level, got.cost_usd))
    assert served == [
        ("cohere:rerank-v3.5", "ok", pytest.approx(0.004)),
        ("cohere:rerank-v3.5", "ok", pytest.approx(0.004)),
        ("identity", "hard", 0.0),
    ]
    assert backend.calls == 2
    assert got.response.failed == ("cohere:rerank-v3.5: budget course:py/month reached, $0.0080 spent",)
    assert got.response.scores == tuple(1 - i / 120 for i in range(120))  # identity order
    assert [(t.key, t.calls) for t in ledger.totals("backend", NOVEMBER)] == [
        ("cohere:rerank-v3.5", 2),
        ("identity", 1),
    ]


async def test_over_a_hard_cap_without_a_free_fallback_nothing_is_called(ledger: Ledger) -> None:
    ledger.record(_spent_record(1.0))
    m, backend = meter(ledger, BudgetSettings(scope="tenant", name="t", hard_usd=1.0)), cohere()
    with pytest.raises(BudgetExceededError, match="tenant:t/month"):
        await m.rerank(backend, "q", DOCS, request_id="q1", course="py", tenant="t")
    paid_fallback = FakeReranker("voyage:rerank-2.5", cohere_usage)
    with pytest.raises(BudgetExceededError):
        await m.rerank(backend, "q", DOCS, request_id="q1", course="py", tenant="t", fallback=paid_fallback)
    assert (backend.calls, paid_fallback.calls) == (0, 0)
    assert sum(t.calls for t in ledger.totals("course", NOVEMBER)) == 1  # only the seeded record


async def test_a_free_backend_is_not_stopped_by_a_hard_cap(ledger: Ledger) -> None:
    ledger.record(_spent_record(1.0))
    m = meter(ledger, BudgetSettings(scope="course", name="py", hard_usd=0.5))
    local = FakeReranker(
        "local:BAAI/bge-reranker-v2-m3", lambda q, d: Usage(3, 30, 33.0, "tokens", "tokenizer", 0.1, 3)
    )
    got = await m.rerank(local, "q", ["a", "b", "c"], request_id="q1", course="py")
    assert (got.served_by, got.budget_state.level, got.cost_usd, local.calls) == (local.name, "hard", 0.0, 1)


async def test_soft_cap_serves_the_paid_backend(ledger: Ledger) -> None:
    ledger.record(_spent_record(1.0))
    got = await meter(ledger, BudgetSettings(scope="course", name="py", soft_usd=0.5, hard_usd=2.0)).rerank(
        cohere(), "q", DOCS, request_id="q1", course="py"
    )
    assert (got.served_by, got.budget_state.level) == ("cohere:rerank-v3.5", "soft")


async def test_reported_cost_wins_over_the_price_list(ledger: Ledger) -> None:
    deepinfra = FakeReranker(
        "deepinfra:Qwen/Qwen3-Reranker-0.6B",
        lambda q, d: Usage(0, 50, 50.0, "tokens", "reported", 0.1, len(d), cost_usd=0.00123),
    )
    got = await meter(ledger).rerank(deepinfra, "q", DOCS[:3], request_id="q1", course="py")
    assert got.cost_usd == 0.00123


async def test_a_character_estimate_is_recounted_with_the_models_tokenizer(ledger: Ledger) -> None:
    estimated = FakeReranker(
        "siliconflow:Qwen/Qwen3-Reranker-0.6B",
        lambda q, d: Usage(3, 6, 15.0, "tokens", "estimate", 0.1, len(d)),
    )
    got = await meter(ledger).rerank(
        estimated, "Привет, мир!", ["Hello world", "Привет, мир!"], request_id="q", course="c"
    )
    usage = got.response.usage
    # Qwen tokens (pinned in test_tokens): query 6; documents 2 + 6; the query is paid once per document.
    assert (usage.query_tokens, usage.document_tokens, usage.billed_units) == (6, 8, 6 * 2 + 8)
    assert usage.count_source == "tokenizer"
    assert got.cost_usd == pytest.approx(20 * 0.01 / 1e6)


async def test_estimates_without_a_bundled_tokenizer_are_kept(ledger: Ledger) -> None:
    voyage = FakeReranker(
        "voyage:rerank-2.5", lambda q, d: Usage(3, 6, 12.0, "tokens", "estimate", 0.1, len(d))
    )
    got = await meter(ledger).rerank(voyage, "q", ["a", "b"], request_id="q", course="c")
    assert (got.response.usage.billed_units, got.response.usage.count_source) == (12.0, "estimate")
    assert got.cost_usd == pytest.approx(12 * 0.05 / 1e6)


async def test_cache_hits_cost_nothing_and_are_counted(ledger: Ledger) -> None:
    cached = FakeReranker(
        "cohere:rerank-v3.5",
        lambda q, d: replace(Usage.free(len(d), 0.001), cache_hits=len(d)),
        served_by="cache",
    )
    got = await meter(ledger).rerank(cached, "q", DOCS[:10], request_id="q1", course="py")
    assert (got.served_by, got.cost_usd) == ("cache", 0.0)
    [total] = ledger.totals("backend", NOVEMBER)
    assert (total.key, total.documents, total.cache_hits, total.cost_usd) == ("cache", 10, 10, 0.0)


async def test_a_cache_hit_behind_the_gateway_saves_what_the_backend_would_have_billed(
    ledger: Ledger,
) -> None:
    """The gateway forwarded 10 of 120 received documents and the cache answered them: the saving is the
    intended backend's bill for all 120 (2 search units, $0.004), not unknown because `cache` has no price."""
    cached = FakeReranker(
        "cohere:rerank-v3.5",
        lambda q, d: replace(Usage.free(len(d), 0.001), cache_hits=len(d)),
        served_by="cache",
    )
    got = await meter(ledger).rerank(cached, "q", DOCS[:10], request_id="q1", course="py", received=DOCS)
    assert (got.cost_usd, got.full_cost_usd) == (0.0, pytest.approx(0.004))
    [total] = ledger.totals("course", NOVEMBER)
    assert (total.documents_received, total.full_cost_usd, total.saved_usd) == (
        120,
        pytest.approx(0.004),
        pytest.approx(0.004),
    )


def test_from_settings_builds_ledger_prices_and_budgets(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, cost={"budgets": [{"scope": "course", "name": "*", "hard_usd": 1}]}
    )  # type: ignore[arg-type]
    assert isinstance(Meter.from_settings(settings), Meter)
    assert (tmp_path / "ledger.sqlite").exists() is False  # nothing is written before the first call


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """A ledger that several processes or replicas would share: SQLite on one machine, PostgreSQL."""
    if request.param == "sqlite":
        opened = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    else:
        opened = Ledger(request.getfixturevalue("pg_url"), table=request.getfixturevalue("pg_table"))
    with opened:
        yield opened


async def test_fifty_concurrent_paid_calls_stay_under_a_cap_meant_for_ten(shared_ledger: Ledger) -> None:
    # 100 documents = 1 search unit = $0.002 a call; $0.02 holds exactly ten. Every call reserves its
    # estimate in the ledger's database before the provider is called, so the other 40 are served free.
    m = meter(shared_ledger, BudgetSettings(scope="course", name="py", hard_usd=0.02))
    backend = cohere()

    async def one(i: int) -> str:
        got = await m.rerank(
            backend, "q", DOCS[:100], request_id=f"c{i}", course="py", fallback=IdentityReranker()
        )
        return got.served_by

    served = await asyncio.gather(*(one(i) for i in range(50)))
    assert (backend.calls, served.count("cohere:rerank-v3.5"), served.count("identity")) == (10, 10, 40)
    assert shared_ledger.spent("course", "py", NOVEMBER) == pytest.approx(0.02)
    assert sum(t.calls for t in shared_ledger.totals("course", NOVEMBER)) == 50


@pytest.mark.parametrize(
    ("usage", "first_score"),
    [
        (
            lambda q, d: Usage(0, 0, math.nan, "search_units", "reported", 0.2, len(d)),
            0.0,
        ),  # search_units: NaN
        (lambda q, d: Usage(0, 0, 1.0, "search_units", "reported", math.inf, len(d)), 0.0),
        (cohere_usage, math.inf),  # a score of Infinity
        (cohere_usage, math.nan),
    ],
)
async def test_non_finite_numbers_are_a_bad_response_recorded_as_maybe_billed(
    shared_ledger: Ledger, usage: Callable[[str, Sequence[str]], Usage], first_score: float
) -> None:
    backend = FakeReranker("cohere:rerank-v3.5", usage, first_score=first_score)
    m = meter(shared_ledger)
    with pytest.raises(BadResponseError, match="not finite"):
        await m.rerank(backend, "q", DOCS, request_id="q1", course="py")
    # The provider answered 200, so it billed: the call is on the ledger at its estimate (2 units, $0.004).
    [total] = shared_ledger.totals("backend", NOVEMBER)
    assert (total.key, total.calls, total.cost_usd) == ("cohere:rerank-v3.5", 1, pytest.approx(0.004))
    # The hold is released: the client may retry under the same id, and that call is billed on its own.
    retried = await m.rerank(cohere(), "q", DOCS, request_id="q1", course="py")
    assert retried.recorded
    assert shared_ledger.spent("course", "py", NOVEMBER) == pytest.approx(0.008)


@pytest.mark.parametrize(
    ("usage", "what"),
    [
        (lambda q, d: Usage(0, 0, 1e9, "search_units", "reported", 0.1, len(d)), "1e+09 billed search_units"),
        (lambda q, d: Usage(0, 0, 3.0, "search_units", "reported", 0.1, len(d)), "3 billed search_units"),
        (
            lambda q, d: Usage(10, 90_000, 90_010.0, "tokens", "reported", 0.1, len(d)),
            "90000 document tokens",
        ),
    ],
)
async def test_usage_no_request_could_use_is_a_bad_response_recorded_at_the_estimate(
    ledger: Ledger, usage: Callable[[str, Sequence[str]], Usage], what: str
) -> None:
    """120 short documents are at most 2 search units and a few thousand tokens: a provider's typo (or a
    hostile stand-in) reporting a billion units would put $2M on the ledger and exhaust every budget."""
    backend = FakeReranker("cohere:rerank-v3.5", usage)
    with pytest.raises(BadResponseError, match=re.escape(f"reported {what} for 120 documents; at most")):
        await meter(ledger).rerank(backend, "q", DOCS, request_id="u1", course="py")
    [total] = ledger.totals("backend", NOVEMBER)  # answered, so maybe billed: at the estimate, 2 units
    assert (total.calls, total.unconfirmed, total.cost_usd) == (1, 1, pytest.approx(0.004))


def test_usage_bounds_by_hand() -> None:
    """2 × (documents × (query bytes + 16) + document bytes); chunks of 256 bytes, counted twice, per 100."""
    docs = ["a" * 100, "б" * 300]  # 100 and 600 bytes
    assert usage_bounds("qq", docs, "tokens") == (2 * (2 * (2 + 16) + 700),) * 2
    assert (
        usage_bounds("qq", docs, "search_units")[1] == 1.0
    )  # chunks: ceil(200 / 256) + ceil(1200 / 256) = 1 + 5 = 6, one unit
    assert usage_bounds("q", ["x"] * 250, "search_units")[1] == 3.0  # 250 chunks


async def test_a_chain_records_its_timed_out_paid_link_as_maybe_billed(ledger: Ledger) -> None:
    """`cohere | identity`: the paid link timed out, identity served. The provider may still bill the first
    call, so it is recorded at its estimate (2 units, $0.004) beside the free call that served; a link that
    answered 503 was refused and is not billed."""
    m = meter(ledger)
    timed_out = FakeReranker("cohere:rerank-v3.5", cohere_usage, fails=RerankTimeoutError("timed out"))
    served = await m.rerank(
        FallbackReranker([timed_out, IdentityReranker()]), "q", DOCS, request_id="c1", course="py"
    )
    assert served.served_by == "identity"
    refused = FakeReranker("cohere:rerank-v3.5", cohere_usage, fails=RerankServerError("HTTP 503", 503))
    await m.rerank(FallbackReranker([refused, IdentityReranker()]), "q", DOCS, request_id="c2", course="py")
    by_backend = {t.key: (t.calls, t.cost_usd) for t in ledger.totals("backend", NOVEMBER)}
    assert by_backend == {"cohere:rerank-v3.5": (1, pytest.approx(0.004)), "identity": (2, 0.0)}
    assert ledger.spent("course", "py", NOVEMBER) == pytest.approx(0.004)


async def test_two_timed_out_paid_links_of_one_chain_are_two_unconfirmed_records(ledger: Ledger) -> None:
    """`cohere | cohere | identity` with both paid links timing out: each may be billed (2 units, $0.004 at
    the estimate), so each is its own record (`rerank:unconfirmed`, `rerank:unconfirmed#2`), counted apart
    from served calls in the totals and in `calls` and `cost_usd` alike."""
    m = meter(ledger)
    chain = FallbackReranker(
        [
            FakeReranker("cohere:rerank-v3.5", cohere_usage, fails=RerankTimeoutError("timed out")),
            FakeReranker("cohere:rerank-v3.5", cohere_usage, fails=RerankTimeoutError("timed out")),
            IdentityReranker(),
        ]
    )
    served = await m.rerank(chain, "q", DOCS, request_id="c1", course="py")
    assert served.served_by == "identity"
    totals = {t.key: t for t in ledger.totals("backend", NOVEMBER)}
    paid, free = totals["cohere:rerank-v3.5"], totals["identity"]
    assert (paid.calls, paid.requests, paid.cost_usd) == (2, 1, pytest.approx(0.008))
    assert (paid.unconfirmed, paid.unconfirmed_usd) == (2, pytest.approx(0.008))
    assert (free.calls, free.unconfirmed, free.unconfirmed_usd) == (1, 0, 0.0)
    [course] = ledger.totals("course", NOVEMBER)
    assert (course.calls, course.unconfirmed, course.cost_usd) == (3, 2, pytest.approx(0.008))


def _unconfirmed_rows(
    tmp_path: Path,
    columns: str = "stage, backend, query_tokens, document_tokens, billed_units, billed_unit, cost_usd",
    order: str = "stage",
) -> list[tuple[object, ...]]:
    """`columns` of each possibly billed row (by default: stage, backend, query and document tokens, billed
    units, unit and cost), by `order`."""
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        rows = db.execute(
            f"SELECT {columns} FROM leanrank_rerank_calls WHERE stage LIKE '%unconfirmed%' ORDER BY {order}"
        ).fetchall()
    return [tuple(r) for r in rows]


# What the meter estimates for 120 `DOCS` and the query "q", counted by each model's counter (the character
# estimate: 1 query token, 4 per document): Cohere 2 search units at $2 / 1k; Voyage 1 × 120 + 480 = 600
# pair tokens at $0.05 / M.
COHERE_AT_ESTIMATE = ("cohere:rerank-v3.5", 1, 480, 2.0, "search_units", pytest.approx(0.004))
VOYAGE_AT_ESTIMATE = ("voyage:rerank-2.5", 1, 480, 600.0, "tokens", pytest.approx(600 * 0.05 / 1e6))


def timing_out(name: str) -> FakeReranker:
    return FakeReranker(name, cohere_usage, fails=RerankTimeoutError(f"{name} timed out"))


async def test_a_chain_failing_at_every_link_records_each_link_that_may_have_billed(
    ledger: Ledger, tmp_path: Path
) -> None:
    """`cohere | jina | voyage`: Cohere timed out, Jina answered 503 (refused, not billed), Voyage timed out
    and its error is what the chain raises. Both timed-out links may be billed: each is its own record,
    priced by its own backend at the estimate; only the last one used to be recorded."""
    chain = FallbackReranker(
        [
            timing_out("cohere:rerank-v3.5"),
            FakeReranker(
                "jina:jina-reranker-v2-base-multilingual", cohere_usage, fails=RerankServerError("503")
            ),
            timing_out("voyage:rerank-2.5"),
        ]
    )
    m = meter(ledger)
    with pytest.raises(RerankTimeoutError, match=r"voyage:rerank-2\.5 timed out"):
        await m.rerank(chain, "q", DOCS, request_id="c1", course="py")
    assert _unconfirmed_rows(tmp_path) == [
        ("rerank:unconfirmed", *COHERE_AT_ESTIMATE),
        ("rerank:unconfirmed#2", *VOYAGE_AT_ESTIMATE),
    ]
    [course] = ledger.totals("course", NOVEMBER)
    assert (course.calls, course.requests, course.unconfirmed) == (2, 1, 2)
    assert course.cost_usd == pytest.approx(0.004 + 600 * 0.05 / 1e6)
    assert m.failing() == chain.name
    # The hold is gone: the client may retry under the same id.
    assert (await m.rerank(cohere(), "q", DOCS, request_id="c1", course="py")).recorded


async def test_a_failed_chain_records_its_links_in_one_transaction_or_none(
    ledger: Ledger, tmp_path: Path
) -> None:
    """The second record cannot be written (a trigger refuses it): the first is not left behind alone."""
    ledger.ping()  # creates the tables
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        db.execute(
            "CREATE TRIGGER refuse AFTER INSERT ON leanrank_rerank_calls WHEN NEW.stage LIKE '%#2' "
            "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
    chain = FallbackReranker([timing_out("cohere:rerank-v3.5"), timing_out("voyage:rerank-2.5")])
    with pytest.raises(RerankTimeoutError):
        await meter(ledger).rerank(chain, "q", DOCS, request_id="c1", course="py")
    assert ledger.totals("course", NOVEMBER) == []


async def test_a_chain_the_client_gave_up_on_records_the_link_in_flight(
    ledger: Ledger, tmp_path: Path
) -> None:
    """`cohere | voyage | identity`: Cohere timed out, and the client left while Voyage was working. Both
    may be billed; the link the chain would have tried next (free identity) was never called."""
    started = asyncio.Event()

    @dataclass
    class Hanging:
        name: str

        async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
            started.set()
            await asyncio.Event().wait()  # the request is out; no answer comes before the client leaves
            raise AssertionError("unreachable")

    chain = FallbackReranker(
        [timing_out("cohere:rerank-v3.5"), Hanging("voyage:rerank-2.5"), IdentityReranker()]
    )
    call = asyncio.create_task(meter(ledger).rerank(chain, "q", DOCS, request_id="gone", course="py"))
    await started.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert _unconfirmed_rows(tmp_path) == [
        ("rerank:unconfirmed", *COHERE_AT_ESTIMATE),
        ("rerank:unconfirmed#2", *VOYAGE_AT_ESTIMATE),
    ]


async def test_an_unusable_answer_from_the_chain_link_that_served_is_recorded_against_it(
    ledger: Ledger, tmp_path: Path
) -> None:
    """`voyage | cohere | identity`: Voyage timed out, Cohere answered with usage no request could use. The
    meter refuses the answer (424), so the call fails; Cohere served it and may bill, as may Voyage."""
    chain = FallbackReranker(
        [
            timing_out("voyage:rerank-2.5"),
            FakeReranker(
                "cohere:rerank-v3.5", lambda q, d: Usage(0, 0, 1e9, "search_units", "reported", 0.1, len(d))
            ),
            IdentityReranker(),
        ]
    )
    with pytest.raises(BadResponseError, match="1e\\+09 billed search_units"):
        await meter(ledger).rerank(chain, "q", DOCS, request_id="b1", course="py")
    assert _unconfirmed_rows(tmp_path) == [
        ("rerank:unconfirmed", *VOYAGE_AT_ESTIMATE),
        ("rerank:unconfirmed#2", *COHERE_AT_ESTIMATE),
    ]


async def test_a_possibly_billed_call_is_projected_at_the_tokens_of_its_estimate(ledger: Ledger) -> None:
    """One Voyage call served (1 query token, 480 document tokens) and one timed out: the timed-out one is
    recorded with the tokens its estimate priced, so `costs project --from-ledger` sees two calls of the
    same shape, not one of no tokens halving the averages."""
    m = meter(ledger)
    served = FakeReranker(
        "voyage:rerank-2.5", lambda q, d: Usage(1, 480, 600.0, "tokens", "estimate", 0.1, 120)
    )
    await m.rerank(served, "q", DOCS, request_id="s1", course="py")
    with pytest.raises(RerankTimeoutError):
        await m.rerank(timing_out("voyage:rerank-2.5"), "q", DOCS, request_id="t1", course="py")
    volume = measured_volume(ledger, NOVEMBER)
    assert (volume.queries_per_course_month, volume.candidates) == (2.0, 120.0)
    assert (volume.query_tokens, volume.tokens_per_candidate) == (1.0, 4.0)
    [total] = ledger.totals("course", NOVEMBER)
    assert (total.unconfirmed, total.document_tokens, total.cost_usd) == (1, 960, pytest.approx(2 * 3e-5))


async def test_a_timeout_is_recorded_as_maybe_billed_and_a_503_is_not(ledger: Ledger) -> None:
    m = meter(ledger)
    timed_out = FakeReranker("cohere:rerank-v3.5", cohere_usage, fails=RerankTimeoutError("timed out"))
    with pytest.raises(RerankTimeoutError) as maybe_billed:
        await m.rerank(timed_out, "q", DOCS, request_id="t1", course="py")
    assert maybe_billed.value.unconfirmed_usd == pytest.approx(0.004)  # the record's 2 units, on the error
    refused = FakeReranker("cohere:rerank-v3.5", cohere_usage, fails=RerankServerError("HTTP 503", 503))
    with pytest.raises(RerankServerError) as not_billed:
        await m.rerank(refused, "q", DOCS, request_id="t2", course="py")
    assert not_billed.value.unconfirmed_usd is None
    [total] = ledger.totals("backend", NOVEMBER)
    assert (total.calls, total.requests, total.cost_usd) == (1, 1, pytest.approx(0.004))
    assert m.failing() == "cohere:rerank-v3.5"  # readiness sees the backend failing
    await m.rerank(cohere(), "q", DOCS, request_id="t2", course="py")  # the 503's id is free again
    assert m.failing() is None


async def test_a_call_the_client_gave_up_on_is_recorded_as_maybe_billed(ledger: Ledger) -> None:
    started = asyncio.Event()

    class Hanging:
        name = "cohere:rerank-v3.5"

        async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
            started.set()
            await asyncio.Event().wait()  # the request is out; no answer comes before the client leaves
            raise AssertionError("unreachable")

    call = asyncio.create_task(meter(ledger).rerank(Hanging(), "q", DOCS, request_id="gone", course="py"))
    await started.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    [total] = ledger.totals("backend", NOVEMBER)
    assert (total.key, total.calls, total.cost_usd) == ("cohere:rerank-v3.5", 1, pytest.approx(0.004))


def test_the_default_deadline_is_one_default_http_request_at_its_slowest() -> None:
    """Every attempt of a catalog HTTP reranker with default options using its whole timeout, and every wait
    between them the longest a server's Retry-After is honoured: 4 × 30 s + 3 × 20 s."""
    options, retry = _HttpOptions(), RetryPolicy()
    slowest = options.max_attempts * options.timeout_s + (options.max_attempts - 1) * retry.max_wait_s
    assert Settings().rerank.deadline_s == CALL_DEADLINE_S == slowest == 180.0


async def test_a_backend_that_never_answers_fails_at_the_call_deadline_and_frees_its_hold(
    ledger: Ledger, tmp_path: Path
) -> None:
    """A real loopback server that takes the request and never answers, behind an adapter whose own
    timeout (60 s) would wait far longer: the meter's deadline (0.5 s) ends the call as a timeout. The
    request was sent, so it is recorded as possibly billed at its estimate; the hold is gone, so a resend
    of the id is served at once."""
    m = Meter(ledger, PRICING, deadline_s=0.5, clock=lambda: NOV_3)
    with silent() as url:
        hung = HttpReranker(PROVIDERS["cohere"], "rerank-v3.5", api_key="k", base_url=url, timeout_s=60.0)
        with pytest.raises(RerankTimeoutError, match=r"no answer within the call deadline of 0\.5 s"):
            await m.rerank(hung, "q", DOCS, request_id="h1", course="py")
    assert m.failing() == "cohere:rerank-v3.5"
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        assert db.execute("SELECT count(*) FROM leanrank_rerank_calls_holds").fetchone() == (0,)
    assert _unconfirmed_rows(tmp_path) == [("rerank:unconfirmed", *COHERE_AT_ESTIMATE)]
    assert (await m.rerank(cohere(), "q", DOCS, request_id="h1", course="py")).recorded


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    provider = FakeProvider("cohere")
    yield provider
    provider.close()


def _possibly_billed(tmp_path: Path) -> list[tuple[object, ...]]:
    return [(stage, backend, cost) for stage, backend, *_, cost in _unconfirmed_rows(tmp_path)]


async def test_an_attempt_sent_whole_whose_answer_never_came_is_recorded_when_it_is_retried(
    ledger: Ledger, tmp_path: Path, fake: FakeProvider
) -> None:
    """The provider read the request, maybe scored and billed it, and the connection dropped before its
    answer: the adapter resends (a dropped line is worth retrying), and the provider may bill both. The
    served call is recorded as usual and each dropped attempt as possibly billed, at the estimate (the
    stand-in's model has no listed price: unknown cost)."""
    fake.script(Fault(DROP), Fault(DROP))
    got = await meter(ledger).rerank(adapter(fake), "q", DOCS, request_id="d1", course="py")
    assert len(fake.requests) == 3  # two dropped, one served
    assert got.recorded
    assert _possibly_billed(tmp_path) == [
        ("rerank:unconfirmed", "cohere:test-model", None),
        ("rerank:unconfirmed#2", "cohere:test-model", None),
    ]
    [total] = ledger.totals("backend", NOVEMBER)
    assert (total.calls, total.unconfirmed) == (3, 2)


async def test_every_dropped_attempt_of_a_call_that_gives_up_is_recorded(
    ledger: Ledger, tmp_path: Path, fake: FakeProvider
) -> None:
    """Three attempts, each read whole and unanswered: the call fails as a server error (which alone would
    say nothing was billed) with three possibly billed calls; a 503, never served, leaves none."""
    fake.script(Fault(DROP), Fault(503), Fault(DROP))
    with pytest.raises(RerankServerError, match="gave up after 3 attempts"):
        await meter(ledger).rerank(adapter(fake), "q", DOCS, request_id="d2", course="py")
    assert [row[0] for row in _possibly_billed(tmp_path)] == ["rerank:unconfirmed", "rerank:unconfirmed#2"]


class InTurn:
    """A seat of a rendezvous that arrives only once the one before it has, so the batch's last arriver, from
    whose task the calls go out, is known."""

    def __init__(self, seat: Seat, after: InTurn | None) -> None:
        self.seat = seat
        self.after = after
        self.arrived = asyncio.Event()

    @property
    def name(self) -> str:
        return self.seat.name

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        if self.after is not None:
            await self.after.arrived.wait()
        self.arrived.set()  # wakes the next one after this task has taken its place (`_arrive` is sync)
        return await self.seat.rerank(query, documents)


def in_turn(meeting: Rendezvous, callers: int) -> list[InTurn]:
    seats: list[InTurn] = []
    for _ in range(callers):
        seats.append(InTurn(meeting.seat(), seats[-1] if seats else None))
    return seats


def _possibly_billed_for(tmp_path: Path) -> list[tuple[object, ...]]:
    """Request id, course, stage and backend of each possibly billed row."""
    return _unconfirmed_rows(tmp_path, "request_id, course, stage, backend", "request_id, stage")


async def test_a_dropped_attempt_in_a_rendezvous_is_recorded_under_the_request_it_was_for(
    ledger: Ledger, tmp_path: Path, fake: FakeProvider
) -> None:
    """Three requests metered apart and sent together (`/v1/rerank/batch`'s way), the calls going out from
    the 3rd caller's task: the provider reads the 2nd request's first attempt whole and drops the line, the
    adapter resends it and it is served. That attempt is the 2nd request's possibly billed call: one record,
    under its id and course, and none under the others (the 3rd's before the fix)."""
    fake.script_for("q1", Fault(DROP))
    m = meter(ledger)
    seats = in_turn(Rendezvous(adapter(fake), expected=3), 3)
    got = await asyncio.gather(
        *(
            m.rerank(seat, f"q{i}", DOCS[:3], request_id=f"job#{i}", course=f"course-{i}")
            for i, seat in enumerate(seats)
        )
    )
    assert [g.recorded for g in got] == [True, True, True]
    assert [r.body["query"] for r in fake.requests].count("q1") == 2  # dropped, then served
    assert _possibly_billed_for(tmp_path) == [
        ("job#1", "course-1", "rerank:unconfirmed", "cohere:test-model"),
    ]
    assert [(t.key, t.calls, t.unconfirmed) for t in ledger.totals("course", NOVEMBER)] == [
        ("course-0", 1, 0),
        ("course-1", 2, 1),
        ("course-2", 1, 0),
    ]


async def test_a_caller_that_left_a_rendezvous_records_what_was_noted_for_it_until_then(
    ledger: Ledger, tmp_path: Path
) -> None:
    """The 1st of two callers goes (its client disconnected) while its call is out, after an attempt of it
    was noted as possibly billed: as a call of its own would, it records that attempt and the call in flight.
    What is noted for it after it left is recorded nowhere; the 2nd caller, whose task sent the calls, records
    nothing possibly billed."""
    noted, finish = asyncio.Event(), asyncio.Event()

    class Dropping:
        """Notes an attempt of the query `gone` as `JsonClient.post` notes a dropped one, then waits."""

        name = "cohere:rerank-v3.5"

        async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
            if query == "gone":
                note_billable(self.name)
                noted.set()
                await finish.wait()
                note_billable(self.name)  # resent and dropped again, its caller gone
            return RerankResponse((0.0,) * len(documents), cohere_usage(query, documents))

    m = meter(ledger)
    first, second = in_turn(Rendezvous(Dropping(), expected=2), 2)
    gone = asyncio.create_task(m.rerank(first, "gone", DOCS, request_id="b#0", course="py"))
    stays = asyncio.create_task(m.rerank(second, "stays", DOCS, request_id="b#1", course="py"))
    await noted.wait()
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    finish.set()
    assert (await stays).recorded
    assert _possibly_billed_for(tmp_path) == [
        ("b#0", "py", "rerank:unconfirmed", "cohere:rerank-v3.5"),
        ("b#0", "py", "rerank:unconfirmed#2", "cohere:rerank-v3.5"),
    ]


@pytest.mark.parametrize("stops", ["deadline", "client-gone"])
async def test_a_chain_through_a_seat_records_its_link_in_flight_once_when_its_caller_stops_waiting(
    ledger: Ledger, tmp_path: Path, stops: str
) -> None:
    """`cohere | voyage` through a rendezvous seat (`/v1/rerank/batch`'s way), its caller gone while Cohere
    works: past the call deadline (0.2 s) or its client disconnected. Cohere's call may be billed, so it is
    recorded at its estimate (2 units, $0.004), once, as a direct call records it (nothing was, before: the
    chain goes on in the rendezvous's task). Cohere's timeout and Voyage's, noted there after the caller
    left, are recorded nowhere."""
    started, release, over = asyncio.Event(), asyncio.Event(), asyncio.Event()

    @dataclass
    class Slow:
        name: str

        async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
            started.set()
            await release.wait()
            if self.name.startswith("voyage"):
                over.set()  # the chain notes Voyage's failure before this test runs again
            raise RerankTimeoutError(f"{self.name} timed out")

    seat = Rendezvous(FallbackReranker([Slow("cohere:rerank-v3.5"), Slow("voyage:rerank-2.5")]), 1).seat()
    m = Meter(ledger, PRICING, deadline_s=0.2 if stops == "deadline" else 60.0, clock=lambda: NOV_3)
    call = asyncio.create_task(m.rerank(seat, "q", DOCS, request_id="b#0", course="py"))
    if stops == "deadline":
        with pytest.raises(RerankTimeoutError, match="no answer within the call deadline") as failed:
            await call
        assert failed.value.unconfirmed_usd == pytest.approx(0.004)
    else:
        await started.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    release.set()
    await over.wait()
    assert _unconfirmed_rows(tmp_path) == [("rerank:unconfirmed", *COHERE_AT_ESTIMATE)]


async def test_each_caller_of_a_failed_merged_call_reads_its_own_possibly_billed_cost(
    ledger: Ledger, tmp_path: Path
) -> None:
    """A batching backend's merged call for two seats answers garbage: one `BadResponseError` object fails
    both. Each meter records its own request at the estimate (1 document: 1 unit, $0.002; 250: 3 units,
    $0.006) and each caller reads that on the error it gets, not the last meter's figure (both read $0.006
    before)."""

    class Garbled:
        name = "cohere:rerank-v3.5"

        async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
            raise AssertionError("a batching backend gets one merged call")

        async def rerank_batch(self, requests: Sequence[tuple[str, Sequence[str]]]) -> list[RerankResponse]:
            raise BadResponseError("garbled")

    m = meter(ledger)
    first, second = in_turn(Rendezvous(Garbled(), expected=2), 2)
    failed = await asyncio.gather(
        m.rerank(first, "q", ["d"], request_id="m#0", course="py"),
        m.rerank(second, "q", ["d"] * 250, request_id="m#1", course="py"),
        return_exceptions=True,
    )
    assert [type(f) for f in failed] == [BadResponseError, BadResponseError]
    read = [getattr(f, "unconfirmed_usd", None) for f in failed]
    assert read == [pytest.approx(0.002), pytest.approx(0.006)]
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        rows = db.execute(
            "SELECT request_id, billed_units, cost_usd FROM leanrank_rerank_calls ORDER BY request_id"
        ).fetchall()
    assert rows == [("m#0", 1.0, pytest.approx(0.002)), ("m#1", 3.0, pytest.approx(0.006))]


def _patient(url: str) -> HttpReranker:
    """An adapter at `url` that waits 30 to 60 s before its one retry: far past a 1 s call deadline."""
    retry = RetryPolicy(max_attempts=2, backoff_s=60.0, max_wait_s=60.0)
    return HttpReranker(PROVIDERS["cohere"], "test-model", api_key="k", base_url=url, retry=retry)


async def test_a_deadline_while_waiting_to_retry_records_the_dropped_attempt_once(
    ledger: Ledger, tmp_path: Path, fake: FakeProvider
) -> None:
    """The provider read the first attempt whole and dropped the line (possibly billed: one record); the
    deadline (1 s) then fires during the back-off before the retry, when no attempt is in flight: nothing
    more to record."""
    fake.script(Fault(DROP))
    m = Meter(ledger, PRICING, deadline_s=1.0, clock=lambda: NOV_3)
    with pytest.raises(RerankTimeoutError, match="no answer within the call deadline"):
        await m.rerank(_patient(fake.url), "q", DOCS, request_id="w1", course="py")
    assert len(fake.requests) == 1
    assert _possibly_billed(tmp_path) == [("rerank:unconfirmed", "cohere:test-model", None)]


async def test_a_deadline_before_any_attempt_reached_the_provider_records_nothing(
    ledger: Ledger, tmp_path: Path
) -> None:
    """Nothing listens on the port: the connection is refused (never sent), and the deadline fires while the
    adapter waits to retry. No call was made, so none is recorded; the hold is released all the same."""
    with socket.create_server(("127.0.0.1", 0)) as closed:
        host, port = closed.getsockname()[:2]
    m = Meter(ledger, PRICING, deadline_s=1.0, clock=lambda: NOV_3)
    with pytest.raises(RerankTimeoutError, match="no answer within the call deadline"):
        await m.rerank(_patient(f"http://{host}:{port}"), "q", DOCS, request_id="w2", course="py")
    assert _possibly_billed(tmp_path) == []
    assert ledger.totals("backend", NOVEMBER) == []
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        assert db.execute("SELECT count(*) FROM leanrank_rerank_calls_holds").fetchone() == (0,)


@pytest.mark.parametrize("hangs", [False, True], ids=["waiting-to-retry", "in-flight"])
async def test_a_chain_cut_off_by_its_deadline_records_its_paid_link_once(
    ledger: Ledger, tmp_path: Path, fake: FakeProvider, hangs: bool
) -> None:
    """`cohere | identity` past its deadline (1 s) in the paid link: its one attempt was dropped before the
    back-off, or is in flight at a server that never answers. Either way one call may be billed: the HTTP
    layer notes it, and the chain does not note the link once more."""
    fake.script(Fault(DROP))
    m = Meter(ledger, PRICING, deadline_s=1.0, clock=lambda: NOV_3)
    with silent() as hung:
        chain = FallbackReranker([_patient(hung if hangs else fake.url), IdentityReranker()])
        with pytest.raises(RerankTimeoutError, match="no answer within the call deadline"):
            await m.rerank(chain, "q", DOCS, request_id="w3", course="py")
    assert _possibly_billed(tmp_path) == [("rerank:unconfirmed", "cohere:test-model", None)]


def test_a_deadline_that_is_not_positive_is_refused(ledger: Ledger) -> None:
    with pytest.raises(ConfigError, match="the call deadline must be positive seconds, got 0"):
        Meter(ledger, PRICING, deadline_s=0)


async def test_a_paid_call_is_not_made_when_the_ledger_cannot_be_written(tmp_path: Path) -> None:
    backend = cohere()
    with (
        Ledger("postgresql+psycopg://u@127.0.0.1:9/db", connect_timeout_s=2) as down,  # nothing listens
        pytest.raises(LedgerError, match="ledger postgresql"),
    ):
        await meter(down).rerank(backend, "q", DOCS, request_id="q1", course="py")
    assert backend.calls == 0


def _spent_record(usd: float) -> LedgerRecord:
    return make_record("seed", course="py", tenant="t", cost_usd=usd)


async def test_a_free_call_records_the_tokens_an_api_would_have_billed(ledger: Ledger) -> None:
    # the character estimate: 14 Latin chars / 4.35 → 3, 19 / 4.35 → 4, 18 Cyrillic / 4.04 → 4
    got = await meter(ledger).rerank(
        IdentityReranker(),
        "what is a loop",
        ["a loop repeats code", "Цикл повторяет код"],
        request_id="f1",
        course="py",
    )
    usage = got.response.usage
    assert (usage.query_tokens, usage.document_tokens, usage.count_source) == (3, 4 + 4, "estimate")
    assert (usage.billed_units, usage.billed_unit, got.cost_usd) == (0.0, "none", 0.0)
    [total] = ledger.totals("course", NOVEMBER)
    assert (total.query_tokens, total.document_tokens) == (3, 8)
