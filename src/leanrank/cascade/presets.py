"""Named cascade configurations (`[cascade] preset = "..."`); explicit settings override their values.

Every value was chosen on the tune half of the XQuAD ru+en + NTREX benchmark (`bench/cascade.py`) and is
reported on the test half; the README explains each knob's default.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "off": {},
    # Fewest tokens: a tighter adaptive cut and 128-token windows (answers are lost in ~4% of windows).
    "cheap": {"adaptive": True, "keep_ratio": 0.7, "min_depth": 2, "near_dup": 0.8, "trim_tokens": 128},
    # The default: the loosest cut that keeps candidate recall within 1% of dense top-100 at under 10% of its
    # tokens with a margin on the tune half (0.994 recall, 8.3% of the tokens; 0.6 gave 0.992 at 6.7%).
    "balanced": {"adaptive": True, "keep_ratio": 0.55, "min_depth": 3, "near_dup": 0.8},
    # Most recall: a looser cut (tune half: 0.997 recall at 19% of the tokens).
    "best": {"adaptive": True, "keep_ratio": 0.4, "min_depth": 5, "near_dup": 0.8},
}
