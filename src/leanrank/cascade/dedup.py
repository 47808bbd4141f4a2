"""Near-duplicate candidates, collapsed before anyone pays to rerank them twice.

Course material repeats itself: the same paragraph in the lecture notes and the slides, a transcript and
its summary, chunks that overlap by a sentence, the Russian and the English version of one lesson. Exact
repeats are already dropped by the first stage (normalised hash); here two candidates are duplicates when
one is mostly contained in the other — the share of the smaller one's word 3-shingles found in the larger —
or, across languages, when their dense vectors are nearly parallel. Near-duplicates may differ in words, never
in code or numbers: `x = a + b` and `x = a - b`, or `===` and `==` in one sentence, are different passages, so
two texts are duplicates only when their code (`leanrank.encode.bm25.code_tokens`) is the same — operators and
operands alike in one language, the operators across languages (the operands next to them may be prose
words, which a translation changes); "10 seconds (version 2)" and "30 seconds (version 3)" state different
facts, so their numbers (runs of digits: a version, a date, a decimal in any notation) must be the same too —
in order in one language, in any order across languages. The better-ranked one stays, except
that across languages the one in the query's language is preferred (configurable), since that is the one
the student can read.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from leanrank.encode.bm25 import code_tokens
from leanrank.types import Lang

_WORD = re.compile(r"\w+")
_OPERAND = re.compile(r"\w")
_DIGITS = re.compile(r"\d+")
Shingles = frozenset[tuple[str, ...]]
_SERIALS = itertools.count()


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


class Fingerprint:
    """What duplicate detection compares of one text: its word 3-shingles, its code (`code_tokens`), that
    code's operators and its numbers. The code and numbers are read on first use, when shingles or vectors
    already say duplicate: reading the code costs ~3× the shingles, and most texts are no one's duplicate.
    `serial` is this fingerprint's own number in the process, what `remembered_overlap` knows a pair by."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.shingles = shingles(text)
        self.serial = next(_SERIALS)

    @cached_property
    def code(self) -> tuple[str, ...]:
        return code_tokens(self.text)

    @cached_property
    def operators(self) -> tuple[str, ...]:
        return tuple(t for t in self.code if not _OPERAND.match(t))

    @cached_property
    def numbers(self) -> tuple[str, ...]:
        """Its runs of digits in order, whatever separates them: `3.11` and the Russian `3,11` are both
        ("3", "11"), `2024-05-01` is ("2024", "05", "01")."""
        return tuple(_DIGITS.findall(self.text))


def containment(a: Shingles, b: Shingles) -> float:
    """|A ∩ B| / min(|A|, |B|): 1.0 when the smaller text is wholly inside the larger."""
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


Overlap = Callable[[Fingerprint, Fingerprint], float]
"""The `containment` of two fingerprints' shingles, computed or remembered (`remembered_overlap`)."""


def overlap(a: Fingerprint, b: Fingerprint) -> float:
    """`containment` of the two texts' shingles, computed afresh."""
    return containment(a.shingles, b.shingles)


def remembered_overlap(size: int) -> Overlap:
    """`overlap`, remembering up to `size` fingerprint pairs by their `serial`s.

    A gateway's clients send the same chunks together again and again (one course's chunks for related
    questions), and comparing two paragraphs' shingle sets costs ~1–3 µs: the collapse of 100 remembered
    documents compares ~300 pairs, a remembered pair costs ~0.15 µs. The pair is unordered (containment is
    symmetric), and a fingerprint made again for the same text has a new serial, so nothing remembered is
    ever stale. When full it starts over: keeping the least recently used instead costs about as much per
    look-up as comparing the sets. Thread-safe (one dictionary operation at a time); `size` 0 remembers
    nothing.
    """
    known: dict[tuple[int, int], float] = {}

    def overlap_of(a: Fingerprint, b: Fingerprint) -> float:
        x, y = a.serial, b.serial
        key = (x, y) if x < y else (y, x)
        found = known.get(key)
        if found is None:
            found = containment(a.shingles, b.shingles)
            if size > 0:
                if len(known) >= size:
                    known.clear()
                known[key] = found
        return found

    return overlap_of


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
    fingerprint_of: Callable[[str], Fingerprint] = Fingerprint,
    overlap_of: Overlap = overlap,
    depth: int | None = None,
    min_kept: int = 0,
) -> tuple[list[int], list[int]]:
    """`collapse`'s kept indices, and for each of the `texts` read the index of the kept one standing for
    it (its own when kept): a gateway answers a dropped duplicate with its representative's score.
    `fingerprint_of` may remember texts seen before, `overlap_of` pairs compared before (the gateway's
    `DocumentMemo`).

    With `depth` only the first `depth` texts are read, then the next ones, one at a time, while fewer than
    `min_kept` are kept (a cut refilled past what collapsed); `len(stands_for)` says how many were read.
    """
    grams: list[Fingerprint] = []
    kept: list[int] = []
    stands_for: list[int] = []
    for i, text in enumerate(texts):
        if depth is not None and i >= depth and len(kept) >= min_kept:
            break
        grams.append(fingerprint_of(text))
        stands_for.append(i)
        twin = None
        for k in kept:
            if _same(i, k, grams, langs, vectors, config, overlap_of):
                twin = k
                break
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
    grams: Sequence[Fingerprint],
    langs: Sequence[Lang],
    vectors: np.ndarray | None,
    config: DedupConfig,
    overlap_of: Overlap,
) -> bool:
    a, b = grams[i], grams[k]
    if (
        config.containment is not None
        and overlap_of(a, b) >= config.containment
        and a.code == b.code
        and a.numbers == b.numbers
    ):
        return True
    if vectors is None or config.cross_lingual is None or langs[i] == langs[k]:
        return False
    return (
        float(vectors[i] @ vectors[k]) >= config.cross_lingual
        and a.operators == b.operators
        and sorted(a.numbers) == sorted(b.numbers)  # a translation may reorder them (dates)
    )
