"""Shared fixtures: the real default encoder is loaded once per session (it is the slow part)."""

from __future__ import annotations

import json
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
def sample_questions() -> list[dict[str, Any]]:
    return list(
        json.loads((Path(str(resources.files("leanrank"))) / "sample_questions.json").read_text("utf-8"))
    )


def make_pipeline(data_dir: Path, e5: E5SmallEncoder, bm25: Bm25Encoder, **settings: Any) -> Pipeline:
    return Pipeline(Settings(data_dir=data_dir, **settings), dense=e5, sparse=bm25)
