"""Checks of what callers hand in, shared by the library, the CLI and the service: one rule and one message
each, so `Pipeline.search` refuses what `leanrank search` and `POST /v1/search` refuse, with `InputError`
rather than whatever a model or the engine would raise later.

Text must be encodable as UTF-8. A Python string may hold a lone UTF-16 surrogate (a JSON `"\\ud800"` escape,
a command-line byte that is not UTF-8), which no encoder, store, reranker or writer takes.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from numbers import Real
from typing import Any, SupportsIndex, get_args

from leanrank.errors import InputError
from leanrank.types import Lang

LANGS: tuple[Lang, ...] = get_args(Lang)
"""The languages a search filters on (and a hit's `lang` is): `mixed` keeps chunks containing both."""
MAX_HITS = 1000
"""Most hits one search returns (`k`), as `rerank.top_k` may be set."""
MAX_DEPTH = 1000
"""Most candidates one search retrieves (`depth`), as `retrieve.depth` may be set."""
MAX_HEADING_SEGMENTS = 16
"""Most segments of a `heading_prefix` (outermost heading first)."""


def non_text(value: Any, top: str = "the value") -> str | None:
    """Why `value` (a string, or a decoded JSON value: every string and key in it) is not text, naming the
    dotted path of the first string that is not (`top` for `value` itself); None when all of it is text."""
    found = _first_non_text(value)
    if found is None:
        return None
    keys, text, at = found
    path = ""
    for key in reversed(keys):
        name = str(key).encode("utf-8", "replace").decode("utf-8")
        path = f"{path}.{name}" if path else name
    return (
        f"{path or top} holds a lone UTF-16 surrogate (U+{ord(text[at]):04X} at character {at}), "
        "which is not text"
    )


def check_text(text: str, what: str) -> str:
    """`text` when it is text (encodable as UTF-8); else `InputError` naming it as `what`."""
    why = non_text(text, what)
    if why is not None:
        raise InputError(why)
    return text


def check_texts(texts: Iterable[str], what: str) -> None:
    """`check_text` on each of `texts`, the i-th named `what i`: the name is built only for one that fails
    (the guard checks every document of every rerank call)."""
    for i, text in enumerate(texts):
        if _surrogate_at(text) is not None:
            check_text(text, f"{what} {i}")


def check_count(value: object, name: str, limit: int) -> int:
    """`value` as a whole number from 1 to `limit`; `InputError` for anything else, a bool or a float too
    (Python would slice with a negative one, and `True` is 1)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, SupportsIndex)
        or not 1 <= operator.index(value) <= limit
    ):
        raise InputError(f"{name} must be a whole number from 1 to {limit}, not {value!r}")
    return operator.index(value)


def check_fraction(value: object, name: str) -> float:
    """`value` as a float from 0 to 1 (a probability); `InputError` for NaN, a bool or anything else."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= float(value) <= 1.0:
        raise InputError(f"{name} must be a number from 0 to 1, not {value!r}")
    return float(value)


def check_strings(values: Iterable[str], name: str, limit: int) -> tuple[str, ...]:
    """At most `limit` strings of text; a bare string is refused, not read as its letters."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InputError(f"{name} must be a list of strings, not {values!r}")
    items = tuple(values)
    if len(items) > limit:
        raise InputError(f"{name} has {len(items)} items, the limit is {limit}")
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InputError(f"{name}[{i}] must be a string, not {item!r}")
        check_text(item, f"{name}[{i}]")
    return items


def check_langs(values: Iterable[str]) -> tuple[Lang, ...]:
    """The languages of a search's filter, each one of `LANGS` (a bare string is refused)."""
    langs = check_strings(values, "langs", len(LANGS))
    for code in langs:
        if code not in LANGS:
            raise InputError(f"unknown language {code!r}; use {', '.join(LANGS[:-1])} or {LANGS[-1]}")
    return langs  # type: ignore[return-value]  # each checked just above


def _first_non_text(value: Any) -> tuple[list[Any], str, int] | None:
    """(keys and indices leading to it, innermost first; string; index of its first lone surrogate) of the
    first string or key in `value` that is not text, else None. The path is built only for that one: every
    rerank body is checked, and almost all are text."""
    if isinstance(value, str):
        at = _surrogate_at(value)
        return None if at is None else ([], value, at)
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _first_non_text(key) if isinstance(key, str) else None
        if found is None:
            found = _first_non_text(item)
        if found is not None:
            found[0].append(key)
            return found
    return None


def _surrogate_at(text: str) -> int | None:
    if text.isascii():  # a flag of the string: the usual case costs no pass over it
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None
