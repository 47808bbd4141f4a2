"""Batch rerank: one call to a backend that batches, bounded concurrent calls (with the adapters' own retry
on 429) to one that does not, and a rendezvous that merges separately metered calls."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

import pytest

from leanrank.errors import BackendError
from leanrank.rerank.base import RerankResponse, Usage
from leanrank.rerank.batch import Rendezvous, answer_each, rerank_many
from leanrank.rerank.guard import guard
from leanrank.rerank.http import Billable, billable_failures, note_billable
from tests.rerank.servers import FakeProvider, Fault, adapter, score_of
from tests.serve.test_batching import CountingModel, NotingModel, score


class Slow:
    """A backend without a batch API that records how many of its calls overlap."""

    name = "slow"

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.calls = 0

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        self.calls += 1
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(0.01)
        self.running -= 1
        return RerankResponse(tuple(float(len(d)) for d in documents), Usage.free(len(documents), 0.0))


REQUESTS = [(f"q{i}", [f"doc {i}.{j}" for j in range(i + 1)]) for i in range(6)]


async def test_a_batching_backend_gets_one_call_with_every_request() -> None:
    model = CountingModel()
    answers = await rerank_many(guard(model), REQUESTS)
    assert model.calls == [6]
    assert [a.scores for a in answers] == [tuple(score(q, d) for d in docs) for q, docs in REQUESTS]


async def test_other_backends_get_concurrent_calls_at_most_concurrency_at_once() -> None:
    slow = Slow()
    answers = await rerank_many(slow, REQUESTS, concurrency=2)
    assert (slow.calls, slow.most) == (6, 2)
    assert [len(a.scores) for a in answers] == [1, 2, 3, 4, 5, 6]


async def test_concurrency_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="concurrency must be at least 1"):
        await rerank_many(Slow(), REQUESTS, concurrency=0)


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    provider = FakeProvider("cohere")
    yield provider
    provider.close()


async def test_a_paid_api_gets_one_request_per_query_and_a_429_is_retried(fake: FakeProvider) -> None:
    fake.script(Fault(429, headers={"retry-after": "0"}))
    answers = await rerank_many(adapter(fake), REQUESTS[:3])
    assert len(fake.requests) == 4  # three queries, one of them retried after the 429
    assert [a.scores for a in answers] == [tuple(score_of(d) for d in docs) for _, docs in REQUESTS[:3]]
    assert [a.usage.billed_units for a in answers] == [1.0, 1.0, 1.0]  # one search unit each


async def test_a_rendezvous_sends_the_seated_calls_together_and_waits_for_no_one_who_left() -> None:
    model = CountingModel()
    meeting = Rendezvous(model, expected=4)
    seats = [meeting.seat() for _ in range(4)]
    seats[3].done()  # this caller went elsewhere (a budget fallback) and never calls
    calls = (s.rerank(q, docs) for s, (q, docs) in zip(seats[:3], REQUESTS, strict=False))
    answers = await asyncio.gather(*calls)
    assert model.calls == [3]
    assert [a.scores for a in answers] == [tuple(score(q, d) for d in docs) for q, docs in REQUESTS[:3]]
    with pytest.raises(RuntimeError, match="one call"):
        await seats[3].rerank("late", ["doc"])


async def test_a_failed_rendezvous_fails_each_of_its_callers() -> None:
    meeting = Rendezvous(CountingModel(fail=True), expected=2)
    results = await asyncio.gather(
        *(meeting.seat().rerank(q, docs) for q, docs in REQUESTS[:2]), return_exceptions=True
    )
    assert all(isinstance(r, BackendError) for r in results)


class Noting(Slow):
    """Notes a possibly billed call for each query in `dropped` (as `JsonClient.post` notes an attempt whose
    line dropped) before answering."""

    name = "noting"

    def __init__(self, *dropped: str) -> None:
        super().__init__()
        self.dropped = dropped

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        if query in self.dropped:
            note_billable(self.name)
        return await super().rerank(query, documents)


async def test_separate_calls_note_into_each_request_s_own_list() -> None:
    lists = [Billable() for _ in REQUESTS[:4]]
    with billable_failures() as callers:
        await answer_each(Noting("q1", "q3"), REQUESTS[:4], concurrency=2, billable=lists)
    assert ([b.calls for b in lists], callers.calls) == ([[], ["noting"], [], ["noting"]], [])


async def test_a_merged_call_is_each_request_s_call() -> None:
    lists = [Billable() for _ in REQUESTS[:3]]
    with billable_failures() as callers:
        await answer_each(NotingModel(), REQUESTS[:3], billable=lists)
    assert ([b.calls for b in lists], callers.calls) == ([["counting"]] * 3, [])


async def test_without_lists_the_notes_are_the_caller_s_as_before() -> None:
    with billable_failures() as separate:
        await rerank_many(Noting("q1", "q3"), REQUESTS[:4])
    with billable_failures() as merged:
        await rerank_many(NotingModel(), REQUESTS[:4])
    assert (separate.calls, merged.calls) == (["noting", "noting"], ["counting"])


async def test_a_list_per_request_is_required() -> None:
    with pytest.raises(ValueError, match="1 lists of billable calls for 2 requests"):
        await answer_each(Slow(), REQUESTS[:2], billable=[Billable()])
