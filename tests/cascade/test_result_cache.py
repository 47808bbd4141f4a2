"""The result cache: repeats and near-repeats reuse the answer, anything else misses, nothing crashes."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from leanrank.cascade.result_cache import (
    RedisResultCache,
    ResultCache,
    SqliteResultCache,
    result_cache,
    same_question,
)
from leanrank.errors import ConfigError
from leanrank.types import Chunk, Hit

REDIS_URL = "redis://127.0.0.1:6379/0"
DIM = 8


def redis_up() -> bool:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1.0).ping()
    except Exception:  # any failure means "no server here"
        return False
    return True


class Clock:
    """A hand-advanced clock, so expiry is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


Factory = Callable[..., ResultCache]


@pytest.fixture(params=["sqlite", "redis"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """Builds caches of one backend that share storage (one SQLite file, one Redis prefix) per test."""
    made: list[ResultCache] = []
    prefix = f"leanrank-test-{uuid.uuid4().hex}:"
    if request.param == "redis" and not redis_up():
        pytest.skip("no Redis server on 127.0.0.1:6379")

    def factory(**kwargs: Any) -> ResultCache:
        cache: ResultCache
        if request.param == "sqlite":
            cache = SqliteResultCache(tmp_path / "results.sqlite", **kwargs)
        else:
            cache = RedisResultCache(REDIS_URL, prefix=prefix, **kwargs)
        made.append(cache)
        return cache

    yield factory
    if request.param == "redis":
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)
        client.close()
    for cache in made:
        cache.close()


def vec(*head: float) -> np.ndarray:
    """A unit vector of DIM dimensions whose first components are `head`."""
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(head)] = head
    return v / np.linalg.norm(v)


def hits(tag: str) -> list[Hit]:
    chunk = Chunk(
        course="py",
        source=f"{tag}.vtt",
        index=3,
        text=f"Текст про {tag}, with «quotes» and \n newlines",
        start=10,
        end=52,
        heading=("Урок 1", tag),
        lang="ru",
        content_hash="c" * 16,
        file_hash="f" * 16,
        tokens=12,
        meta={"t_start": "00:01:02.500", "page": "4"},
    )
    other = Chunk("py", "b.md", 0, "b", 0, 1, (), "en", "d", "e", 1)
    return [
        Hit(f"{tag}#3", chunk, 0.1 + 0.2, {"dense": 0.8123456789012345, "rerank": -1e-7}),
        Hit("b.md#0", other, -2.5, {}),
    ]


def test_an_exact_repeat_returns_the_stored_answer(make: Factory) -> None:
    cache = make()
    cache.store("py", "ru|cfg", "Как открыть файл?", vec(1, 0.2), hits("files"))
    found = cache.lookup("py", "ru|cfg", vec(1, 0.2))
    assert found is not None
    assert found.hits == hits("files")
    assert found.query == "Как открыть файл?"
    assert found.similarity == 1.0


def test_a_near_repeat_hits_and_a_different_question_misses(make: Factory) -> None:
    cache = make(threshold=0.95)
    cache.store("py", "s", "q", vec(1, 0), hits("a"))
    near = cache.lookup("py", "s", vec(1, 0.2))  # cosine 1/sqrt(1.04) ≈ 0.981
    assert near is not None
    assert near.similarity == pytest.approx(1 / np.sqrt(1.04), abs=1e-6)
    assert cache.lookup("py", "s", vec(1, 0.4)) is None  # cosine ≈ 0.928


def test_the_most_similar_entry_wins_and_ties_go_to_the_latest(make: Factory) -> None:
    cache = make(threshold=0.9)
    cache.store("py", "s", "far", vec(1, 0.3), hits("far"))
    cache.store("py", "s", "close", vec(1, 0.1), hits("close"))
    cache.store("py", "s", "far again", vec(1, 0.3), hits("far-again"))
    best = cache.lookup("py", "s", vec(1, 0.05))
    assert best is not None
    assert best.query == "close"
    tied = cache.lookup("py", "s", vec(1, 0.3))
    assert tied is not None
    assert tied.query == "far again"


def test_other_courses_and_scopes_miss(make: Factory) -> None:
    cache = make()
    cache.store("py", "ru|cfg", "q", vec(1), hits("a"))
    assert cache.lookup("py2", "ru|cfg", vec(1)) is None
    assert cache.lookup("p", "ru|cfg", vec(1)) is None
    assert cache.lookup("py", "en|cfg", vec(1)) is None
    assert cache.lookup("py", "ru|cfg2", vec(1)) is None


def test_entries_expire(make: Factory) -> None:
    clock = Clock()
    cache = make(ttl_s=60, clock=clock)
    cache.store("py", "s", "q", vec(1), hits("a"))
    clock.now += 59
    assert cache.lookup("py", "s", vec(1)) is not None
    clock.now += 2
    assert cache.lookup("py", "s", vec(1)) is None
    cache.store("py", "s", "fresh", vec(0, 1), hits("b"))  # prunes the expired entry
    assert cache.invalidate("py") == 1


