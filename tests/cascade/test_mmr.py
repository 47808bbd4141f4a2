"""MMR (Carbonell & Goldstein 1998) by hand and as the cascade's first stage; the nothing-relevant check."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from leanrank.cascade.mmr import mmr_order
from leanrank.cascade.plan import Cascade
from leanrank.encode.bm25 import Bm25Encoder
from leanrank.settings import CascadeSettings
from tests.cascade.test_plan import cand, words

# a and b are the same passage; c is another lesson.
VECTORS = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
RELEVANCE = [1.0, 0.9, 0.5]


@pytest.mark.parametrize(
    ("lam", "order"),
    [
        (1.0, [0, 1, 2]),  # relevance only
        (0.9, [0, 1, 2]),  # b: 0.9·0.9 − 0.1·1 = 0.71 beats c: 0.45
        (0.5, [0, 2, 1]),  # b: 0.45 − 0.5 = −0.05 loses to c: 0.25
        (0.0, [0, 2, 1]),  # redundancy only; the first pick is a tie, won by the first
    ],
)
def test_mmr_by_hand(lam: float, order: list[int]) -> None:
    assert mmr_order(RELEVANCE, VECTORS, lam) == order


def test_mmr_takes_the_cosine_whatever_the_vector_lengths() -> None:
    assert mmr_order(RELEVANCE, VECTORS * [[3.0], [0.5], [7.0]], 0.5) == [0, 2, 1]


def test_mmr_refuses_a_lambda_outside_the_unit_interval_and_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mmr_order(RELEVANCE, VECTORS, 1.5)
    with pytest.raises(ValueError, match="3 relevances"):
        mmr_order(RELEVANCE, VECTORS[:2], 0.5)
    assert mmr_order([], np.zeros((0, 2)), 0.5) == []


async def test_the_cascade_cut_keeps_the_other_lesson_under_mmr() -> None:
    cands = [
        cand(0, 1.0, "loop one", vector=[1.0, 0.0]),
        cand(1, 0.9, "loop two", vector=[0.99, 0.1]),
        cand(2, 0.5, "files", vector=[0.0, 1.0]),
    ]
    fixed = {"preset": "off", "adaptive": True, "keep_ratio": 0.8, "min_depth": 2}  # two go on
    plain = Cascade(CascadeSettings(**fixed), count=words, sparse=Bm25Encoder())
    diverse = Cascade(CascadeSettings(**fixed, mmr_lambda=0.5), count=words, sparse=Bm25Encoder())
    assert diverse.needs_vectors
    assert not plain.needs_vectors
    sent = [[s.candidate.chunk_id for s in (await c.select("q", cands)).sent] for c in (plain, diverse)]
    assert sent == [["id0", "id1"], ["id0", "id2"]]


async def test_nothing_is_sent_when_no_candidate_is_similar_enough() -> None:
    cands = [
        dataclasses.replace(cand(i, 1.0 - i / 10, f"text {i}"), dense=d) for i, d in enumerate([0.71, 0.69])
    ]
    cands.append(cand(2, 0.5, "bm25 only"))  # no dense cosine: never counts as similar
    cascade = Cascade(CascadeSettings(preset="off", min_similarity=0.75), count=words, sparse=Bm25Encoder())
    selection = await cascade.select("q", cands)
    assert (selection.sent, selection.dropped, len(selection.rest)) == ([], {"min_similarity": 3}, 3)
    passing = Cascade(CascadeSettings(preset="off", min_similarity=0.7), count=words, sparse=Bm25Encoder())
    assert len((await passing.select("q", cands)).sent) == 3
