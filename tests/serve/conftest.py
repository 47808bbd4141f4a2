"""Keys of every scope, settings that trust them, and a small two-course index shared by the service tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.pipeline import Pipeline
from leanrank.serve import new_key
from leanrank.settings import CostSettings, ServeSettings, Settings
from tests.conftest import make_pipeline
from tests.rerank.servers import MODEL

ADMIN_KEY, ADMIN_ENTRY = new_key("ops", "admin")
DEMO_KEY, DEMO_ENTRY = new_key("teacher-demo", "demo")
COOKING_KEY, COOKING_ENTRY = new_key("teacher-cooking", "cooking")
BOTH_KEY, BOTH_ENTRY = new_key("dean", "demo,cooking")
ENTRIES = [ADMIN_ENTRY, DEMO_ENTRY, COOKING_ENTRY, BOTH_ENTRY]

DEMO_TEXT = (
    "# Циклы\n\nЦикл for перебирает элементы последовательности по одному.\n\n"
    "# Functions\n\nA function is defined with the def keyword and returns a value with return.\n"
)
COOKING_TEXT = (
    "# Борщ\n\nСвёклу варят отдельно, потом добавляют в бульон.\n\n"
    "# Pasta\n\nBoil water, add salt, cook the pasta for nine minutes.\n"
)

COURSES = {"demo": ("lesson.md", DEMO_TEXT), "cooking": ("recipes.md", COOKING_TEXT)}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def settings_for(data_dir: Path, **serve: Any) -> Settings:
    return Settings(data_dir=data_dir, serve=ServeSettings(api_keys=ENTRIES, **serve))


PRICE = f"""provider = "cohere"

[[price]]
model = "{MODEL}"
unit = "per_1k_search_units"
price = 2.00
currency = "USD"
as_of = 2026-11-22
source = "https://example.test/pricing"  # $0.002 a request of up to 100 documents
verified = true
"""


def priced(tmp_path: Path, **cost: Any) -> Settings:
    """Service settings where the fake provider's model costs $2 per 1,000 search units ($0.002 a request)."""
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICE, encoding="utf-8")
    settings = settings_for(tmp_path / "data")
    return settings.model_copy(update={"cost": CostSettings(pricing_files=[prices], **cost)})


def small_index(data_dir: Path, e5: E5SmallEncoder, bm25: Bm25Encoder, files: Path) -> Pipeline:
    """Two courses of one short file each: enough to search, fast to build (embedding is the slow part)."""
    pipe = make_pipeline(data_dir, e5, bm25)
    for course, (name, text) in COURSES.items():
        (files / course).mkdir()
        (files / course / name).write_text(text, encoding="utf-8")
        pipe.ingest(files / course, course)
    return pipe


@pytest.fixture(scope="package")
def index(
    tmp_path_factory: pytest.TempPathFactory, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> Iterator[Pipeline]:
    pipe = small_index(tmp_path_factory.mktemp("index"), e5, bm25, tmp_path_factory.mktemp("files"))
    yield pipe
    pipe.close()
