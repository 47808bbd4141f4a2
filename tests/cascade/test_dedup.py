"""Near-duplicates collapse to one candidate: the better-ranked, or the one in the query's language; texts
whose code differs are never near-duplicates."""

from __future__ import annotations

import random
from functools import lru_cache

import numpy as np
import pytest

from leanrank.cascade.dedup import (
    DedupConfig,
    Fingerprint,
    collapse,
    collapse_groups,
    containment,
    overlap,
    remembered_overlap,
    shingles,
)
from leanrank.encode.bm25 import code_tokens
from leanrank.types import Lang

A = "Цикл while повторяет тело, пока условие истинно, и проверяет условие перед каждой итерацией."
A_OVERLAP = A + " После цикла выполнение продолжается со следующей строки."
B = "Функция open возвращает файловый объект; режим r открывает файл для чтения."
EN = "A while loop repeats its body while the condition is true, checking it before every iteration."


def test_shingles_and_containment_by_hand() -> None:
    a, b = shingles("one two three four"), shingles("two three four five six")
    assert a == {("one", "two", "three"), ("two", "three", "four")}
    assert containment(a, b) == 1 / 2  # ("two","three","four") of a's 2 shingles
    assert shingles("Hi there") == {("hi", "there")}
    assert shingles("...") == frozenset()


def test_overlapping_chunks_collapse_to_the_better_ranked() -> None:
    assert collapse([A_OVERLAP, B, A], ["ru", "ru", "ru"], DedupConfig()) == [0, 1]


def test_distinct_texts_all_stay() -> None:
    assert collapse([A, B, EN], ["ru", "ru", "en"], DedupConfig()) == [0, 1, 2]


def test_translations_collapse_with_vectors_preferring_the_query_language() -> None:
    vectors = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.96, 0.0, 0.28]], dtype=np.float32)
    texts, langs = [EN, B, A], ["en", "ru", "ru"]
    config = DedupConfig(cross_lingual=0.9)
    # EN·A = 0.96 ≥ 0.9: translations. A Russian question keeps the Russian one in EN's place.
    assert collapse(texts, langs, config, query_lang="ru", vectors=vectors) == [2, 1]
    assert collapse(texts, langs, config, query_lang="en", vectors=vectors) == [0, 1]
    keep_rank = DedupConfig(cross_lingual=0.9, prefer_query_lang=False)
    assert collapse(texts, langs, keep_rank, query_lang="ru", vectors=vectors) == [0, 1]
    assert collapse(texts, langs, DedupConfig(cross_lingual=0.97), query_lang="ru", vectors=vectors) == [
        0,
        1,
        2,
    ]


