"""Learned sparse vectors end to end: the tiny bge-m3 checkpoint with a sparse head weighing every token 1
(`tiny_bge_m3_dir`), so a query's sparse score against a chunk is the number of distinct ordinary tokens
they share, through ingest and search on the embedded store and on qdrant-client's local mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from leanrank.encode.bge_m3 import BgeM3Encoder, BgeM3Lexical
from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.errors import ConfigError
from leanrank.pipeline import Pipeline
from leanrank.settings import Settings, StoreSettings

pytest.importorskip("transformers")

DOCS = {
    "cat.md": "The cat sleeps on the warm windowsill.",
    "exam.md": "The exam is written and lasts two hours.",
    "homework.md": "The homework is due on Friday.",
}
QUERY = "The cat sleeps on the warm windowsill"
# Distinct tokens shared with QUERY (▁The ▁cat ▁sleeps ▁on ▁the ▁warm ▁windowsill): all seven of cat.md,
# ▁The and ▁on of homework.md, ▁The of exam.md (the indexed context, the file's name, adds none).
SHARED = {"cat.md": 7.0, "homework.md": 2.0, "exam.md": 1.0}


@pytest.fixture
def course(tmp_path: Path) -> Path:
    folder = tmp_path / "course"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def settings(tmp_path: Path, model: Path, store: str, **extra: Any) -> Settings:
    url = "edge:" if store == "edge" else f"qdrant:{tmp_path / 'qdrant'}"
    return Settings(
        data_dir=tmp_path / "data",
        encoder=f"bge-m3:{model}",
        sparse="bge-m3",
        store=StoreSettings(url=url),
        **extra,
    )


@pytest.mark.parametrize("store", ["edge", "qdrant"])
def test_ingest_and_search_rank_the_sparse_list_by_the_dot_product(
    store: str, tmp_path: Path, course: Path, tiny_bge_m3_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forwarded: list[str] = []
    forward = BgeM3Encoder._forward

    def counting(self: BgeM3Encoder, state: Any, texts: list[str], *, lexical: bool) -> Any:
        forwarded.extend(texts)
        return forward(self, state, texts, lexical=lexical)

    monkeypatch.setattr(BgeM3Encoder, "_forward", counting)
    with Pipeline(settings(tmp_path, tiny_bge_m3_dir, store)) as pipe:
        assert isinstance(pipe.sparse, BgeM3Lexical)
        assert isinstance(pipe.cascade._sparse, Bm25Encoder)  # windows by stemmed words, no model pass
        report = pipe.ingest(course, "c")
        assert report.chunks == 3
        indexed = sorted(c.indexed_text for c in pipe.store.chunks("c"))  # the file name is the context
        assert sorted(forwarded) == indexed  # each chunk through the model once, for both vectors
        forwarded.clear()
        hybrid = pipe.search(QUERY, "c", k=3)
        assert forwarded == [QUERY]  # the query too: one pass for its dense and sparse vectors
        assert {h.chunk.source: h.stage_scores["bm25"] for h in hybrid.hits} == SHARED
    alone = settings(tmp_path, tiny_bge_m3_dir, store, retrieve={"mode": "sparse"})
    with Pipeline(alone) as pipe:
        hits = pipe.search(QUERY, "c", k=3).hits
        assert [(h.chunk.source, h.stage_scores["bm25"]) for h in hits] == list(SHARED.items())


def test_an_index_built_with_bm25_refuses_learned_sparse(tmp_path: Path, tiny_bge_m3_dir: Path) -> None:
    with Pipeline(settings(tmp_path, tiny_bge_m3_dir, "edge").model_copy(update={"sparse": "bm25"})) as pipe:
        assert isinstance(pipe.sparse, Bm25Encoder)
    with pytest.raises(
        ConfigError, match=r"built with sparse 'bm25', settings ask for sparse 'bge-m3': set them back"
    ):
        Pipeline(settings(tmp_path, tiny_bge_m3_dir, "edge"))


def test_learned_sparse_needs_the_bge_m3_encoder(tmp_path: Path, e5: E5SmallEncoder) -> None:
    with pytest.raises(ConfigError, match="sparse = 'bge-m3' takes the lexical weights"):
        Pipeline(Settings(data_dir=tmp_path, sparse="bge-m3"), dense=e5)
