"""Named cascade configurations (`[cascade] preset = "..."`, `balanced` when none is named); explicit settings
override their values.

Every value was chosen on the tune halves of the real-course benchmark (`bench/course.py`) and of the XQuAD
ru+en + NTREX benchmark (`bench/cascade.py`) together, with the fusion defaults of `RetrieveSettings`, and
is reported on the test halves; the README explains each knob's default.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "off": {},
    # Fewest tokens: a tighter adaptive cut and 128-token windows (answers are lost in ~4% of windows).
    "cheap": {"adaptive": True, "keep_ratio": 0.5, "min_depth": 2, "near_dup": 0.8, "trim_tokens": 128},
    # The default: the tightest cut keeping candidate recall level with dense top-100 on both tune halves'
    # first-stage lists, replayed (`keep_ratio` 0.35 and `min_depth` 3 to 10 compared): the course's tune
    # half reaches it at min_depth 8 (11.0% of naive's tokens), XQuAD's stays at 0.998 of it (9.2%); a
    # floor of 8 keeps the answers the course ranks 5th to 8th behind a confident-looking top, which a
    # floor of 3 cut. 10 breaks XQuAD's 10% frontier; 0.5 halves the tokens and loses 14% of the course's.
    "balanced": {"adaptive": True, "keep_ratio": 0.35, "min_depth": 8, "near_dup": 0.8},
    # Most recall: a looser cut (tune halves: +3% candidate recall on the course at 16% of the tokens).
    "best": {"adaptive": True, "keep_ratio": 0.25, "min_depth": 8, "near_dup": 0.8},
}

GATEWAY_PRESETS: dict[str, dict[str, Any]] = {
    # Pass-through: every document the client sends is forwarded as sent.
    "off": {"enabled": False},
    # Chosen on the tune halves of the real course and of XQuAD (`bench/gateway.py --savings course|xquad
    # --split tune --tune`: a client's dense top-100, the client's order fused with BM25 over the request at
    # k = 7): keep_ratio is the cut's lever, min_depth barely matters above 5, and keeping the client's first
    # document in the query's other language costs ~0.3 points of tokens and saves the cross-lingual answers
    # the cut loses (course tune half, 64 answerable questions; XQuAD's in brackets):
    # 0.5 keeps 95.3% of the answers at 10.6% of the tokens;
    "cheap": {"enabled": True, "keep_ratio": 0.5, "min_depth": 10, "near_dup": 0.8, "cross_lang_keep": 1},
    # 0.3 keeps all of them at 18.7% (99.9% at 14.2%); without the other-language document, 98.4% at 18.4%;
    "balanced": {"enabled": True, "keep_ratio": 0.3, "min_depth": 10, "near_dup": 0.8, "cross_lang_keep": 1},
    # 0.2 keeps all of them at 32.0%.
    "best": {"enabled": True, "keep_ratio": 0.2, "min_depth": 10, "near_dup": 0.8, "cross_lang_keep": 1},
}
"""`[gateway.cascade] preset = "..."`: the cascade for client-sent documents (`ClientCascadeSettings`)."""
