"""The store contract against the real Qdrant Edge engine and qdrant-client's local mode.

No encoder: hand-made 4-d vectors. The generic tests take the parametrised `store` fixture, so both stores
pass the same ones.
"""

from pathlib import Path

import numpy as np
import pytest

from leanrank.encode.base import SparseVec
from leanrank.errors import ConfigError, IndexLockedError
from leanrank.index.base import HybridQuery, Store
from leanrank.index.edge import EdgeStore, point_id
from leanrank.index.qdrant import QdrantStore
from leanrank.types import Chunk, Lang


def chunk(
    course: str, source: str, i: int, text: str, fh: str = "f1", heading: tuple[str, ...] = ()
) -> Chunk:
    lang: Lang = "ru" if any("а" <= ch <= "я" for ch in text) else "en"
    return Chunk(course, source, i, text, i * 10, i * 10 + len(text), heading, lang, f"h{text}", fh, 3)


def vec(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def write(store: Store, chunks: list[Chunk], dense: list[np.ndarray], terms: list[list[int]]) -> None:
    course, source = chunks[0].course, chunks[0].source
    sparse = [SparseVec(tuple(t), tuple(1.0 for _ in t)) for t in terms]
    store.replace_source(course, source, chunks, np.stack(dense), sparse)


def query(course: str, dense: np.ndarray, terms: list[int], **kw: object) -> HybridQuery:
    return HybridQuery(
        course=course,
        dense=dense,
        sparse=SparseVec(tuple(terms), tuple(1.0 for _ in terms)),
        limit=10,
        prefetch=10,
        rrf_k=60,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture(params=["edge", "qdrant"])
def store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    s: Store
    if request.param == "edge":
        s = EdgeStore(tmp_path / "idx", dim=4, encoder="test")
    else:
        s = QdrantStore(":memory:", dim=4, encoder="test")
    yield s
    s.close()


def test_fused_score_is_rrf_with_zero_based_ranks(store: Store) -> None:
    chunks = [chunk("c", "a.md", i, t) for i, t in enumerate(["alpha", "beta", "gamma"])]
    write(store, chunks, [vec(1, 0, 0, 0), vec(0.9, 0.1, 0, 0), vec(0, 0, 1, 0)], [[1], [2], [2, 3]])
    got = store.hybrid(query("c", vec(1, 0, 0, 0), [2]))
    by_text = {c.chunk.text: c for c in got}
    beta = by_text["beta"]
    assert beta.dense_rank == 1
    assert beta.bm25_rank is not None
    assert beta.fused == pytest.approx(1 / (60 + 1) + 1 / (60 + beta.bm25_rank), rel=1e-6)
    alpha = by_text["alpha"]
    assert alpha.bm25 is None
    assert alpha.fused == pytest.approx(1 / 60, rel=1e-6)


def test_weighted_fusion_stretches_ranks(store: Store) -> None:
    """Qdrant's weighted RRF divides the 1-based rank by the weight: w=0.5 scores rank r like rank 2r+1."""
    chunks = [chunk("c", "a.md", i, t) for i, t in enumerate(["alpha", "beta", "gamma"])]
    write(store, chunks, [vec(1, 0, 0, 0), vec(0.9, 0.1, 0, 0), vec(0, 0, 1, 0)], [[1], [2], [2, 3]])
    got = store.hybrid(query("c", vec(1, 0, 0, 0), [2], weights=(1.0, 0.5)))
    for c in got:
        terms = [(c.dense_rank, 1.0), (c.bm25_rank, 0.5)]
        expected = sum(1 / ((r + 1) / w + 60 - 1) for r, w in terms if r is not None)
        assert c.fused == pytest.approx(expected, rel=1e-6), c.chunk.text


def test_course_filter_isolates_tenants(store: Store) -> None:
    write(store, [chunk("a", "x.md", 0, "secret of course a")], [vec(1, 0, 0, 0)], [[7]])
    write(store, [chunk("b", "x.md", 0, "text of course b")], [vec(1, 0, 0, 0)], [[7]])
    hits = store.hybrid(query("b", vec(1, 0, 0, 0), [7]))
    assert [h.chunk.course for h in hits] == ["b"]
    assert store.courses() == {"a": 1, "b": 1}
    assert (store.count("a"), store.count("b"), store.count("zzz")) == (1, 1, 0)


def test_replace_source_is_idempotent_and_replaces_changed_files(store: Store) -> None:
    v1 = [chunk("c", "l.md", 0, "one", "v1"), chunk("c", "l.md", 1, "two", "v1")]
    write(store, v1, [vec(1, 0, 0, 0), vec(0, 1, 0, 0)], [[1], [2]])
    write(store, v1, [vec(1, 0, 0, 0), vec(0, 1, 0, 0)], [[1], [2]])
    assert store.sources("c") == {"l.md": 2}
    assert store.source_file_hashes("c", "l.md") == {"v1"}
    v2 = [
        chunk("c", "l.md", 0, "one", "v2"),
        chunk("c", "l.md", 1, "three", "v2"),
        chunk("c", "l.md", 2, "four", "v2"),
    ]
    write(store, v2, [vec(1, 0, 0, 0), vec(0, 0, 1, 0), vec(0, 0, 0, 1)], [[1], [3], [4]])
    assert store.source_file_hashes("c", "l.md") == {"v2"}
    texts = sorted(h.chunk.text for h in store.hybrid(query("c", vec(1, 1, 1, 1), [1, 2, 3, 4])))
    assert texts == ["four", "one", "three"]
    assert point_id(v1[0]) == point_id(chunk("c", "l.md", 0, "one", "other-file-hash"))


def test_filters_by_language_and_heading_prefix(store: Store) -> None:
    chunks = [
        chunk("c", "l.md", 0, "циклы for", heading=("Урок 2", "Циклы")),
        chunk("c", "l.md", 1, "loops for", heading=("Lesson 2", "Loops")),
        chunk("c", "l.md", 2, "functions", heading=("Lesson 3",)),
    ]
    write(store, chunks, [vec(1, 0, 0, 0)] * 3, [[1]] * 3)
    assert [h.chunk.text for h in store.hybrid(query("c", vec(1, 0, 0, 0), [1], langs=("ru",)))] == [
        "циклы for"
    ]
    got = store.hybrid(query("c", vec(1, 0, 0, 0), [1], heading_prefix=("Lesson 2",)))
    assert [h.chunk.text for h in got] == ["loops for"]


def test_delete_course_and_source(store: Store) -> None:
    write(store, [chunk("a", "x.md", 0, "a1")], [vec(1, 0, 0, 0)], [[1]])
    write(store, [chunk("a", "y.md", 0, "a2")], [vec(1, 0, 0, 0)], [[1]])
    write(store, [chunk("b", "x.md", 0, "b1")], [vec(1, 0, 0, 0)], [[1]])
    assert store.delete_source("a", "x.md") == 1
    assert store.sources("a") == {"y.md": 1}
    assert store.delete_course("a") == 1
    assert store.courses() == {"b": 1}


def test_reopen_keeps_data_and_checks_the_encoder(tmp_path: Path) -> None:
    s = EdgeStore(tmp_path / "idx", dim=4, encoder="test")
    write(s, [chunk("a", "x.md", 0, "kept")], [vec(1, 0, 0, 0)], [[1]])
    with pytest.raises(IndexLockedError, match="open in another process"):
        EdgeStore(tmp_path / "idx", dim=4, encoder="test")
    s.close()
    s = EdgeStore(tmp_path / "idx", dim=4, encoder="test")
    assert s.courses() == {"a": 1}
    s.close()
    with pytest.raises(ConfigError, match="was built with"):
        EdgeStore(tmp_path / "idx", dim=8, encoder="other")


def test_a_query_without_terms_is_dense_only(store: Store) -> None:
    write(
        store,
        [chunk("c", "a.md", 0, "alpha"), chunk("c", "a.md", 1, "beta")],
        [vec(1, 0, 0, 0), vec(0, 1, 0, 0)],
        [[1], [2]],
    )
    hits = store.hybrid(query("c", vec(1, 0, 0, 0), []))
    assert [h.chunk.text for h in hits] == ["alpha", "beta"]
    assert hits[0].fused == pytest.approx(1 / 60, rel=1e-6)
    assert {h.bm25_rank for h in hits} == {None}


def test_language_legs_lift_the_best_passage_of_each_language(store: Store) -> None:
    """Three Russian chunks sit closer to the query than the English one (dense rank 3); the English leg
    ranks it first among English chunks, so with the legs on it adds a second term: 1/60 for rank 0 there."""
    texts = ["альфа", "бета", "гамма", "delta"]
    dense = [vec(1, 0, 0, 0), vec(0.95, 0.05, 0, 0), vec(0.9, 0.1, 0, 0), vec(0.5, 0.5, 0, 0)]
    write(store, [chunk("c", "a.md", i, t) for i, t in enumerate(texts)], dense, [[9]] * 4)
    plain = {c.chunk.text: c for c in store.hybrid(query("c", vec(1, 0, 0, 0), [1], weights=(1.0, 1.0)))}
    assert plain["delta"].dense_rank == 3
    assert plain["delta"].fused == pytest.approx(1 / (60 + 3), rel=1e-6)
    legs = store.hybrid(
        query("c", vec(1, 0, 0, 0), [1], weights=(1.0, 1.0, 1.0, 1.0), lang_legs=("ru", "en"))
    )
    by_text = {c.chunk.text: c for c in legs}
    assert by_text["delta"].fused == pytest.approx(1 / 63 + 1 / 60, rel=1e-6)
    assert by_text["альфа"].fused == pytest.approx(1 / 60 + 1 / 60, rel=1e-6)
    # 2/61 for бета, then delta (1/63 + 1/60) overtakes гамма (2/62): it was last without the legs
    assert [c.chunk.text for c in legs] == ["альфа", "бета", "delta", "гамма"]


def test_the_translated_bm25_leg_adds_its_own_rrf_term(store: Store) -> None:
    """The query's own terms match nothing; its translation (term 7) finds the second chunk, which the
    translated leg puts first among BM25 hits: 1/60 on top of its dense term 1/61."""
    write(
        store,
        [chunk("c", "a.md", 0, "альфа"), chunk("c", "a.md", 1, "boosting")],
        [vec(1, 0, 0, 0), vec(0.9, 0.1, 0, 0)],
        [[3], [7]],
    )
    plain = {c.chunk.text: c.fused for c in store.hybrid(query("c", vec(1, 0, 0, 0), [5]))}
    assert plain["boosting"] == pytest.approx(1 / 61, rel=1e-6)
    translated = SparseVec((7,), (1.0,))
    off = store.hybrid(query("c", vec(1, 0, 0, 0), [5], translated=translated))
    assert {c.chunk.text: c.fused for c in off} == pytest.approx(plain)  # weight 0: the leg is not asked
    on = store.hybrid(query("c", vec(1, 0, 0, 0), [5], translated=translated, translated_weight=1.0))
    by_text = {c.chunk.text: c.fused for c in on}
    assert by_text["boosting"] == pytest.approx(1 / 61 + 1 / 60, rel=1e-6)
    assert [c.chunk.text for c in on] == ["boosting", "альфа"]
    assert all(c.bm25_rank is None for c in on)  # the translated leg is not the query's BM25 list


def test_the_translated_leg_leaves_out_chunks_in_the_query_s_language(store: Store) -> None:
    """Both chunks hold the translated term; with `translated_skip="ru"` (a Russian query) only the English
    one gets the leg's term, so the Russian chunk keeps its dense term alone: 1/60."""
    write(
        store,
        [chunk("c", "a.md", 0, "альфа"), chunk("c", "a.md", 1, "boosting")],
        [vec(1, 0, 0, 0), vec(0.9, 0.1, 0, 0)],
        [[7], [7]],
    )
    translated = SparseVec((7,), (1.0,))
    every = store.hybrid(query("c", vec(1, 0, 0, 0), [5], translated=translated, translated_weight=1.0))
    assert {c.chunk.text: c.fused for c in every}["альфа"] > 1 / 60
    skip = store.hybrid(
        query("c", vec(1, 0, 0, 0), [5], translated=translated, translated_weight=1.0, translated_skip="ru")
    )
    by_text = {c.chunk.text: c.fused for c in skip}
    assert by_text == pytest.approx({"альфа": 1 / 60, "boosting": 1 / 61 + 1 / 60}, rel=1e-6)


def test_chunks_lists_one_course_only(store: Store) -> None:
    write(
        store, [chunk("c", "a.md", i, t) for i, t in enumerate(["x", "y"])], [vec(1, 0, 0, 0)] * 2, [[1]] * 2
    )
    write(store, [chunk("d", "a.md", 0, "z")], [vec(1, 0, 0, 0)], [[1]])
    assert sorted(c.text for c in store.chunks("c")) == ["x", "y"]
    assert list(store.chunks("none")) == []
