"""Searches are metered: one ledger record per rerank call, a reused request id refused before the provider
is paid again, hard caps served for free."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from leanrank.cost.ledger import Ledger, RequestConflictError
from leanrank.cost.period import Period
from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.pipeline import Pipeline
from leanrank.settings import Settings
from tests.conftest import SAMPLE_COURSE
from tests.rerank.servers import API_KEY, MODEL, FakeProvider


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, e5: E5SmallEncoder, bm25: Bm25Encoder) -> Path:
    data_dir = tmp_path_factory.mktemp("metered")
    with Pipeline(Settings(data_dir=data_dir), dense=e5, sparse=bm25) as pipe:
        pipe.ingest(SAMPLE_COURSE, "py")
    return data_dir


@pytest.fixture
def cohere(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProvider]:
    server = FakeProvider("cohere")
    monkeypatch.setenv("LEANRANK_COHERE_BASE_URL", server.url)
    monkeypatch.setenv("LEANRANK_COHERE_API_KEY", API_KEY)
    yield server
    server.close()


def month() -> Period:
    return Period.parse(datetime.now(UTC).strftime("%Y-%m"))


def test_every_search_is_recorded_once_per_request_id(
    indexed: Path, e5: E5SmallEncoder, bm25: Bm25Encoder, cohere: FakeProvider, tmp_path: Path
) -> None:
    ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    settings = Settings(
        data_dir=indexed, rerank={"backend": f"cohere:{MODEL}"}, cost={"ledger_url": ledger_url}
    )
    with Pipeline(settings, dense=e5, sparse=bm25) as pipe:
        first = pipe.search("Что такое цикл while?", "py", request_id="req-1", tenant="school-a")
        with pytest.raises(RequestConflictError, match="'req-1' was already billed"):
            pipe.search("Что такое цикл while?", "py", request_id="req-1", tenant="school-a")
        other = pipe.search("how do I open a file", "py", tenant="school-a")
    assert first.served_by == f"cohere:{MODEL}"
    assert first.usage.billed_units == 1  # ≤ 100 candidates: one search unit
    assert first.cost_usd is None  # the fake's model has no listed price
    assert len(cohere.requests) == 2  # the reused id never reached the provider
    with Ledger(ledger_url) as ledger:
        (total,) = ledger.totals("course", month())
    assert (total.key, total.calls, total.requests) == ("py", 2, 2)
    assert other.request_id not in ("", "req-1")


def test_hard_budget_cap_serves_from_the_free_fallback(
    indexed: Path, e5: E5SmallEncoder, bm25: Bm25Encoder, cohere: FakeProvider, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=indexed,
        rerank={"backend": f"cohere:{MODEL}"},
        cost={
            "ledger_url": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
            "budgets": [{"scope": "course", "name": "py", "hard_usd": 0.0}],
        },
    )
    with Pipeline(settings, dense=e5, sparse=bm25) as pipe:
        result = pipe.search("Что такое цикл while?", "py")
    assert cohere.requests == []
    assert result.served_by == "identity"
    assert result.budget == "hard"
    assert len(result.failed) == 1
    assert "budget" in result.failed[0]
    assert result.hits
