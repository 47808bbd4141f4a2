"""Provider-specific wire details: exact request bodies, billing arithmetic, TEI's 413, configuration."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from leanrank.errors import ConfigError
from leanrank.rerank.catalog import reranker
from leanrank.rerank.http import BadResponseError, PayloadTooLargeError, RerankServerError, billable_failures
from leanrank.rerank.providers import PROVIDERS, HttpReranker
from leanrank.retry import RetryPolicy
from tests.rerank.servers import (
    API_KEY,
    MODEL,
    WIRES,
    FakeProvider,
    Fault,
    adapter,
    score_of,
    siliconflow_legacy,
    tokens_of,
    unreachable,
)

QUERY = "what does a rerank cost"
DOCS = ["first passage", "second passage here", "third"]
MANY = [f"passage number {i}" for i in range(120)]


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[FakeProvider] = []

    def start(provider: str, **options: Any) -> FakeProvider:
        servers.append(FakeProvider(provider, **options))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def pair_tokens(query: str, docs: list[str]) -> int:
    return tokens_of(query) * len(docs) + sum(tokens_of(d) for d in docs)


EXPECTED_BODIES = {
    "cohere": {"model": MODEL, "query": QUERY, "documents": DOCS},
    "jina": {"model": MODEL, "query": QUERY, "documents": DOCS, "return_documents": False},
    "voyage": {
        "model": MODEL,
        "query": QUERY,
        "documents": DOCS,
        "return_documents": False,
        "truncation": True,
    },
    "mixedbread": {"model": MODEL, "query": QUERY, "input": DOCS, "return_input": False},
    "siliconflow": {"model": MODEL, "query": QUERY, "documents": DOCS, "return_documents": False},
    "deepinfra": {"query": QUERY, "documents": DOCS},
    "fireworks": {"model": MODEL, "query": QUERY, "documents": DOCS, "return_documents": False},
    "tei": {"query": QUERY, "texts": DOCS, "raw_scores": False, "return_text": False},
    "infinity": {"model": MODEL, "query": QUERY, "documents": DOCS, "return_documents": False},
}


@pytest.mark.parametrize("provider", sorted(EXPECTED_BODIES))
async def test_exact_request(serve: Any, provider: str) -> None:
    fake = serve(provider)
    await adapter(fake).rerank(QUERY, DOCS)
    (request,) = fake.requests
    assert request.path == WIRES[provider].path
    assert request.body == EXPECTED_BODIES[provider]
    assert request.headers["authorization"] == f"Bearer {API_KEY}"


async def test_cohere_120_documents_is_one_request_of_two_search_units(serve: Any) -> None:
    fake = serve("cohere")
    response = await adapter(fake).rerank(QUERY, MANY)
    assert fake.batch_sizes() == [120]
    assert response.usage.billed_units == 2
    assert response.usage.billed_unit == "search_units"
    assert response.usage.count_source == "reported"
    assert response.scores == pytest.approx([score_of(d) for d in MANY])


async def test_cohere_splits_on_whole_search_units(serve: Any) -> None:
    fake = serve("cohere")
    usage = (await adapter(fake, max_docs=150).rerank(QUERY, MANY + MANY)).usage
    assert fake.batch_sizes() == [100, 100, 40]
    assert usage.billed_units == 3


async def test_jina_usage_is_total_tokens_as_reported(serve: Any) -> None:
    fake = serve("jina")
    usage = (await adapter(fake).rerank(QUERY, MANY)).usage
    assert usage.billed_units == pair_tokens(QUERY, MANY)
    assert usage.document_tokens == pair_tokens(QUERY, MANY)
    assert (usage.billed_unit, usage.count_source) == ("tokens", "reported")


async def test_voyage_usage_sums_over_split_requests(serve: Any) -> None:
    fake = serve("voyage")
    usage = (await adapter(fake, max_docs=50).rerank(QUERY, MANY)).usage
    assert fake.batch_sizes() == [50, 50, 20]
    assert usage.billed_units == pair_tokens(QUERY, MANY)


async def test_tei_splits_in_halves_on_413_and_merges(serve: Any) -> None:
    fake = serve("tei")
    docs = MANY[:40]
    response = await adapter(fake, max_docs=64).rerank(QUERY, docs)
    assert fake.batch_sizes() == [40, 20, 20]
    assert response.scores == pytest.approx([score_of(d) for d in docs])
    assert response.usage.billed_units == pair_tokens(QUERY, docs)
    assert response.usage.count_source == "reported"


async def test_tei_default_limit_avoids_the_413(serve: Any) -> None:
    fake = serve("tei")
    await adapter(fake).rerank(QUERY, MANY[:40])
    assert fake.batch_sizes() == [32, 8]


async def test_tei_413_on_one_document_is_raised(serve: Any) -> None:
    fake = serve("tei")
    fake.script(Fault(413, {"error": "batch size 1 > maximum allowed batch size 0"}))
    with pytest.raises(PayloadTooLargeError, match="batch size"):
        await adapter(fake).rerank(QUERY, ["x"])
    fake.script(*[Fault(413, {"error": "input too long"})] * 2)
    with pytest.raises(PayloadTooLargeError, match="input too long"):
        await adapter(fake).rerank(QUERY, ["x"])
    assert [r.body.get("truncate") for r in fake.requests[1:]] == [None, True]  # resent once, truncated


LONG_DOC = " ".join(["word"] * 700)  # issue 16, item 2: ~700 words among 32, model window 512
WINDOW_512 = replace(WIRES["tei"], max_input_tokens=512)


async def test_tei_limits_from_info_cap_documents_client_side(serve: Any) -> None:
    fake = serve("tei", wire=WINDOW_512, info={"max_input_length": 512, "max_client_batch_size": 16})
    docs = [*MANY[:31], LONG_DOC]
    model = adapter(fake)
    response = await model.rerank(QUERY, docs)
    assert fake.batch_sizes() == [16, 16]  # the server's batch size, one request per slice, no 413
    sent = fake.requests[1].body["texts"][-1]
    assert LONG_DOC.startswith(sent)
    assert tokens_of(QUERY) + tokens_of(sent) <= 512
    assert response.scores[:31] == pytest.approx([score_of(d) for d in docs[:31]])
    assert response.scores[31] == pytest.approx(score_of(sent))
    await model.rerank(QUERY, docs[:3])
    assert fake.info_requests == 1  # learned once


async def test_tei_input_too_long_is_truncated_not_split(serve: Any) -> None:
    """Without /info, the 413 for one long input resends that batch truncated instead of halving it."""
    fake = serve("tei", wire=WINDOW_512)
    docs = [*MANY[:31], " ".join(["я"] * 700)]  # short words: the 4-characters estimate undercounts them
    response = await adapter(fake).rerank(QUERY, docs)
    assert fake.batch_sizes() == [32, 32]
    assert [r.body.get("truncate") for r in fake.requests] == [None, True]
    assert response.scores == pytest.approx([score_of(d) for d in docs])


async def test_tei_remembers_the_batch_size_that_worked(serve: Any) -> None:
    fake = serve("tei", wire=replace(WIRES["tei"], max_docs=8))
    model = adapter(fake)
    response = await model.rerank(QUERY, MANY[:40])
    assert fake.batch_sizes() == [32, 16, 8, 8, 8, 8, 8]  # successful slices are kept, never re-probed
    assert response.scores == pytest.approx([score_of(d) for d in MANY[:40]])
    fake.requests.clear()
    await model.rerank(QUERY, MANY[:40])
    assert fake.batch_sizes() == [8] * 5


async def test_tei_without_usage_headers_is_estimated(serve: Any) -> None:
    fake = serve("tei", usage_headers=False)
    usage = (await adapter(fake).rerank(QUERY, DOCS)).usage
    assert usage.count_source == "estimate"
    assert usage.query_tokens == math.ceil(len(QUERY) / 4)
    assert usage.document_tokens == sum(math.ceil(len(d) / 4) for d in DOCS)
    assert usage.billed_units == usage.query_tokens * len(DOCS) + usage.document_tokens


async def test_413_is_not_split_for_other_providers(serve: Any) -> None:
    fake = serve("jina")
    fake.script(Fault(413))
    with pytest.raises(PayloadTooLargeError):
        await adapter(fake).rerank(QUERY, DOCS)
    assert len(fake.requests) == 1


async def test_siliconflow_accepts_the_older_usage_shape(serve: Any) -> None:
    fake = serve("siliconflow", wire=dataclasses.replace(WIRES["siliconflow"], answer=siliconflow_legacy))
    usage = (await adapter(fake).rerank(QUERY, DOCS)).usage
    assert (usage.billed_units, usage.count_source) == (pair_tokens(QUERY, DOCS), "reported")


async def test_deepinfra_reports_its_cost(serve: Any) -> None:
    fake = serve("deepinfra")
    usage = (await adapter(fake).rerank(QUERY, DOCS)).usage
    assert usage.billed_units == pair_tokens(QUERY, DOCS)
    assert usage.cost_usd == pytest.approx(pair_tokens(QUERY, DOCS) * 1e-8)


async def test_deepinfra_query_field_is_configurable(serve: Any) -> None:
    queries = dataclasses.replace(
        WIRES["deepinfra"], fields=frozenset({"queries", "documents"}), query_key="queries"
    )
    fake = serve("deepinfra", wire=queries)
    with pytest.raises(Exception, match="HTTP 422"):
        await adapter(fake).rerank(QUERY, DOCS)
    await adapter(fake, query_key="queries").rerank(QUERY, DOCS)
    assert fake.requests[-1].body == {"queries": QUERY, "documents": DOCS}


async def test_infinity_counts_characters(serve: Any) -> None:
    fake = serve("infinity")
    usage = (await adapter(fake).rerank(QUERY, DOCS)).usage
    assert usage.billed_unit == "characters"
    assert usage.billed_units == len(QUERY) * len(DOCS) + sum(len(d) for d in DOCS)


@pytest.mark.parametrize(
    "results",
    [
        [{"index": 0, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.8}],
        [{"index": 0, "relevance_score": 0.9}, {"index": 5, "relevance_score": 0.8}],
        [{"index": 0, "relevance_score": 0.9}],
        [{"index": 0, "relevance_score": "high"}, {"index": 1, "relevance_score": 0.8}],
    ],
)
async def test_missing_duplicate_or_bad_results_are_bad_responses(serve: Any, results: Any) -> None:
    fake = serve("cohere")
    fake.script(Fault(200, {"id": "r", "results": results, "meta": {}}))
    with pytest.raises(BadResponseError):
        await adapter(fake).rerank(QUERY, DOCS[:2])


async def test_key_and_base_url_from_environment(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = serve("cohere")
    monkeypatch.setenv("LEANRANK_COHERE_API_KEY", API_KEY)
    monkeypatch.setenv("LEANRANK_COHERE_BASE_URL", fake.url)
    backend = reranker(f"cohere:{MODEL}")
    assert backend.name == f"cohere:{MODEL}"
    response = await backend.rerank(QUERY, DOCS)
    assert len(response.scores) == len(DOCS)
    assert fake.requests[0].headers["authorization"] == f"Bearer {API_KEY}"


async def test_tei_by_url_needs_no_key(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEANRANK_TEI_API_KEY", raising=False)
    fake = serve("tei")
    response = await reranker(f"tei:{fake.url}").rerank(QUERY, DOCS)
    assert response.scores == pytest.approx([score_of(d) for d in DOCS])
    assert "authorization" not in fake.requests[0].headers


def test_missing_key_names_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEANRANK_COHERE_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="LEANRANK_COHERE_API_KEY"):
        reranker("cohere:rerank-v3.5")


def test_tei_without_url_names_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEANRANK_TEI_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="LEANRANK_TEI_BASE_URL"):
        reranker("tei:")


def test_bad_settings_fail_at_construction() -> None:
    with pytest.raises(ConfigError, match="http"):
        HttpReranker(PROVIDERS["cohere"], MODEL, api_key="k", base_url="ftp://x")
    with pytest.raises(ConfigError, match="timeout"):
        HttpReranker(PROVIDERS["cohere"], MODEL, api_key="k", timeout_s=0)
    with pytest.raises(ConfigError, match="model"):
        HttpReranker(PROVIDERS["cohere"], "", api_key="k")


async def test_retry_after_as_an_http_date(serve: Any) -> None:
    fake = serve("jina")
    fake.script(Fault(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    slow_backoff = RetryPolicy(max_attempts=2, backoff_s=30.0)
    response = await adapter(fake, retry=slow_backoff).rerank(QUERY, DOCS)
    assert len(response.scores) == len(DOCS)


async def test_a_connection_not_made_within_the_timeout_is_retried_and_not_billable() -> None:
    """The timeout covers connecting too; one that fires before there is a connection sent nothing, so it is
    a connection failure (retried, then a server error), not a timed-out call the provider may bill."""
    with unreachable() as url, billable_failures() as billable:
        hangs = HttpReranker(
            PROVIDERS["cohere"],
            MODEL,
            api_key=API_KEY,
            base_url=url,
            timeout_s=0.2,
            retry=RetryPolicy(max_attempts=2, backoff_s=0.01),
        )
        with pytest.raises(RerankServerError, match=r"connect timed out .*gave up after 2 attempts"):
            await hangs.rerank(QUERY, DOCS)
    assert billable.calls == []


def test_one_client_per_event_loop_closed_with_the_loop(serve: Any) -> None:
    fake = serve("cohere", keep_alive=True)
    backend = adapter(fake)
    seen: list[tuple[int, int]] = []

    async def three_calls() -> None:
        for _ in range(3):
            await backend.rerank(QUERY, DOCS)
            seen.append((fake.connections, fake.open_connections))

    asyncio.run(three_calls())
    assert len(fake.requests) == 3
    assert seen == [(1, 1)] * 3  # one connection, kept open across the calls
    assert fake.wait_all_closed()  # and closed when the loop shut down
    asyncio.run(three_calls())  # a new loop gets a client of its own
    assert (len(fake.requests), fake.connections) == (6, 2)
    assert fake.wait_all_closed()
