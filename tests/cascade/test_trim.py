"""Trimming keeps the sentences that hold the query's terms, within the budget, with exact offsets."""

from __future__ import annotations

from collections.abc import Set

import pytest

from leanrank.cascade.trim import best_window
from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder


def words(text: str) -> int:
    return len(text.split())


def stems(text: str) -> Set[int]:
    """Lower-cased words as term ids: hand-checkable."""
    return {hash(w.strip(".,?!").lower()) for w in text.split()}


TEXT = (
    "Python was created by Guido van Rossum. "
    "It was first released in 1991. "
    "The language emphasises readability. "
    "Its name comes from Monty Python."
)


def test_text_within_budget_is_sent_whole() -> None:
    window = best_window(TEXT, stems("who created python"), 100, words, stems)
    assert (window.start, window.end, window.text) == (0, len(TEXT), TEXT)
    assert window.tokens == words(TEXT)


def test_picks_the_sentence_with_the_query_terms() -> None:
    window = best_window(TEXT, stems("when was it released"), 7, words, stems)
    assert window.text == "It was first released in 1991."
    assert TEXT[window.start : window.end] == window.text
    assert window.hits == 3  # "it", "was", "released"; "when" is not in the text
    assert window.tokens == 6


def test_extends_over_neighbours_when_they_add_terms() -> None:
    window = best_window(TEXT, stems("name monty readability"), 10, words, stems)
    assert window.text == "The language emphasises readability. Its name comes from Monty Python."
    assert window.hits == 3


def test_the_rest_of_the_budget_is_filled_with_neighbours() -> None:
    # Sentences of 7, 6, 4 and 6 words; the terms sit in the last two (10 words). With 16 words to
    # spend, the run widens backwards over "It was first released in 1991." (the first does not fit).
    window = best_window(TEXT, stems("name monty readability"), 16, words, stems)
    assert window.text.startswith("It was first released")
    assert window.text.endswith("Monty Python.")
    assert (window.tokens, window.hits) == (16, 3)


def test_ties_go_to_the_longer_then_the_earlier_window() -> None:
    window = best_window(TEXT, stems("nothing matches"), 8, words, stems)
    assert window.text == "Python was created by Guido van Rossum."  # 7 words, the longest that fits
    assert best_window(TEXT, stems("it was"), 8, words, stems).text == "It was first released in 1991."
    assert best_window(TEXT, stems("its"), 8, words, stems).text == "Its name comes from Monty Python."


def test_an_overlong_sentence_is_cut_into_word_windows() -> None:
    text = "alpha beta gamma delta epsilon zeta eta theta"
    window = best_window(text, stems("zeta"), 3, words, stems)
    # Cut greedily into [alpha beta gamma] [delta epsilon zeta] [eta theta]; the middle holds "zeta".
    assert window.text == "delta epsilon zeta"
    assert text[window.start : window.end] == window.text


@pytest.fixture(scope="module")
def real() -> tuple[E5SmallEncoder, Bm25Encoder]:
    return E5SmallEncoder(), Bm25Encoder()


def test_real_tokenizer_and_stemmer_on_russian(real: tuple[E5SmallEncoder, Bm25Encoder]) -> None:
    e5, bm25 = real
    text = (
        "Курс начинается с основ синтаксиса. "
        "Циклы while повторяют тело, пока условие истинно. "
        "Домашние задания сдаются в пятницу до полуночи. "
        "На экзамене разрешено пользоваться конспектом."
    )

    def terms(t: str) -> Set[int]:
        return set(bm25.embed_query(t).indices)

    window = best_window(text, terms("Когда сдавать домашнее задание?"), 15, e5.token_count, terms)
    assert window.text == "Домашние задания сдаются в пятницу до полуночи."
    assert window.tokens == e5.token_count(window.text) <= 15


def test_with_a_known_total_only_the_window_is_counted_exactly() -> None:
    calls: list[str] = []

    def counted(text: str) -> int:
        calls.append(text)
        return words(text)

    # By characters the last two sentences look like 6 + 6 words (they are 4 + 6): they fit 12.
    window = best_window(TEXT, stems("name monty readability"), 12, counted, stems, total=words(TEXT))
    assert window.text == "The language emphasises readability. Its name comes from Monty Python."
    assert (window.tokens, window.hits) == (10, 3)
    assert calls == [window.text]  # sizes were estimated from the total; one exact count


def test_an_estimate_that_lets_an_overlong_window_through_is_shrunk() -> None:
    # A total far below the truth makes every sentence look small; the exact count catches it.
    window = best_window(TEXT, stems("name monty readability"), 5, words, stems, total=8)
    assert window.tokens <= 5
    assert TEXT[window.start : window.end] == window.text
    assert "Monty" in window.text
