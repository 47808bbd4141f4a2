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
    window = best_window(TEXT, stems("name monty readability"), 20, words, stems)
    assert window.text == "The language emphasises readability. Its name comes from Monty Python."
    assert window.hits == 3


def test_ties_go_to_the_shorter_then_the_earlier_window() -> None:
    window = best_window(TEXT, stems("nothing matches"), 8, words, stems)
    assert window.text == "The language emphasises readability."  # 4 words, the shortest sentence
    assert best_window(TEXT, stems("was"), 8, words, stems).text == "It was first released in 1991."


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
