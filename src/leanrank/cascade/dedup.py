"""Near-duplicate candidates, collapsed before anyone pays to rerank them twice.

Course material repeats itself: the same paragraph in the lecture notes and the slides, a transcript and
its summary, chunks that overlap by a sentence, the Russian and the English version of one lesson. Exact
repeats are already dropped by the first stage (normalised hash); here two candidates are duplicates when
one is mostly contained in the other — the share of the smaller one's word 3-shingles found in the larger —
or, across languages, when their dense vectors are nearly parallel. The better-ranked one stays, except
that across languages the one in the query's language is preferred (configurable), since that is the one
the student can read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from leanrank.types import Lang

_WORD = re.compile(r"\w+")
Shingles = frozenset[tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class DedupConfig:
    """`containment`: share of the smaller text's shingles found in the other; `cross_lingual`: cosine.
    None turns either test off."""

    containment: float | None = 0.8
    cross_lingual: float | None = 0.92
    prefer_query_lang: bool = True


def shingles(text: str, n: int = 3) -> Shingles:
    """Word n-grams of the case-folded text; a text shorter than n words is one shingle."""
    words = [w.casefold() for w in _WORD.findall(text)]
    if len(words) <= n:
        return frozenset([tuple(words)]) if words else frozenset()
    return frozenset(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def containment(a: Shingles, b: Shingles) -> float:
    """|A ∩ B| / min(|A|, |B|): 1.0 when the smaller text is wholly inside the larger."""
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


def collapse(
    texts: Sequence[str],
    langs: Sequence[Lang],
    config: DedupConfig,
    *,
    query_lang: Lang | None = None,
    vectors: np.ndarray | None = None,
) -> list[int]:
    """Indices (into the ranked `texts`) to keep, in rank order; each dropped one duplicates a kept one.

    `vectors` (one L2-normalised dense row per text) enable cross-lingual duplicates; without them only
    same-text overlap is detected.
    """
    return collapse_groups(texts, langs, config, query_lang=query_lang, vectors=vectors)[0]


def collapse_groups(
    texts: Sequence[str],
    langs: Sequence[Lang],
    config: DedupConfig,
    *,
    query_lang: Lang | None = None,
    vectors: np.ndarray | None = None,
    shingles_of: Callable[[str], Shingles] = shingles,
) -> tuple[list[int], list[int]]:
    """`collapse`'s kept indices, and for each of the `texts` the index of the kept one standing for it
    (its own when kept): a gateway answers a dropped duplicate with its representative's score.
    `shingles_of` may remember texts seen before (the gateway's `DocumentMemo`)."""
    grams = [shingles_of(t) for t in texts]
    kept: list[int] = []
    stands_for = list(range(len(texts)))
    for i in range(len(texts)):
        twin = next((k for k in kept if _same(i, k, grams, langs, vectors, config)), None)
        if twin is None:
            kept.append(i)
            continue
        stands_for[i] = twin
        if (
            config.prefer_query_lang
            and query_lang in ("ru", "en")
            and langs[i] == query_lang
            and langs[twin] != query_lang
        ):
            kept[kept.index(twin)] = i  # the student's language takes the better one's place
            stands_for = [i if s == twin else s for s in stands_for]
    return kept, stands_for


def _same(
    i: int,
    k: int,
    grams: Sequence[Shingles],
    langs: Sequence[Lang],
    vectors: np.ndarray | None,
    config: DedupConfig,
) -> bool:
    if config.containment is not None and containment(grams[i], grams[k]) >= config.containment:
        return True
    if vectors is None or config.cross_lingual is None or langs[i] == langs[k]:
        return False
    return float(vectors[i] @ vectors[k]) >= config.cross_lingual
