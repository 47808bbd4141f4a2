"""Per-text language by script: Cyrillic letters mean Russian, Latin letters English.

Course material mixes the two (Russian lessons quote English terms), so a text is `mixed` only when the
minority script holds at least `MIXED_SHARE` of its letters; a few English terms keep a Russian text `ru`.
Script counting is exact, fast and needs no model — enough for a ru/en corpus.
"""

from __future__ import annotations

from leanrank.types import Lang

MIXED_SHARE = 0.3


def script_counts(text: str) -> tuple[int, int]:
    """(Cyrillic letters, Latin letters) in `text`."""
    cyr = lat = 0
    for ch in text:
        if "\u0400" <= ch <= "\u04ff":
            cyr += 1
        elif ch.isascii() and ch.isalpha():
            lat += 1
    return cyr, lat


def detect_lang(text: str, default: Lang = "en") -> Lang:
    """`ru`, `en` or `mixed`; `default` when the text has no letters of either script."""
    cyr, lat = script_counts(text)
    total = cyr + lat
    if total == 0:
        return default
    if min(cyr, lat) / total >= MIXED_SHARE:
        return "mixed"
    return "ru" if cyr > lat else "en"
