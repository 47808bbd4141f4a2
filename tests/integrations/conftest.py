"""A Cohere-wire fake on loopback, so the adapters are tested through a real HTTP reranker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.rerank.servers import FakeProvider

QUERY = "как считается стоимость rerank"
TEXTS = ["первый фрагмент курса", "second passage about cost", "третий", "fourth one", "пятый и последний"]


@pytest.fixture
def cohere() -> Iterator[FakeProvider]:
    fake = FakeProvider("cohere")
    yield fake
    fake.close()
