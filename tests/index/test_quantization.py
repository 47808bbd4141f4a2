"""Quantised dense vectors: the collection is created with them (embedded and server), searches ask for
rescoring, the index records its setting, and rescored results keep the float ranking."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from leanrank.encode.base import SparseVec
from leanrank.errors import ConfigError, StoreError
from leanrank.index.base import HybridQuery, Quantization, quantization_of
from leanrank.index.edge import EdgeStore, stored_meta
from leanrank.index.factory import open_store
from leanrank.index.qdrant import QdrantStore
from leanrank.settings import Settings, StoreSettings
from tests.index.test_edge import chunk
from tests.index.test_qdrant import FakeQdrant

# Above the engine's default indexing threshold (10 MB of vectors), so optimising builds the quantised copy.
N, DIM = 8_000, 384


def vectors() -> np.ndarray:
    x = np.random.default_rng(7).normal(size=(N, DIM)).astype(np.float32)
    unit: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit


def fill(store: EdgeStore | QdrantStore, x: np.ndarray) -> None:
    n = len(x)
    chunks = [chunk("c", "s.md", i, f"t{i}") for i in range(n)]
    store.replace_source("c", "s.md", chunks, x, [SparseVec((i,), (1.0,)) for i in range(n)])


def top(store: EdgeStore | QdrantStore, q: np.ndarray, k: int = 10) -> list[int]:
    found = store.hybrid(HybridQuery("c", q, SparseVec((), ()), limit=k, prefetch=k, rrf_k=60))
    return [c.chunk.index for c in found]


def exact(x: np.ndarray, q: np.ndarray, k: int = 10) -> list[int]:
    return [int(i) for i in np.argsort(-(x @ q))[:k]]


@pytest.mark.slow  # 8,000 vectors written and optimised: ~30 s each on 2 cores
@pytest.mark.parametrize("kind", ["int8", "binary"])
def test_edge_index_is_built_quantised_and_rescoring_keeps_the_float_order(kind: str, tmp_path: Path) -> None:
    x = vectors()
    store = EdgeStore(tmp_path, dim=DIM, encoder="t", quantization=Quantization(kind, oversampling=16.0))  # type: ignore[arg-type]
    fill(store, x)
    store.optimize()
    queries = x[:5] + np.random.default_rng(8).normal(0, 0.02, (5, DIM)).astype(np.float32)
    # Rescored, the best hit is the exact float one (each query is a stored vector plus a little noise).
    assert [top(store, q, 1) for q in queries] == [exact(x, q, 1) for q in queries]
    store.close()
    data = list(tmp_path.rglob("quantized*data*"))
    assert data  # the engine wrote the quantised copy
    assert stored_meta(tmp_path) == {"schema": 2, "dim": DIM, "encoder": "t", "quantization": kind}
    with pytest.raises(ConfigError, match="was built with"):
        EdgeStore(tmp_path, dim=DIM, encoder="t")


def test_settings_choose_it_for_both_stores(tmp_path: Path) -> None:
    assert quantization_of(StoreSettings()) is None
    settings = Settings(
        data_dir=tmp_path, store={"quantization": "int8", "oversampling": 3.0, "rescore": False}
    )
    assert quantization_of(settings.store) == Quantization("int8", rescore=False, oversampling=3.0)
    edge = open_store(settings, DIM, "t")
    edge.close()
    assert stored_meta(tmp_path / "index") == {
        "schema": 2,
        "dim": DIM,
        "encoder": "t",
        "quantization": "int8",
    }
    local = settings.model_copy(update={"store": settings.store.model_copy(update={"url": ":memory:"})})
    server = open_store(local, DIM, "t")
    assert isinstance(server, QdrantStore)
    x = vectors()[:300]
    fill(server, x)
    # Local mode searches the float vectors; the request carries the quantisation parameters all the same.
    with pytest.warns(UserWarning, match="exact \\(brute-force\\) search"):
        assert top(server, x[0], 3)[0] == 0
    server.close()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("int8", {"scalar": {"type": "int8", "quantile": 0.99, "always_ram": True}}),
        ("binary", {"binary": {"always_ram": True}}),
    ],
)
def test_a_server_collection_is_created_quantised(kind: str, expected: dict[str, Any]) -> None:
    ok: dict[str, Any] = {"status": "ok", "time": 0.0}
    server = FakeQdrant(
        [(200, {**ok, "result": {"exists": False}}), (404, {"status": {"error": "stop here"}})]
    )
    settings = StoreSettings.model_validate({"quantization": kind})
    try:
        with pytest.raises(StoreError, match="stop here"):
            QdrantStore(server.url, dim=384, encoder="e5", settings=settings, backoff_s=0.001)
    finally:
        server.close()
    assert server.bodies[1]["quantization_config"] == expected
    assert server.bodies[1]["metadata"]["leanrank"]["quantization"] == kind
