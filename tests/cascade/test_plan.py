"""The cascade between retrieval and the paid reranker: adaptive depth, dedup, gate and trimming, in order."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from leanrank.cascade.plan import Cascade, adaptive_depth
from leanrank.encode.bm25 import Bm25Encoder
from leanrank.index.base import Candidate
from leanrank.rerank.base import RerankResponse, Usage
from leanrank.settings import CascadeSettings, Settings
from leanrank.types import Chunk, Lang


def words(text: str) -> int:
    return len(text.split())


def cand(
    i: int, fused: float, text: str, lang: Lang = "en", vector: Sequence[float] | None = None
) -> Candidate:
    chunk = Chunk("c", f"s{i}", 0, text, 0, len(text), (), lang, f"h{i}", "f", words(text))
    vec = None if vector is None else np.asarray(vector, dtype=np.float32)
    return Candidate(f"id{i}", chunk, fused, None, None, None, None, vec)


LOOP = "A while loop repeats its body while the condition is true. It checks the condition first."
LOOP_MORE = LOOP + " After the loop the program goes on."
FILES = "The open function returns a file object. Mode r opens the file for reading only."
LOOP_RU = "Цикл while повторяет тело, пока условие истинно. Условие проверяется перед итерацией."


def test_adaptive_depth_by_hand() -> None:
    # Scores 1.0, 0.7, 0.45, 0.4: with ratio 0.5 two are above 0.5; min_depth raises it to 3.
    cands = [cand(i, s, "x") for i, s in enumerate([1.0, 0.7, 0.45, 0.4])]
    assert adaptive_depth(cands, 0.5, 1) == 2
    assert adaptive_depth(cands, 0.5, 3) == 3
    assert adaptive_depth(cands, 0.0, 1) == 4  # ratio 0: no cut
    assert adaptive_depth(cands, 0.5, 10) == 4  # never more than there are
    assert adaptive_depth([], 0.5, 3) == 0


@pytest.fixture(scope="module")
def bm25() -> Bm25Encoder:
    return Bm25Encoder()


async def test_off_sends_every_candidate_whole(bm25: Bm25Encoder) -> None:
    cascade = Cascade(CascadeSettings(preset="off"), count=words, sparse=bm25)
    cands = [cand(0, 1.0, LOOP), cand(1, 0.5, FILES)]
    selection = await cascade.select("how does a while loop work", cands)
    assert [s.candidate.chunk_id for s in selection.sent] == ["id0", "id1"]
    assert [(s.text, s.start, s.end, s.trimmed) for s in selection.sent] == [
        (LOOP, 0, len(LOOP), False),
        (FILES, 0, len(FILES), False),
    ]
    assert selection.tokens == words(LOOP) + words(FILES)
    assert selection.dropped == {"depth": 0}
    assert not cascade.needs_vectors


async def test_near_duplicates_and_translations_are_paid_once(bm25: Bm25Encoder) -> None:
    settings = CascadeSettings(preset="off", near_dup=0.8, cross_lingual=0.9)
    cascade = Cascade(settings, count=words, sparse=bm25)
    assert cascade.needs_vectors
    cands = [
        cand(0, 1.0, LOOP_MORE, vector=[1, 0, 0]),
        cand(1, 0.9, LOOP, vector=[1, 0, 0]),  # inside the first: dropped
        cand(2, 0.8, FILES, vector=[0, 1, 0]),
        cand(3, 0.7, LOOP_RU, "ru", vector=[0.96, 0, 0.28]),  # translation of the first
    ]
    ru = await cascade.select("как работает цикл while", cands)
    assert [s.candidate.chunk_id for s in ru.sent] == ["id3", "id2"]  # the Russian twin takes its place
    en = await cascade.select("how does a while loop work", cands)
    assert [s.candidate.chunk_id for s in en.sent] == ["id0", "id2"]
    assert en.dropped == {"depth": 0, "near_dup": 2}


async def test_trimming_sends_the_best_window_with_offsets(bm25: Bm25Encoder) -> None:
    cascade = Cascade(CascadeSettings(preset="off", trim_tokens=12), count=words, sparse=bm25)
    (sent,) = (await cascade.select("which mode opens a file for reading", [cand(0, 1.0, FILES)])).sent
    assert sent.text == "Mode r opens the file for reading only."
    assert FILES[sent.start : sent.end] == sent.text
    assert sent.tokens == 8
    assert sent.trimmed


class Lengths:
    """A gate that prefers shorter documents: easy to check by hand."""

    name = "lengths"

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        return RerankResponse(tuple(-float(len(d)) for d in documents), Usage.free(len(documents), 0.0))


async def test_gate_passes_on_its_best(bm25: Bm25Encoder) -> None:
    settings = CascadeSettings(preset="off", gate="lengths", gate_keep=2)
    cascade = Cascade(settings, count=words, sparse=bm25, gate=Lengths())
    cands = [cand(0, 1.0, LOOP_MORE), cand(1, 0.9, FILES), cand(2, 0.8, "Short text here.")]
    selection = await cascade.select("anything", cands)
    assert [s.candidate.chunk_id for s in selection.sent] == ["id2", "id1"]
    assert selection.dropped == {"depth": 0, "gate": 1}


async def test_adaptive_cut_runs_first(bm25: Bm25Encoder) -> None:
    settings = CascadeSettings(preset="off", adaptive=True, keep_ratio=0.5, min_depth=1)
    cascade = Cascade(settings, count=words, sparse=bm25)
    cands = [cand(0, 1.0, LOOP), cand(1, 0.6, FILES), cand(2, 0.3, LOOP_RU, "ru")]
    selection = await cascade.select("while loop", cands)
    assert [s.candidate.chunk_id for s in selection.sent] == ["id0", "id1"]
    assert selection.dropped == {"depth": 1}
    assert selection.retrieved == 3


async def test_a_cut_left_short_by_collapse_is_refilled_up_to_min_depth(bm25: Bm25Encoder) -> None:
    settings = CascadeSettings(preset="off", adaptive=True, keep_ratio=0.5, min_depth=3, near_dup=0.8)
    cascade = Cascade(settings, count=words, sparse=bm25)
    cands = [
        cand(0, 1.0, LOOP_MORE),
        cand(1, 0.9, LOOP),  # the cut is these three; two are inside the first
        cand(2, 0.8, LOOP),
        cand(3, 0.1, FILES),  # refilled
        cand(4, 0.05, LOOP),  # below the cut, yet a duplicate of a kept one: skipped
        cand(5, 0.04, LOOP_RU, "ru"),  # refilled: three kept
        cand(6, 0.03, "Sets keep unique items only."),
    ]
    selection = await cascade.select("while loop", cands)
    assert [s.candidate.chunk_id for s in selection.sent] == ["id0", "id3", "id5"]
    assert selection.twins == {"id1": "id0", "id2": "id0", "id4": "id0"}
    assert [c.chunk_id for c in selection.rest] == ["id6"]
    assert selection.dropped == {"depth": 1, "near_dup": 3}


def test_presets_fill_only_what_is_not_set() -> None:
    cheap = CascadeSettings(preset="cheap")
    assert cheap.adaptive
    assert cheap.trim_tokens > 0
    assert cheap.near_dup is not None
    assert CascadeSettings(preset="cheap", trim_tokens=0).trim_tokens == 0  # explicit wins
    assert CascadeSettings(preset="off") == CascadeSettings(preset="off", adaptive=False)
    with pytest.raises(ValueError, match="preset"):
        CascadeSettings.model_validate({"preset": "fastest"})


def test_preset_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEANRANK_CASCADE__PRESET", "balanced")
    monkeypatch.setenv("LEANRANK_CASCADE__TRIM_TOKENS", "40")
    cascade = Settings().cascade
    assert cascade.preset == "balanced"
    assert cascade.adaptive
    assert cascade.trim_tokens == 40
