"""The `Reranker` contract, run over every HTTP backend against its loopback fake."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from leanrank.rerank.base import Reranker
from leanrank.rerank.http import (
    BadResponseError,
    RateLimitedError,
    RerankAuthError,
    RerankServerError,
    RerankTimeoutError,
)
from leanrank.rerank.providers import PROVIDERS
from leanrank.retry import RetryPolicy
from tests.rerank.servers import WIRES, FakeProvider, Fault, adapter, score_of

QUERY = "how is a search unit billed"
DOCS = [f"document {i} about {topic}" for i, topic in enumerate(["billing", "tokens", "units", "rates"] * 3)]


@pytest.fixture(params=sorted(WIRES))
def fake(request: pytest.FixtureRequest) -> Iterator[FakeProvider]:
    server = FakeProvider(request.param)
    yield server
    server.close()


async def test_is_a_reranker(fake: FakeProvider) -> None:
    assert isinstance(adapter(fake), Reranker)


async def test_scores_every_document_in_input_order(fake: FakeProvider) -> None:
    response = await adapter(fake).rerank(QUERY, DOCS)
    assert response.scores == pytest.approx([score_of(d) for d in DOCS])


async def test_usage_is_reported_in_the_providers_unit(fake: FakeProvider) -> None:
    usage = (await adapter(fake).rerank(QUERY, DOCS)).usage
    assert usage.billed_unit == PROVIDERS[fake.provider].billed_unit
    assert usage.count_source == "reported"
    assert usage.billed_units > 0
    assert usage.documents == len(DOCS)
    assert usage.latency_s >= 0


async def test_splits_over_the_document_limit_and_merges(fake: FakeProvider) -> None:
    response = await adapter(fake, max_docs=5).rerank(QUERY, DOCS)
    assert response.scores == pytest.approx([score_of(d) for d in DOCS])
    assert fake.batch_sizes() == [5, 5, 2]


async def test_empty_input_sends_nothing(fake: FakeProvider) -> None:
    response = await adapter(fake).rerank(QUERY, [])
    assert response.scores == ()
    assert response.usage.billed_units == 0
    assert response.usage.billed_unit == PROVIDERS[fake.provider].billed_unit
    assert fake.requests == []


async def test_unauthorised_is_an_auth_error_without_retry(fake: FakeProvider) -> None:
    fake.script(Fault(401, {"message": "invalid api key"}))
    with pytest.raises(RerankAuthError, match="HTTP 401: invalid api key"):
        await adapter(fake).rerank(QUERY, DOCS)
    assert len(fake.requests) == 1


async def test_retries_once_after_429_honouring_retry_after(fake: FakeProvider) -> None:
    fake.script(Fault(429, headers={"Retry-After": "0.05"}))
    slow_backoff = RetryPolicy(max_attempts=2, backoff_s=30.0)
    t0 = time.perf_counter()
    response = await adapter(fake, retry=slow_backoff).rerank(QUERY, DOCS)
    assert 0.05 <= time.perf_counter() - t0 < 5
    assert response.scores == pytest.approx([score_of(d) for d in DOCS])
    assert len(fake.requests) == 2


async def test_persistent_429_is_rate_limited_after_bounded_attempts(fake: FakeProvider) -> None:
    fake.script(*[Fault(429, headers={"Retry-After": "0"})] * 3)
    with pytest.raises(RateLimitedError, match="gave up after 3 attempts"):
        await adapter(fake).rerank(QUERY, DOCS)
    assert len(fake.requests) == 3


async def test_retries_a_503(fake: FakeProvider) -> None:
    fake.script(Fault(503))
    response = await adapter(fake).rerank(QUERY, DOCS)
    assert len(response.scores) == len(DOCS)


async def test_persistent_5xx_is_a_server_error(fake: FakeProvider) -> None:
    fake.script(*[Fault(503)] * 3)
    with pytest.raises(RerankServerError):
        await adapter(fake).rerank(QUERY, DOCS)


@pytest.mark.parametrize("body", [b"<html>oops</html>", {"unexpected": []}, []])
async def test_malformed_body_is_a_bad_response(fake: FakeProvider, body: object) -> None:
    fake.script(Fault(200, body))
    with pytest.raises(BadResponseError):
        await adapter(fake).rerank(QUERY, DOCS)


async def test_slow_server_times_out(fake: FakeProvider) -> None:
    fake.script(Fault(200, delay_s=0.5))
    with pytest.raises(RerankTimeoutError, match="timed out"):
        await adapter(fake, timeout_s=0.1).rerank(QUERY, DOCS)


async def test_error_messages_are_one_line(fake: FakeProvider) -> None:
    fake.script(Fault(400, b"line one\nline two\n"))
    with pytest.raises(Exception, match="HTTP 400") as info:
        await adapter(fake).rerank(QUERY, DOCS)
    assert "\n" not in str(info.value)
