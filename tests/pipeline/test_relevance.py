"""Issue 20 in the pipeline: calibrated `min_relevance`, the nothing-relevant `min_similarity` and the
reranker-embedder agreement, on the real engine and encoder over the bundled sample course."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path

import pytest

from leanrank.aio import run_sync
from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.errors import ConfigError, InputError
from leanrank.pipeline import AGREE_WITHIN, Pipeline, reranker_agreement
from leanrank.rerank.base import RerankResponse, Usage
from leanrank.rerank.calibration import Calibration
from leanrank.rerank.stage import RerankStage
from leanrank.settings import CascadeSettings, RerankSettings, Settings
from tests.cascade.test_plan import cand
from tests.conftest import SAMPLE_COURSE, make_pipeline

QUESTION = "Как работает цикл while?"
# P(relevant) = fused score / 0.4, capped at 1: a made-up map that splits the sample course's fused scores.
LINEAR = Calibration("identity", "isotonic", date(2026, 11, 29), "test", 2, 1, x=(0.0, 0.4), y=(0.0, 1.0))


@pytest.fixture(scope="module")
def course(
    tmp_path_factory: pytest.TempPathFactory, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> Iterator[Pipeline]:
    with make_pipeline(tmp_path_factory.mktemp("data"), e5, bm25) as p:
        p.ingest(SAMPLE_COURSE, "demo")
        yield p


def over(course: Pipeline, tmp_path: Path, **groups: object) -> Pipeline:
    settings = Settings(data_dir=tmp_path, **groups)  # type: ignore[arg-type]
    return Pipeline(settings, dense=course.dense, sparse=course.sparse, store=course.store)


def test_min_relevance_keeps_the_hits_calibrated_at_or_above_it(course: Pipeline, tmp_path: Path) -> None:
    LINEAR.write(tmp_path / "calibration")
    every = course.search(QUESTION, "demo", k=10).hits
    with over(course, tmp_path, rerank=RerankSettings(min_relevance=0.5)) as pipe:
        result = pipe.search(QUESTION, "demo", k=10)
    low = [h for h in every if h.score < 0.2]
    assert low, "the test needs hits below the threshold"
    assert [h.chunk_id for h in result.hits] == [h.chunk_id for h in every if h.score >= 0.2]
    assert [h.stage_scores["relevance"] for h in result.hits] == pytest.approx(
        [min(1.0, h.score / 0.4) for h in result.hits]
    )
    assert result.dropped["min_relevance"] == len(low)


def test_min_relevance_without_a_calibration_of_the_backend_is_refused(
    course: Pipeline, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="needs a calibration of identity"):
        over(course, tmp_path, rerank=RerankSettings(min_relevance=0.5))


def test_below_min_similarity_nothing_is_reranked_and_hits_keep_the_first_stage_order(
    course: Pipeline, tmp_path: Path
) -> None:
    with over(course, tmp_path, cascade=CascadeSettings(preset="balanced", min_similarity=0.99)) as pipe:
        result = pipe.search("рецепт борща со свёклой", "demo", k=3)
    assert (result.candidates, result.dropped) == (0, {"min_similarity": result.retrieved})
    assert len(result.hits) == 3
    assert all("rerank" not in h.stage_scores for h in result.hits)


class Reverse:
    """Scores the last document highest."""

    name = "reverse"

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        scores = tuple(float(i) for i in range(len(documents)))
        return RerankResponse(scores, Usage.free(len(documents), 0.0), scale="logits")


def test_agreement_is_the_share_of_the_reranked_top_10_in_the_first_stage_top_50() -> None:
    cands = [cand(i, 1.0 / (i + 1), f"t{i}") for i in range(60)]
    stage = run_sync(lambda: RerankStage(Reverse(), 10).run("q", cands))
    # The reversed top 10 are first-stage ranks 59..50: none within the first 50.
    assert reranker_agreement(cands, stage.hits, "reverse") == 0.0
    assert reranker_agreement(cands[:AGREE_WITHIN], stage.hits[:0], "reverse") is None
    shifted = run_sync(lambda: RerankStage(Reverse(), 10).run("q", cands[:55]))
    assert reranker_agreement(cands, shifted.hits, "reverse") == pytest.approx(0.5)  # ranks 54..45
    assert reranker_agreement(cands, stage.hits, "identity") is None


def test_a_search_reports_its_agreement(course: Pipeline, tmp_path: Path) -> None:
    with Pipeline(
        Settings(data_dir=tmp_path),
        dense=course.dense,
        sparse=course.sparse,
        store=course.store,
        reranker=Reverse(),
    ) as pipe:
        assert pipe.search(QUESTION, "demo").agreement == 1.0  # 20 candidates: all within the first 50
    assert course.search(QUESTION, "demo").agreement is None  # identity reranks nothing


def test_a_search_may_ask_for_its_own_threshold(course: Pipeline, tmp_path: Path) -> None:
    with over(course, tmp_path) as pipe, pytest.raises(InputError, match="needs a calibration of identity"):
        pipe.search(QUESTION, "demo", min_relevance=0.5)
    LINEAR.write(tmp_path / "calibration")
    with over(course, tmp_path) as pipe:
        strict = pipe.search(QUESTION, "demo", k=10, min_relevance=0.5)
        plain = pipe.search(QUESTION, "demo", k=10)
    assert len(strict.hits) == sum(1 for h in plain.hits if h.score >= 0.2) < len(plain.hits)
    assert "relevance" not in plain.hits[0].stage_scores