def test_same_language_pairs_are_not_judged_by_vectors() -> None:
    vectors = np.array([[1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    assert collapse([A, B], ["ru", "ru"], DedupConfig(), vectors=vectors) == [0, 1]


def test_code_tokens_are_the_operators_with_the_operands_they_join() -> None:
    assert code_tokens("x = a + b") == ("x", "=", "a", "+", "b")
    assert code_tokens("In JavaScript use === to compare values.") == ("use", "===", "to")
    assert code_tokens("set n_estimators=100, then x->y") == ("n_estimators", "=", "100", "x", "->", "y")
    # Prose: hyphens and slashes inside words, list dashes, a number, a Russian dash are no code.
    assert code_tokens("A well-known e-mail and/or\n- a list item, Example 12.") == ()
    assert code_tokens("Python - это язык, i-1") == ("i", "-", "1")


def test_texts_whose_code_differs_are_not_near_duplicates() -> None:
    strict = "In JavaScript use === to compare values without type coercion."
    loose = strict.replace("===", "==")
    assert collapse([strict, loose], ["en", "en"], DedupConfig()) == [0, 1]
    assert collapse(["x = a + b", "x = a - b", "x = a + b "], ["en"] * 3, DedupConfig()) == [0, 1]
    # One number inside code in a long paragraph: 95% of the shingles are shared, the code is not.
    long = A + " " + EN + " Set n_estimators=100 before fitting the forest on the training data."
    assert containment(shingles(long), shingles(long.replace("100", "200"))) > 0.9
    assert collapse([long, long.replace("100", "200")], ["en", "en"], DedupConfig()) == [0, 1]
    assert Fingerprint(long).code == ("n_estimators", "=", "100")


def test_translations_with_different_operators_are_not_duplicates() -> None:
    vectors = np.array([[1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    en = "Use a == b to compare two values."
    same_code = "Сравните два значения: a == b."
    other_code = "Сравните два значения: a === b."
    config = DedupConfig(cross_lingual=0.9)
    # Across languages only the operators are compared: the words around them are translated.
    assert collapse([en, same_code], ["en", "ru"], config, vectors=vectors) == [0]
    assert collapse([en, other_code], ["en", "ru"], config, vectors=vectors) == [0, 1]


TIMEOUT = (
    "The default request timeout of the HTTP client in the course library is {n} seconds, and it can be "
    "changed per call with the timeout argument; retries use exponential backoff with jitter and honour "
    "the Retry-After header when the server sends one, up to four attempts in all. (version {v})"
)


def test_texts_whose_numbers_differ_are_not_near_duplicates() -> None:
    old, new = TIMEOUT.format(n=10, v=2), TIMEOUT.format(n=30, v=3)
    # 45 of the 49 shingles are shared (the four holding a number differ): words alone say duplicate.
    assert containment(shingles(old), shingles(new)) == 45 / 49
    assert (Fingerprint(old).numbers, Fingerprint(new).numbers) == (("10", "2"), ("30", "3"))
    assert collapse([old, new], ["en", "en"], DedupConfig()) == [0, 1]
    assert collapse([new, old], ["en", "en"], DedupConfig()) == [0, 1]
    python = "Install Python {} from the official site, then create a virtual environment for the course."
    assert collapse([python.format("3.11"), python.format("3.12")], ["en"] * 2, DedupConfig()) == [0, 1]
    assert collapse([python.format("3.11"), python.format("3.1.1")], ["en"] * 2, DedupConfig()) == [0, 1]
    dated = "The exam of the course takes place on {} in the main hall, bring a pen and your student card."
    assert collapse([dated.format("2026-05-01"), dated.format("2026-01-05")], ["en"] * 2, DedupConfig()) == [
        0,
        1,
    ]


def test_the_same_numbers_in_other_words_still_collapse() -> None:
    old = TIMEOUT.format(n=10, v=2)
    reworded = old.replace("changed per call", "overridden for one call")
    assert containment(shingles(old), shingles(reworded)) == 45 / 49
    assert collapse([old, reworded, A], ["en", "en", "ru"], DedupConfig()) == [0, 2]
    python = "Install Python {} from the official site, then create a virtual environment for the course."
    assert collapse(
        [python.format("3.11"), python.format("3.11") + " Use it."], ["en"] * 2, DedupConfig()
    ) == [0]


def test_translations_need_the_same_numbers_in_any_order() -> None:
    vectors = np.array([[1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    config = DedupConfig(cross_lingual=0.9)
    en = "Python 3.11 was released in October 2022, on the 24th."
    ru = "Python {} вышел 24 октября 2022 года."
    assert collapse([en, ru.format("3,11")], ["en", "ru"], config, vectors=vectors) == [0]
    assert collapse([en, ru.format("3,12")], ["en", "ru"], config, vectors=vectors) == [0, 1]


def test_a_remembered_overlap_is_the_computed_one_in_either_order_and_is_not_computed_again() -> None:
    texts = [A, A_OVERLAP, B, EN, "Hi there", "..."]
    prints = [Fingerprint(t) for t in texts]
    remembered = remembered_overlap(100)
    for a in prints:
        for b in prints:
            expected = containment(shingles(a.text), shingles(b.text))
            assert remembered(a, b) == remembered(b, a) == overlap(a, b) == expected
    assert remembered(prints[1], prints[0]) == 1.0  # A is wholly inside A_OVERLAP
    prints[0].shingles = frozenset()  # were it computed again, it would now be 0
    assert overlap(prints[0], prints[1]) == 0.0
    assert remembered(prints[0], prints[1]) == 1.0
    assert remembered(Fingerprint(A), prints[1]) == 1.0  # the same text again is a new fingerprint: computed
    assert Fingerprint(A).serial != Fingerprint(A).serial


def test_a_full_overlap_memo_starts_over_and_size_0_remembers_nothing() -> None:
    a, a_overlap, b = Fingerprint(A), Fingerprint(A_OVERLAP), Fingerprint(B)
    one = remembered_overlap(1)
    assert one(a, a_overlap) == 1.0
    a.shingles = frozenset()
    assert one(a_overlap, a) == 1.0  # remembered
    one(b, a_overlap)  # a second pair: the memo starts over with it
    assert one(a, a_overlap) == 0.0
    c, c_overlap = Fingerprint(A), Fingerprint(A_OVERLAP)
    nothing = remembered_overlap(0)
    assert nothing(c, c_overlap) == 1.0
    c.shingles = frozenset()
    assert nothing(c, c_overlap) == 0.0


def _collapse_by_hand(
    texts: list[str], langs: list[Lang], threshold: float, query_lang: Lang, depth: int, min_kept: int
) -> tuple[list[int], list[int]]:
    """The collapse as its docstrings state it, from scratch: read in rank order (the first `depth`, then
    while fewer than `min_kept` are kept), each a duplicate of the first kept one holding `threshold` of the
    smaller one's shingles and the same code and numbers; a duplicate in the query's language takes the
    place of a kept one in the other language, and stands for what it stood for."""
    kept: list[int] = []
    stands_for: list[int] = []
    for i, text in enumerate(texts):
        if i >= depth and len(kept) >= min_kept:
            break
        mine = shingles(text)
        twins = [
            k
            for k in kept
            if mine
            and shingles(texts[k])
            and len(mine & shingles(texts[k])) / min(len(mine), len(shingles(texts[k]))) >= threshold
            and code_tokens(text) == code_tokens(texts[k])
            and Fingerprint(text).numbers == Fingerprint(texts[k]).numbers
        ]
        if not twins:
            kept.append(i)
            stands_for.append(i)
        elif langs[i] == query_lang != langs[twins[0]]:
            kept[kept.index(twins[0])] = i
            stands_for = [i if s == twins[0] else s for s in stands_for] + [i]
        else:
            stands_for.append(twins[0])
    return kept, stands_for


@pytest.mark.parametrize("seed", range(4))
def test_collapse_with_remembered_fingerprints_and_overlaps_is_the_collapse_by_hand(seed: int) -> None:
    """A gateway's memo shared by many requests, the same texts in ever other orders: every answer is the
    one computed from scratch."""
    rng = random.Random(seed)
    words = ["цикл", "for", "list", "loop", "тело", "item", "value", "список", "range", "3", "x = a + b"]
    base = [" ".join(rng.choices(words, k=rng.randint(0, 10))) for _ in range(12)]
    longer = [t + " " + " ".join(rng.choices(words, k=rng.randint(1, 3))) for t in base]
    pool = [*base, *longer, *(" ".join(rng.sample(base, 2)) for _ in range(12))]  # one holding two others
    fingerprint_of = lru_cache(maxsize=64)(Fingerprint)
    overlap_of = remembered_overlap(rng.choice([8, 10_000]))
    for _ in range(150):
        texts = rng.sample(pool, rng.randint(1, 16))
        langs: list[Lang] = [rng.choice(["ru", "en"]) for _ in texts]
        threshold = rng.choice([0.3, 0.5, 0.8, 1.0])
        query_lang: Lang = rng.choice(["ru", "en"])
        depth, min_kept = rng.randint(1, 16), rng.randint(0, 16)
        assert collapse_groups(
            texts,
            langs,
            DedupConfig(containment=threshold, cross_lingual=None),
            query_lang=query_lang,
            fingerprint_of=fingerprint_of,
            overlap_of=overlap_of,
            depth=depth,
            min_kept=min_kept,
        ) == _collapse_by_hand(texts, langs, threshold, query_lang, depth, min_kept)
