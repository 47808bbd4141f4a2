"""Steering: examples become one direction per side, and both stores run the engine's recommend and
discovery queries with it (embedded Qdrant Edge, and qdrant-client, whose local mode stands in for a
server). Hand-made 4-d vectors, so every expected order is worked out in the comments."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from leanrank.encode.base import SparseVec
from leanrank.errors import InputError
from leanrank.index.base import HybridQuery, Steer, SteerStrategy, Store
from leanrank.index.edge import EdgeStore, point_id
from leanrank.index.qdrant import QdrantStore
from leanrank.retrieve.steering import Steering, from_examples, resolve
from tests.index.test_edge import chunk, vec, write

# Two lessons and an unrelated source. The query leans to lesson 2: unsteered, the dense order is
# B2 (cos 0.804), A2 (0.739), B (0.735), A (0.662), C (0.147).
A, A2, B, B2, C = vec(1, 0, 0, 0), vec(0.9, 0.1, 0, 0), vec(0, 1, 0, 0), vec(0.1, 0.9, 0, 0), vec(0, 0, 1, 0)
QUERY = vec(0.9, 1, 0.2, 0)
LESSON1 = [chunk("c", "lesson1.md", 0, "a"), chunk("c", "lesson1.md", 1, "a2")]
LESSON2 = [chunk("c", "lesson2.md", 0, "b"), chunk("c", "lesson2.md", 1, "b2")]
OTHER = [chunk("c", "other.md", 0, "c")]
ELSEWHERE = [chunk("d", "lesson1.md", 0, "d")]
NAMES = {point_id(c): c.text for c in (*LESSON1, *LESSON2, *OTHER)}


@pytest.fixture(params=["edge", "qdrant"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened: Store = (
        EdgeStore(tmp_path / "edge", dim=4, encoder="test")
        if request.param == "edge"
        else QdrantStore(":memory:", dim=4, encoder="test")
    )
    write(opened, LESSON1, [A, A2], [[1], [2]])
    write(opened, LESSON2, [B, B2], [[3], [4]])
    write(opened, OTHER, [C], [[5]])
    write(opened, ELSEWHERE, [A], [[1]])
    yield opened
    opened.close()


def dense_order(store: Store, steer: Steer | None) -> list[str]:
    request = HybridQuery("c", QUERY, SparseVec((), ()), limit=5, prefetch=5, rrf_k=60, steer=steer)
    return [NAMES[c.chunk_id] for c in store.hybrid(request)]


def steer_of(store: Store, steering: Steering, strategy: SteerStrategy = "sum_scores") -> Steer | None:
    return resolve(store, "c", steering, strategy)


def test_without_examples_the_dense_list_is_plain_nearest(store: Store) -> None:
    assert steer_of(store, Steering()) is None
    assert dense_order(store, None) == ["b2", "a2", "b", "a", "c"]


def test_a_lesson_worked_in_pulls_its_chunks_up(store: Store) -> None:
    # sum_scores: cos(q, x) + cos(P, x), P the lesson-1 centroid ≈ (0.998, 0.055):
    # A2 0.739 + 0.998, A 0.662 + 0.998, B2 0.804 + 0.164, B 0.735 + 0.055, C 0.147 + 0.
    steer = steer_of(store, Steering(positive_sources=("lesson1.md",)))
    assert dense_order(store, steer) == ["a2", "a", "b2", "b", "c"]


def test_a_ruled_out_lesson_pushes_its_chunks_down(store: Store) -> None:
    # cos(q, x) − cos(N, x), N the lesson-2 centroid ≈ (0.055, 0.998): A 0.662 − 0.055 = 0.607,
    # A2 0.739 − 0.164 = 0.575, C 0.147 − 0, B2 0.804 − 0.998 = −0.194, B 0.735 − 0.998 = −0.263.
    steer = steer_of(store, Steering(negative_sources=("lesson2.md",)))
    assert dense_order(store, steer) == ["a", "a2", "c", "b2", "b"]


def test_chunk_examples_and_best_score(store: Store) -> None:
    by_text = {c.text: point_id(c) for c in LESSON1}
    steer = steer_of(store, Steering(positive_chunks=(by_text["a"],)), "best_score")
    # best_score: max(cos(q, x), cos(A, x)): A 1.0, A2 0.994, then B2 0.804, B 0.735, C 0.147.
    assert dense_order(store, steer) == ["a", "a2", "b2", "b", "c"]


def test_discovery_keeps_the_positive_side_first(store: Store) -> None:
    steering = Steering(positive_sources=("lesson1.md",), negative_sources=("lesson2.md",))
    steer = steer_of(store, steering, "discover")
    # Lesson-1 chunks are nearer the positive than the negative: they come first, by similarity to the query.
    assert dense_order(store, steer)[:2] == ["a2", "a"]


def test_bad_examples_are_input_errors(store: Store) -> None:
    with pytest.raises(InputError, match=r"not a chunk id: 'lesson1\.md'"):
        steer_of(store, Steering(positive_chunks=("lesson1.md",)))
    with pytest.raises(InputError, match="is not in course c"):
        steer_of(store, Steering(positive_chunks=(str(uuid.uuid4()),)))
    with pytest.raises(InputError, match="is not in course c"):  # a chunk of course d
        steer_of(store, Steering(positive_chunks=(point_id(ELSEWHERE[0]),)))
    with pytest.raises(InputError, match=r"source 'lesson9\.md' is not in course c"):
        steer_of(store, Steering(negative_sources=("lesson9.md",)))
    with pytest.raises(InputError, match="needs positive and negative examples"):
        steer_of(store, Steering(positive_sources=("lesson1.md",)), "discover")
    with pytest.raises(InputError, match="at most 64 chunk ids"):
        steer_of(store, Steering(positive_chunks=(str(uuid.uuid4()),) * 65))


def test_source_centroid_and_the_cli_form(store: Store) -> None:
    steer = steer_of(store, Steering(positive_sources=("lesson1.md",)))
    assert steer is not None
    (direction,) = steer.positives
    expected = (A + A2) / np.linalg.norm(A + A2)
    np.testing.assert_allclose(direction, expected, atol=1e-6)
    cid = point_id(LESSON1[0])
    assert from_examples([cid, "lesson1.md"], ["other.md"]) == Steering(
        positive_chunks=(cid,), positive_sources=("lesson1.md",), negative_sources=("other.md",)
    )
