"""Which per-language dense list weighs what: the other language's list is where buried answers are."""

from __future__ import annotations

import pytest

from leanrank.retrieve.hybrid import _leg_weights


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("кто придумал градиентный бустинг", (0.1, 0.5)),
        ("who invented gradient boosting", (0.5, 0.1)),
        ("градиентный бустинг gradient boosting", (0.1, 0.1)),  # mixed: both are its own
        ("x == 1", (0.5, 0.1)),  # no Cyrillic: English
    ],
)
def test_the_other_languages_list_gets_the_cross_weight(query: str, expected: tuple[float, float]) -> None:
    assert _leg_weights(query, ("ru", "en"), 0.1, 0.5) == expected


def test_only_the_legs_asked_for_are_weighted() -> None:
    assert _leg_weights("бустинг", ("en",), 0.1, 0.5) == (0.5,)
    assert _leg_weights("бустинг", (), 0.1, 0.5) == ()
