"""A score cache in front of any reranker: students ask the same questions, and a score never changes.

A cross-encoder's score is a pure function of (model, query, document), so it is cached under exactly that:
the backend's name, the normalised query and a hash of the document text. A re-ingested chunk whose text
changed has a new hash and misses by construction; entries also expire after a TTL, so a provider's model
update behind an unchanged name cannot serve stale scores forever. Only the misses are sent to the backend
and billed; the usage record counts the hits.

A hit is free, so it is observable: keys are scoped (`score_scope`, set per tenant by the meter), or one
tenant could learn which (query, document) pairs another asked. Scopes share nothing, in SQLite or Redis.

SQLite (one file, any number of processes on one machine) is the default; Redis shares hits between
machines. Only this module imports `redis`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

from leanrank.encode.bm25 import normalise
from leanrank.errors import BackendError, ConfigError, DependencyError
from leanrank.rerank.base import Reranker, RerankResponse, Scale, Usage
from leanrank.rerank.fallback import FallbackReranker
from leanrank.rerank.guard import GuardedReranker, guard
from leanrank.rerank.identity import IdentityReranker

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
_SPACE = re.compile(r"\s+")
_EDGE_PUNCT = "?!.,;:¿¡…"
_SCOPE: ContextVar[str] = ContextVar("leanrank_score_cache_scope", default="")
_CACHED_SCALES: tuple[Scale, ...] = ("probabilities", "logits")


@contextmanager
def score_scope(scope: str) -> Iterator[None]:
    """Cache the scores computed inside the block under `scope` (a tenant), apart from every other scope."""
    token = _SCOPE.set(scope)
    try:
        yield
    finally:
        _SCOPE.reset(token)


def normalize_query(query: str) -> str:
    """Case, width, whitespace, trailing punctuation and what BM25 folds (`bm25.normalise`: ё/е, stress marks,
    soft hyphens) do not change what a student asked."""
    text = normalise(query).casefold()
    return _SPACE.sub(" ", text).strip().strip(_EDGE_PUNCT).strip()


def score_key(model: str, query: str, document: str, scope: str = "") -> str:
    """The cache key of one (model, normalised query, document text) score within `scope`."""
    doc = hashlib.sha256(document.encode()).hexdigest()
    return hashlib.sha256(f"{scope}\x00{model}\x00{normalize_query(query)}\x00{doc}".encode()).hexdigest()


class ScoreCache(Protocol):
    """Scores by key; a missing or expired key is simply absent from `get_many`'s answer."""

    def get_many(self, keys: Sequence[str]) -> dict[str, float]: ...

    def put_many(self, scores: Mapping[str, float]) -> None: ...

    def clear(self) -> None: ...


class SqliteScoreCache:
    """WAL-mode SQLite: readers never block the writer, and several processes may share the file."""

    def __init__(self, path: Path, ttl_s: float = 30 * 86_400) -> None:
        if ttl_s <= 0:
            raise ConfigError(f"cache ttl must be positive, got {ttl_s}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a lost cache write costs one re-score, not data
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS scores"
            " (key TEXT PRIMARY KEY, score REAL NOT NULL, expires REAL NOT NULL)"
        )

    def get_many(self, keys: Sequence[str]) -> dict[str, float]:
        if not keys:
            return {}
        now = time.time()
        found: dict[str, float] = {}
        with self._lock:
            for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                part = list(keys[start : start + 500])
                marks = ",".join("?" * len(part))
                rows = self._db.execute(
                    f"SELECT key, score FROM scores WHERE expires > ? AND key IN ({marks})",
                    [now, *part],
                )
                found.update(rows.fetchall())
        return found

    def put_many(self, scores: Mapping[str, float]) -> None:
        expires = time.time() + self._ttl_s
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO scores (key, score, expires) VALUES (?, ?, ?)",
                [(k, v, expires) for k, v in scores.items()],
            )
            self._db.execute("DELETE FROM scores WHERE expires <= ?", (time.time(),))
            self._db.execute("COMMIT")

    def clear(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM scores")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def redis_client(url: str) -> Any:
    """A Redis client with short timeouts (a cache that hangs is worse than none); shared by both caches."""
    try:
        import redis
    except ImportError as exc:
        raise DependencyError("redis", "redis") from exc
    return redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)


class RedisScoreCache:
    """Redis with a TTL per key, under a namespace prefix so `clear` touches only leanrank's keys."""

    def __init__(self, url: str, ttl_s: float = 30 * 86_400, prefix: str = "leanrank:score:") -> None:
        if ttl_s <= 0:
            raise ConfigError(f"cache ttl must be positive, got {ttl_s}")
        self._ttl_ms = int(ttl_s * 1000)
        self._prefix = prefix
        self._client: Any = redis_client(url)

    def get_many(self, keys: Sequence[str]) -> dict[str, float]:
        if not keys:
            return {}
        values = self._client.mget([self._prefix + k for k in keys])
        return {k: float(v) for k, v in zip(keys, values, strict=True) if v is not None}

    def put_many(self, scores: Mapping[str, float]) -> None:
        with self._client.pipeline(transaction=False) as pipe:
            for key, score in scores.items():
                pipe.set(self._prefix + key, repr(score), px=self._ttl_ms)
            pipe.execute()

    def clear(self) -> None:
        for key in self._client.scan_iter(match=self._prefix + "*", count=1000):
            self._client.delete(key)

    def close(self) -> None:
        self._client.close()


