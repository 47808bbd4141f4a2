"""What each provider counts as billed units, per docs/PROVIDERS.md: pure functions and one table.

Three rules cover every provider:

- search units (Cohere): one unit is one query with up to 100 documents, counted per request, so a
  request of n documents costs ceil(n / 100) units (101 documents = 2 units); a document longer than the
  context, query included, is split into chunks that each count as a document;
- pair tokens (every token-billed API, and Voyage's published formula
  `query_tokens × documents + Σ document_tokens`): the query is paid once per document, because the model
  reads it once per (query, document) pair;
- pair characters (infinity, unless run with `--lengths-via-tokenize`): the same, in characters.

Prices are elsewhere (dated data files); this module only counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Literal

from leanrank.rerank.base import BilledUnit

BillingRule = Literal["search_units", "pair_tokens", "pair_characters", "none"]

SEARCH_UNIT_DOCUMENTS = 100
"""Documents one Cohere search unit covers, with its one query."""

SEARCH_UNIT_CONTEXT_TOKENS = 4_096
"""Tokens of query and document one billed document holds (Cohere's Rerank 3 and later); a longer document
is split into chunks of what the query leaves, each billed as a document."""

PROVIDER_BILLING: Mapping[str, BillingRule] = MappingProxyType(
    {
        "cohere": "search_units",
        "jina": "pair_tokens",
        "voyage": "pair_tokens",
        "mixedbread": "pair_tokens",
        "siliconflow": "pair_tokens",
        "deepinfra": "pair_tokens",
        "fireworks": "pair_tokens",
        "tei": "pair_tokens",
        "infinity": "pair_characters",
        # The LLM judge: prompt tokens (the query again for each passage) plus output at `output_price`.
        "chat": "pair_tokens",
        "local": "none",
        "identity": "none",
    }
)

RULE_UNIT: Mapping[BillingRule, BilledUnit] = MappingProxyType(
    {
        "search_units": "search_units",
        "pair_tokens": "tokens",
        "pair_characters": "characters",
        "none": "none",
    }
)
"""The `Usage.billed_unit` each rule produces."""


def search_units(documents: int, *, per_request: int | None = None) -> int:
    """Σ over requests of ceil(n / 100), `per_request` documents sent at a time (None: all in one).

    Splitting 150 documents as 75 + 75 costs 2 units, as 100 + 50 also 2, but 300 as 150 + 150 costs 4
    where 100 + 100 + 100 costs 3: batches should be multiples of 100.
    """
    if documents < 0:
        raise ValueError(f"documents must be >= 0, got {documents}")
    step = documents if per_request is None else per_request
    if step < 1:
        return 0
    full, rest = divmod(documents, step)
    return full * math.ceil(step / SEARCH_UNIT_DOCUMENTS) + math.ceil(rest / SEARCH_UNIT_DOCUMENTS)


def search_unit_documents(query_tokens: int, text: str, count: Callable[[str], int]) -> int:
    """Documents a search-unit provider bills `text` as: 1 when it fits the context with the query, else one
    per chunk, ceil(tokens / (4,096 - query_tokens)) (the room never below 1 token).

    `count` is the provider's token counter (`leanrank.cost.tokens.counter_for`). A text of no more
    characters than the room is not counted: a token covers at least one character, so the usual paragraph
    costs no tokenizer call.
    """
    room = max(1, SEARCH_UNIT_CONTEXT_TOKENS - query_tokens)
    if len(text) <= room:
        return 1
    return max(1, math.ceil(count(text) / room))


def pair_tokens(query_tokens: int, document_tokens: Iterable[int]) -> int:
    """`query_tokens × documents + Σ document_tokens`: the query is paid once per document."""
    docs = list(document_tokens)
    return query_tokens * len(docs) + sum(docs)


def pair_characters(query: str, documents: Sequence[str]) -> int:
    """`len(query) × documents + Σ len(document)`: infinity's default usage count."""
    return len(query) * len(documents) + sum(len(doc) for doc in documents)
