"""The engine around a local cross-encoder: token-budget batching, passes over many requests, warm-up,
concurrency, and the quality guard's measures.

Where the model's numbers do not matter, a recording fake scorer stands in for it (the `scorer` seam of
`LocalReranker`), so batch shapes and routing are checked by hand; the tokenizer is the tiny XLM-R one.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from leanrank.errors import ConfigError
from leanrank.rerank.local import (
    CPU_BATCH_TOKENS,
    GPU_BATCH_TOKENS,
    IdMatrix,
    LocalReranker,
    Scores,
    length_sorted_batches,
    local_reranker,
)
from leanrank.rerank.quality import (
    LOWER_PRECISION,
    RUNTIME_PARITY,
    Agreement,
    Tolerance,
    agreement,
    kendall_tau,
    top_k_overlap,
    xquad_requests,
)
from tests.models import CORPUS

XQUAD = Path(__file__).resolve().parents[3] / "shared" / "data" / "xquad"
QUERY = "Что такое градиентный спуск?"


@pytest.fixture(scope="module")
def xlmr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from tests.models import build_tiny_xlmr

    return build_tiny_xlmr(tmp_path_factory.mktemp("tiny-xlmr-engine"), with_classification_head=True)


class Recorder:
    """A scorer that records every batch's shape and how many calls overlap, and scores a row by its own
    tokens (Σ position × id over the unpadded part), so a score shows which pair it belongs to."""

    def __init__(self, delay_s: float = 0.0, device: str = "cpu") -> None:
        self.device = device
        self.shapes: list[tuple[int, int]] = []
        self.most_at_once = 0
        self._at_once = 0
        self._delay_s = delay_s
        self._lock = threading.Lock()

    def __call__(self, input_ids: IdMatrix, attention_mask: IdMatrix) -> Scores:
        with self._lock:
            self.shapes.append((input_ids.shape[0], input_ids.shape[1]))
            self._at_once += 1
            self.most_at_once = max(self.most_at_once, self._at_once)
        time.sleep(self._delay_s)
        with self._lock:
            self._at_once -= 1
        positions = np.arange(1, input_ids.shape[1] + 1)
        return np.asarray((input_ids * attention_mask * positions).sum(axis=1), dtype=np.float64)


def engine(xlmr_dir: Path, scorer: Recorder, **options: Any) -> LocalReranker:
    config = local_reranker(xlmr_dir, runtime="torch", device="cpu", **options).config
    return LocalReranker("local:engine", config, scorer=scorer)


def documents(count: int, seed: int = 0) -> list[str]:
    """Course sentences joined in runs of 1 to 12: lengths from a few tokens to past the 128-token limit."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(CORPUS, k=rng.randint(1, 12))) for _ in range(count)]


def padded(lengths: list[int], batches: list[list[int]]) -> int:
    return sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)


def test_batches_pack_longest_first_within_the_token_budget() -> None:
    lengths = [2, 8, 3, 8, 2, 7]
    batches = length_sorted_batches(lengths, batch_size=4, max_batch_tokens=16)
    assert batches == [[1, 3], [5, 2], [0, 4]]
    assert padded(lengths, batches) == 2 * 8 + 2 * 7 + 2 * 2 == 34
    fixed = [[0, 1, 2, 3], [4, 5]]  # unsorted batches of 4, each padded to its longest
    assert padded(lengths, fixed) == 4 * 8 + 2 * 7 == 46
    assert sum(lengths) == 30


def test_batches_of_short_pairs_hold_more_rows() -> None:
    assert length_sorted_batches([4, 4, 4, 4, 4, 4, 16], batch_size=8, max_batch_tokens=16) == [
        [6],
        [0, 1, 2, 3],
        [4, 5],
    ]
    assert length_sorted_batches([3, 9, 1, 9, 5], batch_size=2, max_batch_tokens=100) == [[1, 3], [4, 0], [2]]
    assert length_sorted_batches([10, 3, 3], batch_size=4, max_batch_tokens=6) == [[0], [1, 2]]  # goes alone
    assert length_sorted_batches([], batch_size=4, max_batch_tokens=16) == []


def test_every_pair_lands_once_within_both_caps() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(1, 128) for _ in range(1000)]
    batches = length_sorted_batches(lengths, batch_size=16, max_batch_tokens=512)
    assert sorted(i for batch in batches for i in batch) == list(range(1000))
    for batch in batches:
        assert len(batch) <= 16
        assert len(batch) * lengths[batch[0]] <= 512
        assert [lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True)
    unsorted = [list(range(start, min(start + 16, 1000))) for start in range(0, 1000, 16)]
    assert padded(lengths, batches) < 0.6 * padded(lengths, unsorted)


