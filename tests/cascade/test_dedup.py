"""Near-duplicates collapse to one candidate: the better-ranked, or the one in the query's language."""

from __future__ import annotations

import numpy as np

from leanrank.cascade.dedup import DedupConfig, collapse, containment, shingles

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
