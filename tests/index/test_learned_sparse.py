"""The learned-sparse schema (bge-m3's lexical weights) in both stores: a `lexical` sparse vector without the
IDF modifier, so the sparse list scores by the plain dot product; the index records the kind and refuses
the other one. Hand-made 4-d dense vectors and hand-set weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from leanrank.encode.base import SparseVec
from leanrank.errors import ConfigError
from leanrank.index.base import HybridQuery
from leanrank.index.edge import EdgeStore, stored_meta
from leanrank.index.migrate import migrate
from leanrank.index.qdrant import QdrantStore
from leanrank.settings import SparseKind
from tests.index.test_edge import chunk, vec

# Dot products with the query {2: 1.5, 3: 1.0}: a = 0.5·0 + 2.0·1.5 = 3.0, b = 1.0·1.5 + 4.0·1.0 = 5.5,
# c = 0.25·1.0 = 0.25; d shares no token. With IDF these would be scaled by each token's rarity.
WEIGHTS = {
    "a": SparseVec((1, 2), (0.5, 2.0)),
    "b": SparseVec((2, 3), (1.0, 4.0)),
    "c": SparseVec((3,), (0.25,)),
    "d": SparseVec((9,), (7.0,)),
}
QUERY = SparseVec((2, 3), (1.5, 1.0))
DOT = {"b": 5.5, "a": 3.0, "c": 0.25}


def open_store(kind: str, where: Path, sparse: SparseKind) -> EdgeStore | QdrantStore:
    if kind == "edge":
        return EdgeStore(where, dim=4, encoder="test", sparse=sparse)
    return QdrantStore(str(where), dim=4, encoder="test", sparse=sparse)


def fill(store: EdgeStore | QdrantStore) -> None:
    chunks = [chunk("c", "s.md", i, text) for i, text in enumerate(WEIGHTS)]
    dense = np.stack([vec(1, 0, 0, 0), vec(0, 1, 0, 0), vec(0, 0, 1, 0), vec(0, 0, 0, 1)])
    store.replace_source("c", "s.md", chunks, dense, list(WEIGHTS.values()))


def sparse_config(kind: str, where: Path) -> dict[str, object]:
    """The sparse vectors the engine was configured with, read back from its own files."""
    if kind == "edge":
        config = json.loads((where / "shard" / "edge_config.json").read_text())
        return dict(config["sparse_vectors"])
    client = QdrantClient(path=str(where))
    try:
        params = client.get_collection("leanrank").config.params.sparse_vectors or {}
        return {name: p.model_dump(exclude_none=True) for name, p in params.items()}
    finally:
        client.close()


@pytest.mark.parametrize("kind", ["edge", "qdrant"])
def test_the_lexical_vector_has_no_idf_and_scores_by_dot_product(kind: str, tmp_path: Path) -> None:
    where = tmp_path / "idx"
    store = open_store(kind, where, "bge-m3")
    fill(store)
    found = store.hybrid(HybridQuery("c", vec(0, 0, 0, 1), QUERY, limit=10, prefetch=10, rrf_k=60))
    sparse = sorted((c for c in found if c.bm25 is not None), key=lambda c: c.bm25_rank or 0)
    assert [(c.chunk.text, c.bm25) for c in sparse] == [(t, pytest.approx(s)) for t, s in DOT.items()]
    assert [c.bm25_rank for c in sparse] == [0, 1, 2]
    points, _ = store.scroll(10)  # what a migration copies
    assert {p.chunk.text: p.sparse for p in points} == WEIGHTS
    store.close()
    assert sparse_config(kind, where) == {"lexical": {}}
    if kind == "edge":
        assert stored_meta(where) == {"schema": 2, "dim": 4, "encoder": "test", "sparse": "bge-m3"}


@pytest.mark.parametrize("kind", ["edge", "qdrant"])
def test_bm25_keeps_its_idf_vector_and_metadata(kind: str, tmp_path: Path) -> None:
    open_store(kind, tmp_path / "idx", "bm25").close()
    assert sparse_config(kind, tmp_path / "idx") == {"bm25": {"modifier": "idf"}}
    if kind == "edge":  # indexes built before the setting existed stay valid
        assert stored_meta(tmp_path / "idx") == {"schema": 2, "dim": 4, "encoder": "test"}


@pytest.mark.parametrize("kind", ["edge", "qdrant"])
@pytest.mark.parametrize(("built", "asked"), [("bm25", "bge-m3"), ("bge-m3", "bm25")])
def test_an_index_refuses_the_other_sparse_kind(
    kind: str, built: SparseKind, asked: SparseKind, tmp_path: Path
) -> None:
    open_store(kind, tmp_path / "idx", built).close()
    with pytest.raises(ConfigError, match="was built with"):
        open_store(kind, tmp_path / "idx", asked)
    open_store(kind, tmp_path / "idx", built).close()  # the refused open left it usable


def test_migration_copies_learned_weights_into_a_lexical_collection(tmp_path: Path) -> None:
    edge = EdgeStore(tmp_path / "edge", dim=4, encoder="test", sparse="bge-m3")
    fill(edge)
    target = QdrantStore(":memory:", dim=4, encoder="test", sparse="bge-m3")
    report = migrate(edge, target, source_name="edge", queries=4)
    assert report.ok
    assert report.copied == len(WEIGHTS)
    points, _ = target.scroll(10)
    assert {p.chunk.text: p.sparse for p in points} == WEIGHTS
    edge.close()
    target.close()
