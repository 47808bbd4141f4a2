"""Fallback chains: the first backend that answers serves, and the response says which and why."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from leanrank.errors import ConfigError, InputError
from leanrank.rerank.base import RerankResponse
from leanrank.rerank.fallback import FallbackReranker
from leanrank.rerank.http import RerankServerError
from leanrank.rerank.identity import IdentityReranker
from leanrank.retry import RetryPolicy
from tests.rerank.servers import FakeProvider, Fault, adapter, score_of

DOCS = ["alpha", "beta", "gamma"]


class Failing:
    def __init__(self, exc: Exception, name: str = "failing") -> None:
        self.name = name
        self.exc = exc
        self.calls = 0

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        self.calls += 1
        raise self.exc


@pytest.fixture
def cohere() -> Iterator[FakeProvider]:
    server = FakeProvider("cohere")
    yield server
    server.close()


async def test_first_backend_that_answers_serves(cohere: FakeProvider) -> None:
    paid = adapter(cohere)
    response = await FallbackReranker([paid, IdentityReranker()]).rerank("q", DOCS)
    assert response.scores == pytest.approx([score_of(d) for d in DOCS])
    assert response.served_by == paid.name
    assert response.failed == ()


async def test_a_failing_provider_falls_back_and_says_why(cohere: FakeProvider) -> None:
    cohere.script(*[Fault(503)] * 2)
    paid = adapter(cohere, retry=RetryPolicy(max_attempts=2, backoff_s=0.01))
    response = await FallbackReranker([paid, IdentityReranker()]).rerank("q", DOCS)
    assert response.served_by == "identity"
    assert response.scores == (1.0, 1 - 1 / 3, 1 - 2 / 3)
    assert len(response.failed) == 1
    assert response.failed[0].startswith(f"{paid.name}: ")
    assert "HTTP 503" in response.failed[0]
    assert response.usage.billed_unit == "none"


async def test_the_last_backends_failure_is_raised() -> None:
    first, last = Failing(RerankServerError("down"), "a"), Failing(RerankServerError("also down"), "b")
    with pytest.raises(RerankServerError, match="also down"):
        await FallbackReranker([first, last]).rerank("q", DOCS)
    assert (first.calls, last.calls) == (1, 1)


async def test_caller_errors_are_not_retried_elsewhere() -> None:
    first, spare = Failing(InputError("bad request")), IdentityReranker()
    with pytest.raises(InputError):
        await FallbackReranker([first, spare]).rerank("q", DOCS)


def test_a_chain_needs_two_links() -> None:
    with pytest.raises(ConfigError, match="at least two"):
        FallbackReranker([IdentityReranker()])


def test_the_chain_is_named_after_its_links() -> None:
    assert FallbackReranker([Failing(RuntimeError(), "a"), IdentityReranker()]).name == "a | identity"
