"""Steering by the student's context: chunks or whole sources (lessons) to move toward or away from.

A student working through lesson 3 who asks "how do I stop the loop early?" means lesson 3's loop, not the
one in the appendix; a student who has already read a source and ruled it out wants something else. A
search may name such examples; they become one direction per side (the mean of the examples' unit dense
vectors, a source counting as the centroid of its chunks), and the dense lists then run the engine's
recommend query (query vector and positive direction against the negative one, `sum_scores` or
`best_score`) or its discovery query (target: the query; context: the positive/negative pair) instead of a
plain nearest search. BM25 is left as it is: the words the student typed still count.

Examples come from the same course only; an unknown chunk id or source is an `InputError` naming it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from leanrank.encode.base import Matrix
from leanrank.errors import InputError
from leanrank.index.base import Steer, SteerStrategy, Store

MAX_CHUNKS = 64
MAX_SOURCES = 16


@dataclass(frozen=True, slots=True)
class Steering:
    """The examples of one search: chunk ids (as search results give them) and source paths (lessons)."""

    positive_chunks: tuple[str, ...] = ()
    negative_chunks: tuple[str, ...] = ()
    positive_sources: tuple[str, ...] = ()
    negative_sources: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (
            self.positive_chunks or self.negative_chunks or self.positive_sources or self.negative_sources
        )

    def key(self) -> list[list[str]]:
        """A canonical form, for result-cache scopes."""
        return [
            sorted(self.positive_chunks),
            sorted(self.negative_chunks),
            sorted(self.positive_sources),
            sorted(self.negative_sources),
        ]


def from_examples(toward: Sequence[str] = (), away: Sequence[str] = ()) -> Steering:
    """A `Steering` from mixed examples, as the CLI takes them: a chunk id (a UUID) or else a source path."""
    return Steering(
        positive_chunks=tuple(e for e in toward if _is_uuid(e)),
        negative_chunks=tuple(e for e in away if _is_uuid(e)),
        positive_sources=tuple(e for e in toward if not _is_uuid(e)),
        negative_sources=tuple(e for e in away if not _is_uuid(e)),
    )


def resolve(store: Store, course: str, steering: Steering, strategy: SteerStrategy) -> Steer | None:
    """The `Steer` of `steering` in `course` (None when it names nothing); InputError for an unknown example,
    too many examples, or a discovery query without both sides."""
    if steering.empty:
        return None
    chunks = (*steering.positive_chunks, *steering.negative_chunks)
    sources = (*steering.positive_sources, *steering.negative_sources)
    if len(chunks) > MAX_CHUNKS or len(sources) > MAX_SOURCES:
        raise InputError(f"steering takes at most {MAX_CHUNKS} chunk ids and {MAX_SOURCES} sources")
    bad = [c for c in chunks if not _is_uuid(c)]
    if bad:
        raise InputError(f"not a chunk id: {bad[0]!r} (chunk ids are the `chunk_id` of search hits)")
    positives = _direction(store, course, steering.positive_chunks, steering.positive_sources)
    negatives = _direction(store, course, steering.negative_chunks, steering.negative_sources)
    if strategy == "discover" and not (positives and negatives):
        raise InputError(
            "discovery steering (retrieve.steer_strategy = discover) needs positive and negative examples"
        )
    return Steer(positives, negatives, strategy)


def _direction(
    store: Store, course: str, chunk_ids: tuple[str, ...], sources: tuple[str, ...]
) -> tuple[Matrix, ...]:
    """The side's one direction: the normalised mean of its examples (each source one example), or ()."""
    examples: list[Matrix] = []
    if chunk_ids:
        found = store.dense_vectors(course, chunk_ids=chunk_ids)
        missing = [c for c in chunk_ids if c not in found]
        if missing:
            raise InputError(f"chunk {missing[0]} is not in course {course}")
        examples.extend(_unit(found[c]) for c in chunk_ids)
    for source in sources:
        vectors = store.dense_vectors(course, source=source)
        if not vectors:
            raise InputError(f"source {source!r} is not in course {course}")
        examples.append(_unit(np.mean([_unit(v) for v in vectors.values()], axis=0)))
    if not examples:
        return ()
    return (_unit(np.mean(examples, axis=0)),)


def _unit(vector: Matrix) -> Matrix:
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm > 0 else vector).astype(np.float32)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
