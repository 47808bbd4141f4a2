"""Per-text language by script: Cyrillic letters mean Russian, Latin letters English.

Course material mixes the two (Russian lessons quote English terms), so a text is `mixed` only when the
minority script holds at least `MIXED_SHARE` of its letters; a few English terms keep a Russian text `ru`.
Script counting is exact, fast and needs no model — enough for a ru/en corpus.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from leanrank.types import Lang

MIXED_SHARE = 0.3
# Letters of a script a text must hold to count as containing that language: two or three words, so one
# quoted term (a Russian lesson naming `pandas`) does not make a chunk English.
CONTAINS_LETTERS = 12
_CYRILLIC = re.compile("[\u0400-\u04ff]")
_LATIN = re.compile("[A-Za-z]")


def script_counts(text: str) -> tuple[int, int]:
    """(Cyrillic letters, Latin letters) in `text`; counted by the regex engine, not a Python loop (the
    gateway detects the language of every document a client sends)."""
    return len(_CYRILLIC.findall(text)), len(_LATIN.findall(text))


def detect_lang(text: str, default: Lang = "en") -> Lang:
    """`ru`, `en` or `mixed`; `default` when the text has no letters of either script."""
    cyr, lat = script_counts(text)
    total = cyr + lat
    if total == 0:
        return default
    if min(cyr, lat) / total >= MIXED_SHARE:
        return "mixed"
    return "ru" if cyr > lat else "en"


def contained_langs(text: str, also: tuple[Lang, ...] = ()) -> tuple[Lang, ...]:
    """`ru` and/or `en`, each when `text` holds at least `CONTAINS_LETTERS` letters of its script, plus the
    plain languages in `also` (a code-only chunk is given its file's language, so a language filter keeps a
    Russian lesson's code). The language filter of a search matches any of them."""
    cyr, lat = script_counts(text)
    found = {plain for lang in also for plain in _plain(lang)}
    if cyr >= CONTAINS_LETTERS:
        found.add("ru")
    if lat >= CONTAINS_LETTERS:
        found.add("en")
    if not found:
        found.update(_plain(detect_lang(text)))
    return tuple(lang for lang in PLAIN_LANGS if lang in found)


PLAIN_LANGS: tuple[Lang, ...] = ("ru", "en")


def lang_filter(asked: Collection[Lang]) -> tuple[tuple[Lang, ...], ...]:
    """A search's language filter (`leanrank.checks.LANGS`) as the groups a chunk's `langs` must each share
    a language with: `ru` or `en` keeps chunks containing it, `mixed` those containing both, several keep
    what any of them keeps (a chunk containing both contains either: `mixed` beside `ru` adds nothing)."""
    plain = tuple(lang for lang in PLAIN_LANGS if lang in asked)
    if plain:
        return (plain,)
    return tuple((lang,) for lang in PLAIN_LANGS) if "mixed" in asked else ()


def _plain(lang: Lang) -> tuple[Lang, ...]:
    return PLAIN_LANGS if lang == "mixed" else (lang,)
