"""The score cache: repeated questions are free, changed text misses, a broken cache only slows down."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from leanrank.rerank.base import RerankResponse, Usage
from leanrank.rerank.cache import (
    CachedReranker,
    RedisScoreCache,
    ScoreCache,
    SqliteScoreCache,
    normalize_query,
    score_key,
)

REDIS_URL = "redis://127.0.0.1:6379/0"


class Counting:
    """Scores a document by its length and bills one token per character it was sent."""

    def __init__(self, name: str = "counting") -> None:
        self.name = name
        self.sent: list[list[str]] = []

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        self.sent.append(list(documents))
        tokens = sum(len(d) for d in documents)
        usage = Usage(
            0, tokens, float(tokens), "tokens", "reported", 0.01, len(documents), cost_usd=tokens * 1e-6
        )
        return RerankResponse(tuple(float(len(d)) for d in documents), usage)


def redis_up() -> bool:
    try:
        cache = RedisScoreCache(REDIS_URL, prefix="leanrank-test-ping:")
        cache.get_many(["x"])
    except Exception:  # any failure means "no server here"
        return False
    return True


@pytest.fixture(params=["sqlite", "redis"])
def cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ScoreCache]:
    if request.param == "sqlite":
        sqlite = SqliteScoreCache(tmp_path / "cache.sqlite")
        yield sqlite
        sqlite.close()
        return
    if not redis_up():
        pytest.skip("no Redis server on 127.0.0.1:6379")
    redis = RedisScoreCache(REDIS_URL, prefix=f"leanrank-test-{uuid.uuid4().hex}:")
    yield redis
    redis.clear()
    redis.close()


def test_query_normalisation() -> None:
    assert normalize_query("  Что такое   ЁЛКА?? ") == "что такое елка"
    assert normalize_query("What is a loop?") == normalize_query("what is a loop")
    assert normalize_query("what is a loop") != normalize_query("what is a list")
    assert normalize_query("Что такое за\u0301мок?") == normalize_query("что такое замок")  # a stress mark


def test_keys_separate_models_queries_and_texts() -> None:
    base = score_key("m", "q", "doc")
    assert score_key("m", "Q?", "doc") == base
    assert (
        len({base, score_key("m2", "q", "doc"), score_key("m", "q2", "doc"), score_key("m", "q", "doc.")})
        == 4
    )


def test_round_trip(cache: ScoreCache) -> None:
    cache.put_many({"a": 0.25, "b": -1.5})
    assert cache.get_many(["a", "b", "c"]) == {"a": 0.25, "b": -1.5}
    cache.clear()
    assert cache.get_many(["a"]) == {}


async def test_a_repeated_question_is_free(cache: ScoreCache) -> None:
    inner = Counting()
    model = CachedReranker(inner, cache)
    docs = ["short", "a longer text", "mid text"]
    first = await model.rerank("What is a loop?", docs)
    again = await model.rerank("what is a loop", docs)
    assert again.scores == first.scores == (5.0, 13.0, 8.0)
    assert len(inner.sent) == 1
    assert again.usage.cache_hits == 3
    assert again.usage.billed_units == 0
    assert again.usage.cost_usd == 0.0
    assert again.served_by == "cache"


async def test_only_misses_are_sent_and_billed(cache: ScoreCache) -> None:
    inner = Counting()
    model = CachedReranker(inner, cache)
    await model.rerank("q", ["one", "two"])
    response = await model.rerank("q", ["two", "three", "one"])
    assert inner.sent[-1] == ["three"]
    assert response.scores == (3.0, 5.0, 3.0)
    assert response.usage.cache_hits == 2
    assert response.usage.billed_units == len("three")


async def test_changed_text_and_other_models_miss(cache: ScoreCache) -> None:
    inner, other = Counting("model-a"), Counting("model-b")
    await CachedReranker(inner, cache).rerank("q", ["text"])
    await CachedReranker(inner, cache).rerank("q", ["text, edited"])
    await CachedReranker(other, cache).rerank("q", ["text"])
    assert inner.sent == [["text"], ["text, edited"]]
    assert other.sent == [["text"]]


async def test_entries_expire(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_000.0]
    monkeypatch.setattr("leanrank.rerank.cache.time.time", lambda: clock[0])
    inner = Counting()
    model = CachedReranker(inner, SqliteScoreCache(tmp_path / "c.sqlite", ttl_s=60))
    await model.rerank("q", ["doc"])
    clock[0] += 59
    await model.rerank("q", ["doc"])
    clock[0] += 2
    await model.rerank("q", ["doc"])
    assert len(inner.sent) == 2


async def test_two_machines_share_hits_through_redis() -> None:
    if not redis_up():
        pytest.skip("no Redis server on 127.0.0.1:6379")
    prefix = f"leanrank-test-{uuid.uuid4().hex}:"
    one, two = RedisScoreCache(REDIS_URL, prefix=prefix), RedisScoreCache(REDIS_URL, prefix=prefix)
    try:
        inner_one, inner_two = Counting(), Counting()
        await CachedReranker(inner_one, one).rerank("q", ["doc"])
        response = await CachedReranker(inner_two, two).rerank("q", ["doc"])
        assert inner_two.sent == []
        assert response.usage.cache_hits == 1
    finally:
        one.clear()
        one.close()
        two.close()


async def test_a_broken_cache_degrades_to_the_backend() -> None:
    inner = Counting()
    dead = RedisScoreCache("redis://127.0.0.1:1/0")
    response = await CachedReranker(inner, dead).rerank("q", ["doc", "other"])
    assert response.scores == (3.0, 5.0)
    assert response.usage.cache_hits == 0
    assert inner.sent == [["doc", "other"]]


def test_settings_choose_the_cache(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from leanrank.rerank.cache import with_cache
    from leanrank.rerank.identity import IdentityReranker
    from leanrank.settings import Settings

    inner = Counting()
    assert with_cache(inner, "off", tmp_path, 60) is inner
    cached = with_cache(inner, "sqlite", tmp_path, 60)
    assert isinstance(cached, CachedReranker)
    assert (tmp_path / "score-cache.sqlite").exists()
    assert isinstance(with_cache(inner, REDIS_URL, tmp_path, 60), CachedReranker)
    identity = IdentityReranker()  # its scores repeat the input order: nothing to cache
    assert with_cache(identity, "sqlite", tmp_path, 60) is identity
    with pytest.raises(ValidationError, match="pattern"):
        Settings(rerank={"cache": "memcached://x"})
