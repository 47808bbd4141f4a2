"""The course lexicon with the real bundled encoder: words of one language map to the other's terms."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from leanrank.encode.base import Matrix
from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.encode.lexicon import Lexicon, build_lexicon

COURSE = [
    "Градиентный бустинг строит деревья одно за другим. Бустинг уменьшает смещение.",
    "Сезонность временного ряда видна на графике; сезонность убирают дифференцированием.",
    "Gradient boosting builds trees one after another; boosting reduces bias.",
    "Seasonality of a time series shows on the plot; seasonality is removed by differencing.",
    "Кластеризация и кластеризация. Clustering and clustering.",
]
SETTINGS = {"threshold": 0.0, "per_word": 1, "margin": 0.0}


class Counting:
    """The real encoder, counting the texts it is asked to embed."""

    def __init__(self, inner: E5SmallEncoder) -> None:
        self.inner, self.embedded = inner, 0
        self.name, self.dim = inner.name, inner.dim

    def embed_passages(self, texts: Sequence[str]) -> Matrix:
        self.embedded += len(texts)
        return self.inner.embed_passages(texts)

    def embed_query(self, text: str) -> Matrix:
        return self.inner.embed_query(text)

    def token_count(self, text: str) -> int:
        return self.inner.token_count(text)


@pytest.fixture(scope="module")
def lexicon(e5: E5SmallEncoder, bm25: Bm25Encoder) -> Lexicon:
    return build_lexicon(COURSE, bm25, e5, fingerprint="f", min_count=2)


def words_of(lexicon: Lexicon, ids: Sequence[int]) -> set[str]:
    names = {int(i): w for side in lexicon.sides.values() for i, w in zip(side.ids, side.words, strict=True)}
    return {names[i] for i in ids}


def test_terms_are_the_words_seen_twice_by_language(lexicon: Lexicon) -> None:
    assert set(lexicon.sides["ru"].words) == {"бустинг", "сезонность", "кластеризация"}
    assert set(lexicon.sides["en"].words) == {"boosting", "seasonality", "clustering"}
    assert lexicon.sides["ru"].vectors.shape == (3, 384)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("бустинг", {"boosting"}),
        ("сезонность", {"seasonality"}),
        ("seasonality", {"сезонность"}),
        ("clustering", {"кластеризация"}),
    ],
)
def test_query_words_translate_to_the_other_language(
    lexicon: Lexicon, e5: E5SmallEncoder, bm25: Bm25Encoder, query: str, expected: set[str]
) -> None:
    found = lexicon.translate(query, bm25, e5, **SETTINGS)
    assert words_of(lexicon, found.indices) == expected
    assert found.values == (1.0,) * len(found.indices)


def test_a_high_threshold_translates_nothing(lexicon: Lexicon, e5: E5SmallEncoder, bm25: Bm25Encoder) -> None:
    assert (
        lexicon.translate("что такое бустинг", bm25, e5, threshold=1.0, per_word=1, margin=0.0).indices == ()
    )


def test_saved_and_loaded_unchanged(lexicon: Lexicon, tmp_path: Path) -> None:
    lexicon.save(tmp_path / "c.npz")
    loaded = Lexicon.load(tmp_path / "c.npz")
    assert loaded is not None
    assert (loaded.fingerprint, loaded.encoder) == ("f", lexicon.encoder)
    for lang, side in lexicon.sides.items():
        assert loaded.sides[lang].words == side.words
        np.testing.assert_array_equal(loaded.sides[lang].vectors, side.vectors)
        np.testing.assert_array_equal(loaded.sides[lang].ids, side.ids)


def test_a_damaged_file_reads_as_none(tmp_path: Path) -> None:
    (tmp_path / "c.npz").write_bytes(b"not a lexicon")
    assert Lexicon.load(tmp_path / "c.npz") is None
    assert Lexicon.load(tmp_path / "missing.npz") is None


def test_a_rebuild_embeds_only_new_words(lexicon: Lexicon, e5: E5SmallEncoder, bm25: Bm25Encoder) -> None:
    counting = Counting(e5)
    grown = build_lexicon(
        [*COURSE, "Регрессия, регрессия."], bm25, counting, fingerprint="g", min_count=2, previous=lexicon
    )
    assert counting.embedded == 1
    assert "регрессия" in grown.sides["ru"].words
