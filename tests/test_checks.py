"""The shared argument checks (`leanrank.checks`) and the one rule of the language filter."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from leanrank.checks import (
    LANGS,
    check_count,
    check_fraction,
    check_langs,
    check_strings,
    check_text,
    check_texts,
    non_text,
)
from leanrank.errors import InputError
from leanrank.ingest.lang import lang_filter
from leanrank.types import Lang

SURROGATE = " holds a lone UTF-16 surrogate (U+D800 at character {}), which is not text"


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("plain", None),
        ("ёлка 🐼 \x00", None),  # any text, NUL and astral characters too
        ("ab\ud800", "the value" + SURROGATE.format(2)),
        ({"query": "q", "documents": ["a", {"text": "\ud800"}]}, "documents.1.text" + SURROGATE.format(0)),
        ({"k\ud800": 1}, "k?" + SURROGATE.format(1)),  # a key: named printably
        ({"a": [{"b": "ok"}, {"c": ["x", "y\ud800"]}]}, "a.1.c.1" + SURROGATE.format(1)),
        ({"a": [{"k\ud800": 1}]}, "a.0.k?" + SURROGATE.format(1)),
        ([1, None, True, 2.5], None),
    ],
)
def test_non_text_names_the_first_string_that_is_not(value: Any, found: str | None) -> None:
    assert non_text(value) == found


def test_check_text_and_check_texts_name_what_they_were_given() -> None:
    assert check_text("цикл", "the query") == "цикл"
    with pytest.raises(
        InputError, match=r"^the query holds a lone UTF-16 surrogate \(U\+DCFF at character 1\)"
    ):
        check_text("a\udcff", "the query")
    check_texts(["a", "б", ""], "document")
    with pytest.raises(InputError) as caught:
        check_texts(["a", "b", "\ud800"], "document")
    assert str(caught.value) == "document 2" + SURROGATE.format(0)


@pytest.mark.parametrize("value", [1, 1000, np.int64(7)])
def test_check_count_takes_whole_numbers_in_range(value: Any) -> None:
    assert check_count(value, "k", 1000) == int(value)
    assert type(check_count(value, "k", 1000)) is int


@pytest.mark.parametrize("value", [0, -1, 1001, 2.0, True, "3", None])
def test_check_count_refuses_the_rest(value: Any) -> None:
    with pytest.raises(InputError) as caught:
        check_count(value, "k", 1000)
    assert str(caught.value) == f"k must be a whole number from 1 to 1000, not {value!r}"


@pytest.mark.parametrize(("value", "expected"), [(0, 0.0), (1, 1.0), (0.25, 0.25), (np.float32(0.5), 0.5)])
def test_check_fraction_takes_numbers_from_0_to_1(value: Any, expected: float) -> None:
    assert check_fraction(value, "min_relevance") == expected


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.01, 1.01, False, "0.5"])
def test_check_fraction_refuses_the_rest(value: Any) -> None:
    with pytest.raises(InputError, match=r"^min_relevance must be a number from 0 to 1, not "):
        check_fraction(value, "min_relevance")


def test_check_strings_takes_a_sequence_and_refuses_a_bare_string() -> None:
    assert check_strings(["a", "b"], "heading_prefix", 2) == ("a", "b")
    assert check_strings(iter(("a",)), "heading_prefix", 2) == ("a",)
    for bad, message in [
        ("ab", "heading_prefix must be a list of strings, not 'ab'"),
        (b"ab", "heading_prefix must be a list of strings, not b'ab'"),
        (3, "heading_prefix must be a list of strings, not 3"),
        (["a", "b", "c"], "heading_prefix has 3 items, the limit is 2"),
        (["a", None], "heading_prefix[1] must be a string, not None"),
        (["\ud800"], "heading_prefix[0]" + SURROGATE.format(0)),
    ]:
        with pytest.raises(InputError) as caught:
            check_strings(bad, "heading_prefix", 2)
        assert str(caught.value) == message


def test_the_language_set_is_the_wire_and_domain_type() -> None:
    assert LANGS == ("ru", "en", "mixed")
    assert check_langs(["mixed", "ru"]) == ("mixed", "ru")
    with pytest.raises(InputError, match=r"^unknown language 'RU'; use ru, en or mixed$"):
        check_langs(["RU"])  # the CLI lower-cases what users type; the library takes the codes


@pytest.mark.parametrize(
    ("asked", "groups"),
    [
        ((), ()),
        (("ru",), (("ru",),)),
        (("en", "ru"), (("ru", "en"),)),
        (("mixed",), (("ru",), ("en",))),  # containing ru and containing en
        (("mixed", "en"), (("en",),)),  # a chunk containing both contains en
        (("ru", "en", "mixed"), (("ru", "en"),)),
    ],
)
def test_lang_filter_groups(asked: tuple[Lang, ...], groups: tuple[tuple[Lang, ...], ...]) -> None:
    """Each group is one condition on a chunk's `langs`, to share a language with it; all must hold."""
    assert lang_filter(asked) == groups
