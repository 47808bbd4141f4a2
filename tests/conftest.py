"""Shared fixtures: the real default encoder is loaded once per session (it is the slow part)."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.pipeline import Pipeline
from leanrank.settings import Settings

SAMPLE_COURSE = Path(str(resources.files("leanrank") / "sample_course"))


@pytest.fixture(scope="session")
def e5() -> E5SmallEncoder:
    return E5SmallEncoder()


@pytest.fixture(scope="session")
def bm25() -> Bm25Encoder:
    return Bm25Encoder()


@pytest.fixture(scope="session")
def tiny_xlmr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight XLM-R checkpoint laid out like bge-m3 (no sparse head); skipped without the `torch`
    extra. Models are built at test time because the Hugging Face hub is out of reach."""
    pytest.importorskip("transformers")
    from tests.models import build_tiny_xlmr

    return build_tiny_xlmr(tmp_path_factory.mktemp("tiny-xlmr"))


@pytest.fixture(scope="session")
def tiny_bge_m3_dir(tiny_xlmr_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint with a sparse head weighing every token 1 (weight 0, bias 1), so a query's
    learned-sparse score against a passage is the number of distinct tokens they share."""
    from tests.models import add_sparse_head

    path = tmp_path_factory.mktemp("tiny-bge-m3") / "model"
    shutil.copytree(tiny_xlmr_dir, path)
    return add_sparse_head(path, [0.0] * 32, 1.0)


@pytest.fixture(scope="session")
def sample_questions() -> list[dict[str, Any]]:
    return list(
        json.loads((Path(str(resources.files("leanrank"))) / "sample_questions.json").read_text("utf-8"))
    )


def make_pipeline(data_dir: Path, e5: E5SmallEncoder, bm25: Bm25Encoder, **settings: Any) -> Pipeline:
    return Pipeline(Settings(data_dir=data_dir, **settings), dense=e5, sparse=bm25)