async def test_thousands_of_long_candidates_stay_within_the_budget(xlmr_dir: Path) -> None:
    recorder = Recorder()
    reranker = engine(xlmr_dir, recorder, batch_size=64, max_batch_tokens=1024)
    docs = documents(5000)

    response = await reranker.rerank(QUERY, docs)

    warm_up, *batches = recorder.shapes
    assert warm_up[0] == 2
    assert sum(rows for rows, _ in batches) == 5000
    assert max(rows * width for rows, width in batches) == 1024  # 8 rows of the 128-token limit
    assert all(rows * width <= 1024 for rows, width in batches)
    assert response.usage.documents == len(response.scores) == 5000


@pytest.mark.parametrize(("device", "budget"), [("cpu", CPU_BATCH_TOKENS), ("cuda:0", GPU_BATCH_TOKENS)])
async def test_the_default_budget_follows_the_device(xlmr_dir: Path, device: str, budget: int) -> None:
    recorder = Recorder(device=device)
    await engine(xlmr_dir, recorder).rerank(QUERY, documents(600, seed=3))
    assert max(rows * width for rows, width in recorder.shapes) == budget  # rows of the 128-token limit
    assert sum(rows for rows, _ in recorder.shapes[1:]) == 600


async def test_scores_come_back_in_input_order_across_batches(xlmr_dir: Path) -> None:
    reranker = engine(xlmr_dir, Recorder(), batch_size=3, max_batch_tokens=256)
    docs = documents(40)
    scores = (await reranker.rerank(QUERY, docs)).scores
    one_by_one = [(await reranker.rerank(QUERY, [doc])).scores[0] for doc in docs]
    assert scores == tuple(one_by_one)
    assert len(set(scores)) > 30  # the fake's scores do tell the documents apart


async def test_rerank_batch_scores_many_requests_in_shared_batches(xlmr_dir: Path) -> None:
    recorder = Recorder()
    reranker = engine(xlmr_dir, recorder, batch_size=16)
    docs = documents(12, seed=1)
    requests = [(QUERY, docs[:4]), ("Gradient descent", []), ("Экзамен", docs[4:8]), ("Vector", docs[8:])]
    await reranker.load()
    recorder.shapes.clear()

    together = await reranker.rerank_batch(requests)

    assert len(recorder.shapes) == 1  # 12 pairs, one batch
    apart = [await reranker.rerank(query, docs) for query, docs in requests]
    assert len(recorder.shapes) == 1 + 3  # the empty request never reached the model
    for got, expected in zip(together, apart, strict=True):
        assert got.scores == expected.scores
        assert (got.usage.query_tokens, got.usage.document_tokens, got.usage.billed_units) == (
            expected.usage.query_tokens,
            expected.usage.document_tokens,
            expected.usage.billed_units,
        )
    assert together[1].scores == ()
    assert (together[1].usage.billed_units, together[1].usage.count_source) == (0.0, "none")
    assert len({response.usage.latency_s for response in together}) == 1  # one pass for all


async def test_requests_without_documents_load_nothing(xlmr_dir: Path) -> None:
    recorder = Recorder()
    responses = await engine(xlmr_dir, recorder).rerank_batch([(QUERY, []), ("Vector", [])])
    assert [r.scores for r in responses] == [(), ()]
    assert recorder.shapes == []


async def test_warm_up_runs_once_however_many_load(xlmr_dir: Path) -> None:
    recorder = Recorder()
    reranker = engine(xlmr_dir, recorder)
    await asyncio.gather(*(reranker.load() for _ in range(4)), reranker.rerank(QUERY, CORPUS[:3]))
    await reranker.load()
    assert recorder.shapes[0][0] == 2  # the warm-up batch, before any request's
    assert len(recorder.shapes) == 2


