"""Micro-batching with a counting fake model: concurrent calls become one backend call, answers go back
to their callers in order, a failure reaches every caller of the batch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from leanrank.errors import BackendError
from leanrank.rerank.base import RerankResponse, Usage
from leanrank.rerank.guard import GuardedBatchReranker, GuardedReranker
from leanrank.rerank.http import billable_failures, note_billable
from leanrank.rerank.identity import IdentityReranker
from leanrank.serve import BatchReranker, MicroBatcher, create_app
from tests.serve.conftest import settings_for


def score(query: str, document: str) -> float:
    return len(query) + len(document) / 1000


class CountingModel:
    """Scores (query, document) pairs; counts how often the model itself runs."""

    name = "counting"

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        return (await self.rerank_batch([(query, documents)]))[0]

    async def rerank_batch(self, requests: Sequence[tuple[str, Sequence[str]]]) -> list[RerankResponse]:
        self.calls.append(len(requests))
        await asyncio.sleep(0)
        if self.fail:
            raise BackendError("model crashed")
        return [
            RerankResponse(
                tuple(score(q, d) for d in docs),
                Usage(1, len(docs), 0.0, "none", "tokenizer", 0.0, len(docs)),
            )
            for q, docs in requests
        ]


class NotingModel(CountingModel):
    """A batching backend whose every call notes one possibly billed call."""

    async def rerank_batch(self, requests: Sequence[tuple[str, Sequence[str]]]) -> list[RerankResponse]:
        note_billable(self.name)
        return await super().rerank_batch(requests)


def batcher(model: CountingModel, window_ms: float = 5, max_documents: int = 1_000) -> MicroBatcher:
    return MicroBatcher(model, window_s=window_ms / 1000, max_documents=max_documents)


async def test_concurrent_calls_become_one_backend_call() -> None:
    model = CountingModel()
    queries = [f"q{'?' * i}" for i in range(20)]
    docs = [[f"doc {i}.{j}" for j in range(i % 4 + 1)] for i in range(20)]
    shared = batcher(model)
    answers = await asyncio.gather(*(shared.rerank(q, d) for q, d in zip(queries, docs, strict=True)))
    assert model.calls == [20]
    for q, d, answer in zip(queries, docs, answers, strict=True):
        assert answer.scores == tuple(score(q, x) for x in d)
        assert answer.usage.documents == len(d)


async def test_a_full_batch_goes_without_waiting_for_the_window() -> None:
    model = CountingModel()
    shared = batcher(model, window_ms=10_000, max_documents=4)
    answers = await asyncio.wait_for(asyncio.gather(*(shared.rerank("q", ["a", "b"]) for _ in range(4))), 5)
    assert model.calls == [2, 2]
    assert len(answers) == 4


async def test_calls_apart_in_time_are_separate_batches() -> None:
    model = CountingModel()
    shared = batcher(model, window_ms=1)
    await shared.rerank("q", ["a"])
    await shared.rerank("q", ["b"])
    assert model.calls == [1, 1]


async def test_a_failed_batch_fails_every_caller() -> None:
    shared = batcher(CountingModel(fail=True))
    results = await asyncio.gather(*(shared.rerank("q", ["a"]) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, BackendError) for r in results)


async def test_a_merged_call_s_possibly_billed_calls_reach_each_caller() -> None:
    """The merged call goes out from the first caller's timer; what it notes is each caller's call, noted
    in each caller's own context (its meter records its share at its own estimate)."""

    async def caller(query: str) -> list[str]:
        with billable_failures() as noted:
            await shared.rerank(query, ["a"])
        return noted.calls

    model = NotingModel()
    shared = batcher(model)
    assert await asyncio.gather(*(caller(f"q{i}") for i in range(3))) == [["counting"]] * 3
    assert model.calls == [3]


def test_only_batching_backends_are_batched(tmp_path: Path) -> None:
    assert isinstance(CountingModel(), BatchReranker)
    batched = create_app(settings_for(tmp_path), reranker=CountingModel()).state.service.policy
    assert isinstance(batched, MicroBatcher)
    assert isinstance(batched.inner, GuardedBatchReranker)  # blank documents never reach the batch
    plain = create_app(settings_for(tmp_path), reranker=IdentityReranker()).state.service.policy
    assert isinstance(plain, GuardedReranker)
    assert isinstance(plain.inner, IdentityReranker)
    off = create_app(settings_for(tmp_path, micro_batch_ms=0), reranker=CountingModel()).state.service.policy
    assert isinstance(off, GuardedBatchReranker)
    assert isinstance(off.inner, CountingModel)


@pytest.mark.parametrize("n", [1, 7])
async def test_answers_keep_the_callers_order(n: int) -> None:
    model = CountingModel()
    shared = batcher(model)
    answers = await asyncio.gather(*(shared.rerank("q" * (i + 1), ["x"]) for i in range(n)))
    assert [a.scores[0] for a in answers] == [score("q" * (i + 1), "x") for i in range(n)]
