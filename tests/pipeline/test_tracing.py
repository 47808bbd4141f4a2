"""OpenTelemetry spans of a search, collected by the SDK's in-memory exporter: one per stage, nested under
the search, the rerank call carrying tokens and cost, the ledger write under the call."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from leanrank import tracing
from leanrank.cost.ledger import Ledger
from leanrank.cost.meter import Meter
from leanrank.cost.pricing import Pricing
from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.errors import BackendError
from leanrank.pipeline import Pipeline
from leanrank.rerank.base import RerankResponse
from leanrank.settings import Settings
from tests.rerank.servers import API_KEY, MODEL, FakeProvider
from tests.serve.conftest import PRICE

LESSON = (
    "# Циклы\n\nЦикл while повторяет тело, пока условие истинно.\n\n"
    "# Functions\n\nA function is defined with the def keyword.\n"
)


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    """The process's tracer provider (set once per process), exporting into memory."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    memory = InMemorySpanExporter()
    processor = SimpleSpanProcessor(memory)
    provider.add_span_processor(processor)
    yield memory
    processor.shutdown()


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    exporter.clear()
    return exporter


def by_name(finished: Sequence[ReadableSpan]) -> dict[str, ReadableSpan]:
    named = {s.name: s for s in finished}
    assert len(named) == len(finished), [s.name for s in finished]
    return named


def test_a_search_is_one_trace_with_a_span_per_stage(
    spans: InMemorySpanExporter,
    e5: E5SmallEncoder,
    bm25: Bm25Encoder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cohere = FakeProvider("cohere")
    monkeypatch.setenv("LEANRANK_COHERE_BASE_URL", cohere.url)
    monkeypatch.setenv("LEANRANK_COHERE_API_KEY", API_KEY)
    course = tmp_path / "course"
    course.mkdir()
    (course / "loops.md").write_text(LESSON, encoding="utf-8")
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICE, encoding="utf-8")  # $0.002 a request of up to 100 documents
    settings = Settings(
        data_dir=tmp_path / "data",
        rerank={"backend": f"cohere:{MODEL}"},  # type: ignore[arg-type]
        cost={"pricing_files": [prices]},  # type: ignore[arg-type]
    )
    try:
        with Pipeline(settings, dense=e5, sparse=bm25) as pipe:
            pipe.ingest(course, "py")
            spans.clear()
            result = pipe.search("Что такое цикл while?", "py", request_id="req-1")
    finally:
        cohere.close()
    named = by_name(spans.get_finished_spans())
    assert set(named) == {
        "leanrank.search",
        "leanrank.retrieve",
        "leanrank.cascade",
        "leanrank.rerank",
        "leanrank.ledger.write",
    }
    search = named["leanrank.search"]
    assert {s.context.trace_id for s in named.values()} == {search.context.trace_id}
    for stage in ("leanrank.retrieve", "leanrank.cascade", "leanrank.rerank"):
        assert named[stage].parent is not None
        assert named[stage].parent.span_id == search.context.span_id
    rerank, write = named["leanrank.rerank"], named["leanrank.ledger.write"]
    assert write.parent is not None
    assert write.parent.span_id == rerank.context.span_id
    assert dict(write.attributes or {}) == {"leanrank.records": 1, "leanrank.recorded": True}
    attributes = dict(rerank.attributes or {})
    assert attributes["leanrank.served_by"] == f"cohere:{MODEL}"
    assert attributes["leanrank.course"] == "py"
    assert attributes["leanrank.documents"] == len(result.sent)
    assert attributes["gen_ai.usage.input_tokens"] == result.usage.total_tokens > 0
    assert attributes["leanrank.cost_usd"] == pytest.approx(0.002) == result.cost_usd
    assert attributes["leanrank.billed_unit"] == "search_units"
    retrieve = dict(named["leanrank.retrieve"].attributes or {})
    cascade = dict(named["leanrank.cascade"].attributes or {})
    assert retrieve["leanrank.candidates"] == cascade["leanrank.candidates"] == result.retrieved
    assert cascade["leanrank.sent"] == len(result.sent)


class Broken:
    name = "broken"

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        raise BackendError("broken: the backend is down")


async def test_a_failed_rerank_call_is_an_error_span(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as ledger:
        meter = Meter(ledger, Pricing.load())
        with pytest.raises(BackendError):
            await meter.rerank(Broken(), "q", ["a", "b"], request_id="r1", course="py")
    (failed,) = spans.get_finished_spans()
    assert failed.name == "leanrank.rerank"
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]
    assert dict(failed.attributes or {}) == {
        "leanrank.backend": "broken",
        "leanrank.documents": 2,
        "leanrank.course": "py",
    }


def test_without_the_otel_extra_spans_do_nothing(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracing, "trace", None)  # as when opentelemetry-api is not installed
    with tracing.span("leanrank.retrieve", {"leanrank.course": "py"}) as current:
        current.set_attributes({"leanrank.candidates": 3})
    assert spans.get_finished_spans() == ()
