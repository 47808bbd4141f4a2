"""Migration from the embedded store into qdrant-client's local mode: complete, resumable, verified.

Synthetic points (8-d vectors, BM25 terms from a small vocabulary, so list ties are frequent), three courses.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from leanrank.cli.index import index_app
from leanrank.encode.base import SparseVec
from leanrank.errors import StoreError
from leanrank.index.base import Candidate, Quantization, StoredPoint
from leanrank.index.edge import EdgeStore
from leanrank.index.migrate import canonical_order, migrate, rankings_agree
from leanrank.index.qdrant import QdrantStore
from tests.index.test_edge import chunk

DIM = 8
COURSES = {"c1": 60, "c2": 50, "c3": 40}
TOTAL = sum(COURSES.values())


def fill(store: EdgeStore | QdrantStore, course: str, n: int, seed: int) -> None:
    """`n` chunks of `course` in sources of 10, written as ingestion does (one source at a time)."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, 10):
        source = f"lesson-{start // 10}.md"
        chunks = [chunk(course, source, i, f"{course} text {start + i}") for i in range(min(10, n - start))]
        dense = rng.normal(size=(len(chunks), DIM)).astype(np.float32)
        dense /= np.linalg.norm(dense, axis=1, keepdims=True)
        sparse = [
            SparseVec(tuple(sorted(rng.choice(30, size=3, replace=False).tolist())), (1.0, 1.0, 1.0))
            for _ in chunks
        ]
        store.replace_source(course, source, chunks, dense, sparse)