def test_invalidate_drops_only_that_course_and_counts(make: Factory) -> None:
    cache = make()
    for n in range(3):
        cache.store("py", f"scope{n % 2}", f"q{n}", vec(1, n), hits(f"h{n}"))
    cache.store("py.advanced", "scope0", "other", vec(1), hits("x"))
    cache.store("p", "scope0", "other", vec(1), hits("x"))
    assert cache.invalidate("py") == 3
    assert cache.lookup("py", "scope0", vec(1)) is None
    assert cache.lookup("py.advanced", "scope0", vec(1)) is not None
    assert cache.lookup("p", "scope0", vec(1)) is not None
    assert cache.invalidate("py") == 0


def test_a_full_scope_evicts_its_oldest_entries(make: Factory) -> None:
    cache = make(max_per_scope=2, threshold=0.99)
    for n in range(3):
        cache.store("py", "s", f"q{n}", vec(*([0.0] * n), 1.0), hits(f"h{n}"))
    cache.store("py", "other", "kept", vec(1), hits("k"))
    assert cache.lookup("py", "s", vec(1)) is None
    assert [cache.lookup("py", "s", vec(*([0.0] * n), 1.0)) is not None for n in (1, 2)] == [True, True]
    assert cache.lookup("py", "other", vec(1)) is not None
    assert cache.invalidate("py") == 3


def test_a_second_process_sees_the_entries(make: Factory) -> None:
    writer, reader = make(), make()
    writer.store("py", "s", "q", vec(1, 1), hits("shared"))
    found = reader.lookup("py", "s", vec(1, 1))
    assert found is not None
    assert found.hits == hits("shared")
    assert reader.invalidate("py") == 1
    assert writer.lookup("py", "s", vec(1, 1)) is None


def test_a_vector_of_another_dimension_misses(make: Factory) -> None:
    cache = make()
    cache.store("py", "s", "q", vec(1), hits("a"))
    other = np.zeros(DIM * 2, dtype=np.float32)
    other[0] = 1
    assert cache.lookup("py", "s", other) is None
    cache.store("py", "s", "wide", other, hits("wide"))  # a new encoder's entries live beside the old
    assert cache.lookup("py", "s", vec(1)) is not None
    assert cache.lookup("py", "s", np.zeros(DIM, dtype=np.float32)) is None  # no direction, no match


def test_a_corrupt_entry_is_a_logged_miss(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "results.sqlite"
    cache = SqliteResultCache(path)
    cache.store("py", "s", "q", vec(1), hits("a"))
    for corrupt in ('[{"chunk_id": 1}]', '["x"]', "{", "7"):
        with sqlite3.connect(path) as db:
            db.execute("UPDATE results SET hits = ?", (corrupt,))
        assert cache.lookup("py", "s", vec(1)) is None
    assert "undecodable" in caplog.text
    cache.close()


def test_a_corrupt_redis_entry_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    if not redis_up():
        pytest.skip("no Redis server on 127.0.0.1:6379")
    prefix = f"leanrank-test-{uuid.uuid4().hex}:"
    cache = RedisResultCache(REDIS_URL, prefix=prefix)
    try:
        cache.store("py", "s", "q", vec(1), hits("a"))
        key = next(iter(cache._client.scan_iter(match=prefix + "*")))
        cache._client.hset(key, "999:9e99", b"\xff not json")
        found = cache.lookup("py", "s", vec(1))
        assert found is not None
        assert found.hits == hits("a")
        assert "undecodable" in caplog.text
    finally:
        cache.invalidate("py")
        cache.close()


def test_a_dead_redis_is_a_miss_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    dead = RedisResultCache("redis://127.0.0.1:1/0")
    dead.store("py", "s", "q", vec(1), hits("a"))
    assert dead.lookup("py", "s", vec(1)) is None
    assert "unavailable" in caplog.text


def test_the_spec_chooses_the_backend(tmp_path: Path) -> None:
    assert result_cache("off", tmp_path, threshold=0.95, ttl_s=60) is None
    sqlite = result_cache("sqlite", tmp_path, threshold=0.95, ttl_s=60)
    assert sqlite is not None
    assert sqlite.name == "sqlite"
    assert (tmp_path / "result-cache.sqlite").exists()
    redis = result_cache(REDIS_URL, tmp_path, threshold=0.95, ttl_s=60)
    assert redis is not None
    assert redis.name == "redis"
    with pytest.raises(ConfigError, match="off, sqlite or a redis"):
        result_cache("memcached://x", tmp_path, threshold=0.95, ttl_s=60)
    with pytest.raises(ConfigError, match="threshold"):
        result_cache("sqlite", tmp_path, threshold=1.5, ttl_s=60)
    sqlite.close()
    redis.close()


def test_same_question_means_the_same_words_up_to_surface_and_filler() -> None:
    assert same_question("Что такое цикл while?", "  подскажите, пожалуйста, что такое цикл WHILE")
    assert same_question("Who won Super Bowl 50?", "Quick question: who won super bowl 50")
    assert same_question("When was it built?", "when was it built")
    assert not same_question("Who won Super Bowl 50?", "Who lost Super Bowl 50?")
    assert not same_question("When was it built?", "Where was it built?")
    assert not same_question("Это цикл?", "Это не цикл?")  # a negation is never filler
    assert not same_question("Tell me", "please")  # nothing left to compare
