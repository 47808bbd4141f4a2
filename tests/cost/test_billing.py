from __future__ import annotations

import math

import pytest

from leanrank.cost.billing import (
    PROVIDER_BILLING,
    RULE_UNIT,
    pair_characters,
    pair_tokens,
    search_unit_documents,
    search_units,
)
from leanrank.rerank.providers import PROVIDERS


@pytest.mark.parametrize(
    ("documents", "per_request", "units"),
    [
        (0, None, 0),
        (1, None, 1),
        (100, None, 1),
        (101, None, 2),  # PROVIDERS.md: 101 docs = 2 units
        (120, None, 2),
        (150, 75, 2),  # 75 + 75
        (150, 100, 2),  # 100 + 50
        (300, 150, 4),  # 150 + 150: two units each ...
        (300, 100, 3),  # ... where batches of 100 cost one each
        (10_001, 10_000, 101),
    ],
)
def test_search_units(documents: int, per_request: int | None, units: int) -> None:
    assert search_units(documents, per_request=per_request) == units


def test_search_units_of_one_request_is_ceil_n_over_100() -> None:
    for n in range(0, 1001, 7):
        assert search_units(n) == math.ceil(n / 100)


def test_negative_documents_are_a_bug() -> None:
    with pytest.raises(ValueError, match="documents"):
        search_units(-1)


def test_a_document_over_the_context_with_the_query_is_billed_per_chunk() -> None:
    """One token per character: the room for a chunk is 4,096 - 96 = 4,000 tokens beside a 96-token query."""
    counted: list[str] = []

    def count(text: str) -> int:
        counted.append(text)
        return len(text)

    assert search_unit_documents(96, "x" * 4_000, count) == 1
    assert counted == []  # no more characters than the room: one document, no tokenizer call
    assert search_unit_documents(96, "x" * 4_001, count) == 2
    assert search_unit_documents(96, "x" * 12_000, count) == 3
    assert search_unit_documents(96, "x" * 12_001, count) == 4
    assert search_unit_documents(96, "x" * 9_000, lambda t: len(t) // 4) == 1  # counted: 2,250 tokens fit
    assert search_unit_documents(5_000, "xy", count) == 2  # a query over the context leaves 1 token a chunk


def test_pair_tokens_pays_the_query_once_per_document() -> None:
    # Voyage's formula: query_tokens × documents + Σ document tokens.
    assert pair_tokens(10, [100, 200, 300]) == 10 * 3 + 600
    assert pair_tokens(10, []) == 0


def test_pair_characters() -> None:
    assert pair_characters("abc", ["de", "fgh"]) == 3 * 2 + 5


def test_every_catalog_provider_has_a_rule_matching_its_billed_unit() -> None:
    for name, spec in PROVIDERS.items():
        assert RULE_UNIT[PROVIDER_BILLING[name]] == spec.billed_unit, name
