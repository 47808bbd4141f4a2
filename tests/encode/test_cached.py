"""Encoder work done once: passage vectors kept by (encoder, text hash), query vectors kept in memory."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from leanrank.encode.base import DenseEncoder, Matrix
from leanrank.encode.cached import EMBED_BATCH, PassageVectors, QueryCache
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.errors import StoreError


class Counting:
    """The real e5 encoder, counting the texts and queries it is asked to embed; `name` can be changed."""

    def __init__(self, encoder: E5SmallEncoder, name: str | None = None) -> None:
        self.encoder = encoder
        self.name = name or encoder.name
        self.passages: list[str] = []
        self.queries: list[str] = []

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def embed_passages(self, texts: Sequence[str]) -> Matrix:
        self.passages += texts
        return self.encoder.embed_passages(texts)

    def embed_query(self, text: str) -> Matrix:
        self.queries.append(text)
        return self.encoder.embed_query(text)

    def token_count(self, text: str) -> int:
        return self.encoder.token_count(text)


@pytest.fixture(scope="module")
def e5() -> E5SmallEncoder:
    return E5SmallEncoder()


def test_only_texts_never_embedded_are_embedded(tmp_path: Path, e5: E5SmallEncoder) -> None:
    encoder = Counting(e5)
    assert isinstance(encoder, DenseEncoder)
    vectors = PassageVectors(tmp_path / "v.sqlite")
    first, n = vectors.embed(encoder, ["цикл for", "list comprehension", "цикл for"])
    assert n == 2  # the repeated text once
    assert encoder.passages == ["цикл for", "list comprehension"]
    again, n = vectors.embed(encoder, ["list comprehension", "словари", "цикл for"])
    assert n == 1
    assert encoder.passages[2:] == ["словари"]
    np.testing.assert_array_equal(again[0], first[1])
    np.testing.assert_array_equal(again[2], first[0])
    direct = e5.embed_passages(["list comprehension", "словари", "цикл for"])
    np.testing.assert_allclose(again, direct, atol=1e-6)
    assert again.dtype == np.float32
    assert again.shape == (3, e5.dim)
    vectors.close()
    reopened = PassageVectors(tmp_path / "v.sqlite")  # kept across processes: it is a file
    assert reopened.embed(encoder, ["словари"])[1] == 0
    reopened.close()


def test_vectors_are_kept_per_encoder(tmp_path: Path, e5: E5SmallEncoder) -> None:
    vectors = PassageVectors(tmp_path / "v.sqlite")
    vectors.embed(Counting(e5), ["цикл for"])
    other = Counting(e5, name="another-model")
    assert vectors.embed(other, ["цикл for"])[1] == 1
    vectors.close()


def test_progress_moves_batch_by_batch(tmp_path: Path, e5: E5SmallEncoder) -> None:
    vectors = PassageVectors(tmp_path / "v.sqlite")
    seen: list[tuple[int, int]] = []
    texts = [f"абзац номер {i}" for i in range(EMBED_BATCH + 8)]
    _, n = vectors.embed(Counting(e5), texts, progress=lambda done, total: seen.append((done, total)))
    assert n == len(texts)
    assert seen == [(EMBED_BATCH, len(texts)), (len(texts), len(texts))]
    vectors.close()


def test_an_unreadable_row_is_embedded_again(tmp_path: Path, e5: E5SmallEncoder) -> None:
    path = tmp_path / "v.sqlite"
    vectors = PassageVectors(path)
    encoder = Counting(e5)
    vectors.embed(encoder, ["цикл for"])
    with sqlite3.connect(path) as db:
        db.execute("UPDATE passage_vectors SET vector = x'00'")
    matrix, n = vectors.embed(encoder, ["цикл for"])
    assert n == 1
    np.testing.assert_allclose(matrix, e5.embed_passages(["цикл for"]), atol=1e-6)
    vectors.close()


def test_a_cache_that_cannot_be_opened_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "v.sqlite").mkdir()
    with pytest.raises(StoreError, match=r"vector cache .*v\.sqlite"):
        PassageVectors(tmp_path / "v.sqlite")


def test_a_repeated_question_skips_the_encoder(e5: E5SmallEncoder) -> None:
    encoder = Counting(e5)
    cached = QueryCache(encoder, size=2)
    assert isinstance(cached, DenseEncoder)
    first = cached.embed_query("Как работает цикл for?")
    np.testing.assert_array_equal(cached.embed_query("Как работает цикл for?"), first)
    assert encoder.queries == ["Как работает цикл for?"]
    with pytest.raises(ValueError, match="read-only"):
        first[0] = 1.0
    cached.embed_query("b")
    cached.embed_query("Как работает цикл for?")  # used again: "b" is now the least recent
    cached.embed_query("c")  # evicts "b"
    cached.embed_query("b")
    assert encoder.queries == ["Как работает цикл for?", "b", "c", "b"]
    assert (cached.name, cached.dim) == (e5.name, e5.dim)
