from __future__ import annotations

import math

import pytest

from leanrank.cost.billing import PROVIDER_BILLING, RULE_UNIT, pair_characters, pair_tokens, search_units
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


def test_pair_tokens_pays_the_query_once_per_document() -> None:
    # Voyage's formula: query_tokens × documents + Σ document tokens.
    assert pair_tokens(10, [100, 200, 300]) == 10 * 3 + 600
    assert pair_tokens(10, []) == 0


def test_pair_characters() -> None:
    assert pair_characters("abc", ["de", "fgh"]) == 3 * 2 + 5


def test_every_catalog_provider_has_a_rule_matching_its_billed_unit() -> None:
    for name, spec in PROVIDERS.items():
        assert RULE_UNIT[PROVIDER_BILLING[name]] == spec.billed_unit, name