async def test_the_real_model_warms_up_on_load(xlmr_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from leanrank.rerank import torch_backend

    calls: list[tuple[int, ...]] = []
    score = torch_backend.CrossEncoderScorer.__call__

    def spy(self: Any, input_ids: IdMatrix, attention_mask: IdMatrix) -> Scores:
        calls.append(input_ids.shape)
        return score(self, input_ids, attention_mask)

    monkeypatch.setattr(torch_backend.CrossEncoderScorer, "__call__", spy)
    reranker = local_reranker(xlmr_dir, runtime="torch", device="cpu")
    await reranker.load()
    await reranker.load()
    assert len(calls) == 1


async def test_concurrent_calls_take_turns_on_the_model(xlmr_dir: Path) -> None:
    recorder = Recorder(delay_s=0.002)
    reranker = engine(xlmr_dir, recorder, batch_size=2)
    queries = [QUERY, "Vector search", "Экзамен", "Homework", "Кошка", "Lecture"]
    docs = documents(8, seed=2)
    sequential = [(await reranker.rerank(query, docs)).scores for query in queries]
    recorder.most_at_once = 0

    concurrent = await asyncio.gather(
        *(reranker.rerank(query, docs) for query in queries),
        reranker.rerank_batch([(q, docs) for q in queries]),
    )

    assert recorder.most_at_once == 1
    assert [response.scores for response in concurrent[:-1]] == sequential
    assert [response.scores for response in concurrent[-1]] == sequential


def test_kendall_tau_by_hand() -> None:
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx((5 - 1) / 6)  # one of six pairs swapped
    # tau-b with a tie in the first list: 2 concordant, 0 discordant, 2 and 3 untied pairs
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(2 * 3))
    assert kendall_tau([5, 5, 5], [5, 5, 5]) == 1.0
    assert kendall_tau([5, 5, 5], [1, 2, 3]) == 0.0


def test_kendall_tau_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.integers(0, 5, 12), rng.integers(0, 5, 12)  # many ties
        assert kendall_tau(a.tolist(), b.tolist()) == pytest.approx(stats.kendalltau(a, b).statistic)


def test_top_k_overlap_by_hand() -> None:
    assert top_k_overlap([5, 4, 3, 2, 1], [5, 4, 1, 2, 3], k=3) == pytest.approx(2 / 3)
    assert top_k_overlap([1, 2], [2, 1], k=5) == 1.0  # fewer documents than k: all are kept


def test_agreement_reports_every_measure() -> None:
    reference = [[0.9, 0.5, 0.1], [1.0, 2.0, 3.0, 4.0]]
    candidate = [[0.9, 0.4, 0.1], [1.0, 3.0, 2.0, 4.0]]
    assert agreement(reference, candidate, k=2) == Agreement(
        queries=2,
        pairs=7,
        k=2,
        max_abs_diff=pytest.approx(1.0),
        mean_abs_diff=pytest.approx((0.1 + 1.0 + 1.0) / 7),
        top_k_overlap=pytest.approx((1 + 0.5) / 2),
        kendall_tau=pytest.approx((1 + 4 / 6) / 2),
        worst_kendall_tau=pytest.approx(4 / 6),
    )


def test_the_guard_fails_loudly_beyond_tolerance() -> None:
    reference = [[float(i) for i in range(10)]] * 3
    reversed_ = [scores[::-1] for scores in reference]
    agreement(reference, [list(s) for s in reference]).check(RUNTIME_PARITY)
    with pytest.raises(ConfigError, match=r"int8 vs fp32 diverges.*top-5 overlap 0\.000 < 0\.8.*tau -1\.000"):
        agreement(reference, reversed_).check(LOWER_PRECISION, "int8 vs fp32")
    shifted = [[s + 0.01 for s in scores] for scores in reference]
    assert agreement(reference, shifted).violations(RUNTIME_PARITY) == ["max |score difference| 0.01 > 0.001"]
    assert agreement(reference, shifted).violations(Tolerance()) == []


@pytest.mark.skipif(not XQUAD.is_dir(), reason=f"XQuAD not found at {XQUAD} (../shared)")
def test_xquad_requests_are_real_bilingual_and_repeatable() -> None:
    requests = xquad_requests(XQUAD, queries=4, candidates=5)
    assert requests == xquad_requests(XQUAD, queries=4, candidates=5)
    assert [len(docs) for _, docs in requests] == [5] * 4
    cyrillic = [any("а" <= ch <= "я" for ch in query.lower()) for query, _ in requests]
    assert cyrillic == [True, False, True, False]
    assert len({len(doc) for _, docs in requests for doc in docs}) > 10  # lengths keep their spread
    with pytest.raises(ConfigError, match="cannot read"):
        xquad_requests(XQUAD / "missing", queries=1, candidates=1)