class CachedReranker:
    """Serves cached scores and sends only the misses to `inner`; the usage record is the misses' call.

    Only what `inner` itself scored is kept: not an answer another backend gave for it (`served_by`), not
    one that depends on the input order (scale "rank": identity), not a non-finite score. Entries are keyed
    by the backend's name and the scale it declared, so a hit comes back on the scale it was scored on.
    `usage.cache_hits` counts the documents served from the cache, so the ledger and metrics can show what
    the cache saved. A cache that fails (Redis down) degrades to a pass-through rather than failing search.
    """

    def __init__(self, inner: Reranker, cache: ScoreCache) -> None:
        self.inner = inner
        self.cache = cache

    @property
    def name(self) -> str:
        return self.inner.name

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        t0 = time.perf_counter()
        keys = {scale: [self._key(scale, query, doc) for doc in documents] for scale in _CACHED_SCALES}
        found: dict[str, float] = _safe(
            lambda: self.cache.get_many([k for ks in keys.values() for k in ks]), {}
        )
        # Hits on the scale most of them were scored on; the model behind a name may have been reconfigured.
        scale = max(_CACHED_SCALES, key=lambda s: sum(k in found for k in keys[s]))
        hits = {i: found[k] for i, k in enumerate(keys[scale]) if k in found}
        if len(hits) == len(documents):
            usage = replace(Usage.free(len(documents), time.perf_counter() - t0), cache_hits=len(documents))
            scores = tuple(hits[i] for i in range(len(documents)))
            return RerankResponse(scores, usage, served_by="cache", scale=scale)
        missing = [i for i in range(len(documents)) if i not in hits]
        response = await self.inner.rerank(query, [documents[i] for i in missing])
        if len(response.scores) != len(missing):
            raise BackendError(
                f"reranker {self.name} returned {len(response.scores)} scores for {len(missing)}"
            )
        if response.scale != scale and hits:  # hits on another scale cannot be merged: score them again
            hits = {}
            missing = list(range(len(documents)))
            response = await self.inner.rerank(query, documents)
        fresh = dict(zip(missing, response.scores, strict=True))
        if self._keeps(response):
            stored = {
                self._key(response.scale, query, documents[i]): s
                for i, s in fresh.items()
                if math.isfinite(s)
            }
            _safe(lambda: self.cache.put_many(stored), None)
        scores = tuple(fresh[i] if i in fresh else hits[i] for i in range(len(documents)))
        usage = replace(response.usage, cache_hits=len(hits))
        return replace(response, scores=scores, usage=usage)

    def _key(self, scale: Scale, query: str, document: str) -> str:
        return score_key(f"{self.inner.name}\x00{scale}", query, document, _SCOPE.get())

    def _keeps(self, response: RerankResponse) -> bool:
        """Scores of `inner` itself, on a relevance scale: a fallback's or an order-based answer is not."""
        return (
            response.scale in _CACHED_SCALES
            and not response.failed
            and response.served_by in (None, self.inner.name)
        )


def _safe(call: Callable[[], _T], default: _T) -> _T:
    try:
        return call()
    except Exception as exc:  # a cache failure must degrade to a miss, never fail the search
        _log.warning("score cache unavailable, scoring without it: %s", exc)
        return default


def with_cache(reranker: Reranker, spec: str, data_dir: Path, ttl_s: float) -> Reranker:
    """`reranker` with the score cache that `spec` (`rerank.cache`: off, sqlite or a Redis URL) names.

    The cache goes in front of each scoring backend, not of a chain or of the guard: a chain's links are
    cached one by one, each under its own name, and identity (which only repeats the input order) not at all.
    """
    if spec == "off":
        return reranker
    cache: ScoreCache
    if spec == "sqlite":
        cache = SqliteScoreCache(data_dir / "score-cache.sqlite", ttl_s)
    elif spec.startswith(("redis://", "rediss://")):
        cache = RedisScoreCache(spec, ttl_s)
    else:
        raise ConfigError(f"rerank.cache must be off, sqlite or a redis:// URL, got {spec!r}")
    return _cached(reranker, cache)


def _cached(reranker: Reranker, cache: ScoreCache) -> Reranker:
    if isinstance(reranker, GuardedReranker):
        return guard(_cached(reranker.inner, cache))
    if isinstance(reranker, FallbackReranker):
        return FallbackReranker([_cached(link, cache) for link in reranker.chain])
    if isinstance(reranker, IdentityReranker):
        return reranker
    return CachedReranker(reranker, cache)