@pytest.fixture(scope="module")
def edge_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once; tests only read it."""
    path = tmp_path_factory.mktemp("migrate") / "edge"
    store = EdgeStore(path, dim=DIM, encoder="test")
    for seed, (course, n) in enumerate(COURSES.items()):
        fill(store, course, n, seed)
    store.close()
    return path


@pytest.fixture
def stores(edge_dir: Path) -> Iterator[tuple[EdgeStore, QdrantStore]]:
    edge = EdgeStore(edge_dir, dim=DIM, encoder="test")
    target = QdrantStore(":memory:", dim=DIM, encoder="test")
    yield edge, target
    edge.close()
    target.close()


def read_all(store: EdgeStore | QdrantStore) -> list[StoredPoint]:
    points: list[StoredPoint] = []
    offset: str | None = None
    while True:
        batch, offset = store.scroll(64, offset)
        points.extend(batch)
        if offset is None:
            return points


def test_everything_is_copied_and_verified(stores: tuple[EdgeStore, QdrantStore]) -> None:
    edge, target = stores
    seen: list[tuple[int, int]] = []
    report = migrate(
        edge, target, source_name="edge:test", batch=40, queries=10, progress=lambda *p: seen.append(p)
    )
    assert report.ok
    assert (report.copied, report.resumed_after, report.queries) == (TOTAL, 0, 10)
    assert report.counts == {c: (n, n) for c, n in COURSES.items()}
    assert seen == [(0, TOTAL), (40, TOTAL), (80, TOTAL), (120, TOTAL), (TOTAL, TOTAL)]
    source, copy = read_all(edge), read_all(target)
    assert [p.chunk_id for p in copy] == [p.chunk_id for p in source]
    for a, b in zip(source, copy, strict=True):
        assert (a.chunk, a.sparse) == (b.chunk, b.sparse)
        np.testing.assert_allclose(a.dense, b.dense, atol=1e-6)
    assert target.checkpoint() == {"source": "edge:test", "next": None, "copied": TOTAL, "done": True}


def test_an_interrupted_run_resumes_without_duplicates(
    stores: tuple[EdgeStore, QdrantStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    edge, target = stores
    real = target.upsert_points
    calls = 0

    def flaky(points: Sequence[StoredPoint]) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise StoreError("writing migrated points failed: cannot reach Qdrant (ConnectError)")
        real(points)

    monkeypatch.setattr(target, "upsert_points", flaky)
    with pytest.raises(StoreError, match="cannot reach Qdrant"):
        migrate(edge, target, source_name="edge:test", batch=40, queries=0)
    assert target.checkpoint() == {
        "source": "edge:test",
        "next": read_all(edge)[80].chunk_id,
        "copied": 80,
        "done": False,
    }

    monkeypatch.setattr(target, "upsert_points", real)
    seen: list[tuple[int, int]] = []
    report = migrate(edge, target, source_name="edge:test", batch=40, progress=lambda *p: seen.append(p))
    assert (report.resumed_after, report.copied) == (80, TOTAL - 80)
    assert seen[0] == (80, TOTAL)
    assert report.ok
    assert target.courses() == COURSES


def test_a_finished_run_copies_again_and_another_source_starts_fresh(
    stores: tuple[EdgeStore, QdrantStore],
) -> None:
    edge, target = stores
    migrate(edge, target, source_name="edge:test", batch=100, queries=0)
    again = migrate(edge, target, source_name="edge:test", batch=100, queries=0)
    assert (again.resumed_after, again.copied) == (0, TOTAL)
    assert target.courses() == COURSES
    target.save_checkpoint({"source": "edge:other", "next": "x", "copied": 5, "done": False})
    fresh = migrate(edge, target, source_name="edge:test", batch=100, queries=0)
    assert (fresh.resumed_after, fresh.copied) == (0, TOTAL)


def test_verification_reports_a_target_that_differs(stores: tuple[EdgeStore, QdrantStore]) -> None:
    edge, target = stores
    stale = chunk("c1", "removed-from-source.md", 0, "stale")
    target.replace_source(
        "c1", stale.source, [stale], np.ones((1, DIM), np.float32), [SparseVec((1,), (1.0,))]
    )
    report = migrate(edge, target, source_name="edge:test", batch=100, queries=5)
    assert not report.ok
    assert report.counts["c1"] == (60, 61)
    assert report.counts["c2"] == (50, 50)


def hit(cid: str, dense: float | None, bm25: float | None, fused: float) -> Candidate:
    return Candidate(cid, chunk("c", "a.md", 0, cid), fused, dense, bm25, None, None)


def test_tied_list_scores_are_broken_one_way() -> None:
    # x and y tie in BM25; one engine ranked x first, the other y: raw fused scores differ, rankings agree.
    one = [
        hit("d", 0.9, None, 1 / 30),
        hit("x", 0.5, 2.0, 1 / 31 + 1 / 30),
        hit("y", 0.4, 2.0, 1 / 32 + 1 / 31),
    ]
    two = [
        hit("x", 0.5, 2.0, 1 / 31 + 1 / 31),
        hit("d", 0.9, None, 1 / 30),
        hit("y", 0.4, 2.0, 1 / 32 + 1 / 30),
    ]
    assert canonical_order(one, rrf_k=30, weights=(1.0, 1.0)) == [
        ("x", 1 / 31 + 1 / 30),
        ("y", 1 / 32 + 1 / 30),
        ("d", 1 / 30),
    ]
    assert rankings_agree(one, two, k=3, rrf_k=30, weights=(1.0, 1.0))
    assert not rankings_agree(one, [*two[:2], hit("z", 0.4, 2.0, 0.0)], k=3, rrf_k=30, weights=(1.0, 1.0))
    assert not rankings_agree(one, [*two[:2], hit("y", 0.4, 2.1, 0.0)], k=3, rrf_k=30, weights=(1.0, 1.0))


def test_cli_migrates_and_explains_bad_arguments(
    edge_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    ok = runner.invoke(
        index_app,
        ["migrate", "--from", f"edge:{edge_dir}", "--to", f"qdrant:{tmp_path / 'q'}", "--batch", "64"],
    )
    assert ok.exit_code == 0, ok.output
    assert "verified: 150 points copied" in ok.stderr
    assert "20/20 sample queries agree" in ok.stderr
    for args, message in [
        (["--from", "qdrant:/x", "--to", "qdrant:/y"], "give the embedded index as edge:PATH"),
        (["--from", f"edge:{tmp_path / 'none'}", "--to", "qdrant:/y"], "no leanrank index there"),
        (["--from", f"edge:{edge_dir}", "--to", "edge:/y"], "give a Qdrant server"),
    ]:
        bad = runner.invoke(index_app, ["migrate", *args])
        assert bad.exit_code == 2, bad.output
        assert message in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1


def test_cli_migrates_a_quantised_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The source opens with the quantization recorded when it was built, not the settings' default."""
    path = tmp_path / "edge"
    store = EdgeStore(path, dim=DIM, encoder="test", quantization=Quantization("int8"))
    fill(store, "c1", 30, 0)
    store.close()
    monkeypatch.chdir(tmp_path)
    ok = CliRunner().invoke(
        index_app, ["migrate", "--from", f"edge:{path}", "--to", f"qdrant:{tmp_path / 'q'}"]
    )
    assert ok.exit_code == 0, ok.output
    assert "verified: 30 points copied" in ok.stderr
