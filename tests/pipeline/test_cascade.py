"""The cascade in the real pipeline: fewer candidates sent, the rest still listed, answers reused and
invalidated, every reuse recorded as a free call."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from leanrank.cost.ledger import Ledger
from leanrank.cost.period import Period
from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.pipeline import RESULT_CACHE, Pipeline
from leanrank.settings import Settings
from tests.conftest import SAMPLE_COURSE

QUESTION = "Что такое цикл while?"


def month() -> Period:
    return Period.parse(datetime.now(UTC).strftime("%Y-%m"))


def test_default_cascade_sends_fewer_and_lists_the_rest(
    tmp_path: Path, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> None:
    with Pipeline(Settings(data_dir=tmp_path), dense=e5, sparse=bm25) as pipe:
        pipe.ingest(SAMPLE_COURSE, "py")
        result = pipe.search(QUESTION, "py", k=20)
    assert pipe.settings.cascade.preset == "balanced"
    assert result.retrieved == len(result.sent) + sum(result.dropped.values())
    assert len(result.sent) < result.retrieved  # the adaptive cut sent fewer than the first stage found
    assert result.sent_tokens == sum(s.candidate.chunk.tokens for s in result.sent)  # whole chunks
    assert len(result.hits) == min(20, result.retrieved - result.dropped.get("near_dup", 0))
    sent = {s.candidate.chunk_id for s in result.sent}
    reranked = [h for h in result.hits if h.chunk_id in sent]
    assert len(reranked) == len(result.sent)
    assert result.hits[: len(reranked)] == reranked  # the cut candidates follow the reranked ones
    # identity (the default) reranks nothing: every hit keeps its fusion score, none has a rerank score.
    assert all(h.score == h.stage_scores["fusion"] and "rerank" not in h.stage_scores for h in result.hits)


def test_repeated_questions_are_answered_from_the_result_cache(
    tmp_path: Path, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> None:
    course = tmp_path / "course"
    shutil.copytree(SAMPLE_COURSE, course)
    settings = Settings(data_dir=tmp_path / "data", cascade={"preset": "balanced", "result_cache": "sqlite"})
    with Pipeline(settings, dense=e5, sparse=bm25) as pipe:
        pipe.ingest(course, "py")
        first = pipe.search(QUESTION, "py")
        again = pipe.search("  что такое цикл WHILE ", "py")  # same words, another surface
        other = pipe.search("How do I open a file?", "py")
        assert first.served_by == "identity"
        assert other.served_by == "identity"
        assert again.served_by == RESULT_CACHE
        assert again.hits == first.hits
        assert again.cost_usd == 0.0
        assert again.usage.cache_hits == len(first.hits)
        # Re-ingesting a changed file drops the course's cached answers.
        lesson = sorted(course.rglob("*.md"))[0]
        lesson.write_text(
            lesson.read_text(encoding="utf-8") + "\n\nНовый абзац о циклах.\n", encoding="utf-8"
        )
        assert pipe.ingest(course, "py").count("updated") == 1
        after = pipe.search(QUESTION, "py")
        assert after.served_by == "identity"
        with Ledger(f"sqlite:///{settings.data_dir / 'ledger.sqlite'}") as ledger:
            totals = {t.key: t for t in ledger.totals("backend", month())}
    assert totals[RESULT_CACHE].calls == 1
    assert totals[RESULT_CACHE].cost_usd == 0.0


def test_a_strict_threshold_reuses_only_identical_wording(
    tmp_path: Path, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> None:
    cascade = {"result_cache": "sqlite", "result_similarity": 1.0}
    with Pipeline(Settings(data_dir=tmp_path, cascade=cascade), dense=e5, sparse=bm25) as pipe:
        pipe.ingest(SAMPLE_COURSE, "py")
        pipe.search(QUESTION, "py")
        assert pipe.search(QUESTION, "py").served_by == RESULT_CACHE
        assert pipe.search("Скажите, что такое цикл while?", "py").served_by == "identity"
        assert pipe.search(QUESTION, "py", k=3).served_by == "identity"  # another k: another scope


def test_a_store_handed_in_stays_open_for_its_owner(
    tmp_path: Path, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> None:
    with Pipeline(Settings(data_dir=tmp_path), dense=e5, sparse=bm25) as owner:
        owner.ingest(SAMPLE_COURSE, "py")
        with Pipeline(Settings(data_dir=tmp_path / "other"), dense=e5, sparse=bm25, store=owner.store) as run:
            assert run.search(QUESTION, "py").hits
        assert owner.search(QUESTION, "py").hits  # closing `run` left the shared store usable


def test_passages_whose_code_differs_are_both_found(
    tmp_path: Path, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> None:
    course = tmp_path / "course"
    course.mkdir()
    strict = "In JavaScript use === to compare values without type coercion."
    (course / "strict.md").write_text(f"# Strict\n\n{strict}\n", encoding="utf-8")
    (course / "loose.md").write_text(f"# Strict\n\n{strict.replace('===', '==')}\n", encoding="utf-8")
    with Pipeline(Settings(data_dir=tmp_path / "data"), dense=e5, sparse=bm25) as pipe:
        pipe.ingest(course, "js")
        result = pipe.search("compare values in JavaScript", "js", k=5)
    assert sorted(h.chunk.source for h in result.hits) == ["loose.md", "strict.md"]
    assert result.dropped.get("near_dup", 0) == 0
