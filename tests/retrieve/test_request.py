"""The engine query the hybrid retriever builds (`HybridRetriever.request`): each list's weight comes from the
settings, and it is the query `retrieve` runs before trimming. Real encoders, a real embedded index."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.index.edge import EdgeStore
from leanrank.retrieve.hybrid import HybridRetriever, RetrieveFilter, trim
from leanrank.settings import RetrieveSettings
from tests.index.test_edge import chunk

# One source each; the English text twice, so dedup has something to drop.
TEXTS = (
    "Градиентный бустинг строит ансамбль деревьев.",
    "Gradient boosting builds an ensemble of trees.",
    "Gradient boosting builds an ensemble of trees.",
    "Линейная регрессия минимизирует квадрат ошибки.",
)
WHERE = RetrieveFilter("c")


@pytest.fixture
def store(tmp_path: Path, e5: E5SmallEncoder, bm25: Bm25Encoder) -> Iterator[EdgeStore]:
    opened = EdgeStore(tmp_path / "index", dim=e5.dim, encoder=e5.name)
    for i, text in enumerate(TEXTS):
        c = chunk("c", f"s{i}.md", 0, text)
        opened.replace_source("c", c.source, [c], e5.embed_passages([text]), bm25.embed_documents([text]))
    yield opened
    opened.close()


def retriever(store: EdgeStore, e5: E5SmallEncoder, bm25: Bm25Encoder, **settings: Any) -> HybridRetriever:
    return HybridRetriever(store, e5, bm25, RetrieveSettings(**settings))


def test_a_russian_question_gives_the_english_list_the_cross_weight(
    store: EdgeStore, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> None:
    request = retriever(store, e5, bm25).request("что строит градиентный бустинг", WHERE, depth=2)
    assert request.lang_legs == ("ru", "en")
    assert request.weights == (1.0, 1.0, 0.1, 0.3)  # dense, BM25, ru (lang_weight), en (cross_lang_weight)
    assert (request.limit, request.prefetch, request.rrf_k) == (
        6,
        100,
        7,
    )  # depth 2 over-fetched ×3 for dedup


def test_a_language_filter_keeps_only_its_language_list(
    store: EdgeStore, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> None:
    request = retriever(store, e5, bm25).request(
        "what does boosting build", RetrieveFilter("c", langs=("ru",))
    )
    assert request.lang_legs == ("ru",)
    assert request.weights == (1.0, 1.0, 0.3)  # an English question: Russian is the other language
    assert request.limit == 60  # the default depth 20, ×3


def test_one_list_alone_has_no_language_lists(
    store: EdgeStore, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> None:
    request = retriever(store, e5, bm25, mode="dense", dedup=False).request("boosting", WHERE, depth=5)
    assert (request.lang_legs, request.weights, request.limit) == ((), (1.0, 0.0), 5)


def test_retrieve_runs_the_request_then_trims(
    store: EdgeStore, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> None:
    hybrid = retriever(store, e5, bm25)
    question = "what does gradient boosting build"
    vector = e5.embed_query(question)
    request = hybrid.request(question, WHERE, depth=2, vector=vector)
    assert request.dense is vector
    fused = store.hybrid(request)
    assert len(fused) == 4  # every chunk within the over-fetched limit of 6
    kept = hybrid.retrieve(question, WHERE, depth=2)
    assert [c.chunk_id for c in kept] == [
        c.chunk_id for c in trim(fused, depth=2, dedup=True, max_per_source=0)
    ]
    assert len({c.chunk.text for c in kept}) == 2  # the repeated English text kept once
