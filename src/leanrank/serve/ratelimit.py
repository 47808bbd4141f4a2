"""Per-key rate limits: requests and estimated rerank tokens per minute, refused with 429 and Retry-After.

Counted by the `limits` library's sliding-window counter: the last full minute's count, weighted by how
much of it the trailing 60 s still cover, plus the current minute's. It is smooth at minute boundaries,
keeps two counters per key and limit, and a request of N tokens is one increment of N. Counts live in
this process by default (`memory://`: each worker counts alone, so N workers admit up to N times the
limit) or in Redis (`redis://`), shared by every worker and replica. A Redis that does not answer lets
requests through and logs it: rate limits protect the service, budgets (in the ledger) protect money.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from leanrank.errors import ConfigError
from leanrank.serve.errors import LimitExceededError, RateLimitedError
from leanrank.serve.metrics import Metrics
from leanrank.settings import RateLimitSettings, ServeSettings

_log = logging.getLogger(__name__)
_NAMESPACE = "leanrank"
_REDIS_TIMEOUT_S = 1.0  # a Redis that does not answer delays each request by at most this, then lets it pass


def _storage(url: str) -> Storage:
    """`memory://` or a `redis://` URL as the `limits` asyncio storage (Redis through redis-py)."""
    if url == "memory://":
        store = storage_from_string("async+memory://")
    else:
        store = storage_from_string(
            f"async+{url}",
            implementation="redispy",
            wrap_exceptions=True,
            socket_connect_timeout=_REDIS_TIMEOUT_S,
            socket_timeout=_REDIS_TIMEOUT_S,
        )
    assert isinstance(store, Storage)
    return store


class RateLimits:
    """The configured per-key limits; with no rules every call is a no-op."""

    def __init__(self, rules: Sequence[RateLimitSettings], storage: str, metrics: Metrics) -> None:
        self._rules = {rule.key: rule for rule in rules}
        if len(self._rules) != len(rules):
            raise ConfigError("serve.rate_limits: a key is named in two rules")
        self._limiter = SlidingWindowCounterRateLimiter(_storage(storage)) if rules else None
        self._metrics = metrics

    @classmethod
    def from_settings(cls, settings: ServeSettings, key_ids: Sequence[str], metrics: Metrics) -> RateLimits:
        """Raises `ConfigError` for a rule naming a key that is not configured (a typo limits nobody)."""
        for rule in settings.rate_limits:
            if rule.key != "*" and rule.key not in key_ids:
                raise ConfigError(f"serve.rate_limits names the key {rule.key!r}, which is not configured")
        return cls(settings.rate_limits, settings.rate_limit_storage, metrics)

    def _rule(self, key_id: str) -> RateLimitSettings | None:
        return self._rules.get(key_id) or self._rules.get("*")

    async def request(self, key_id: str) -> None:
        """Count one request of `key_id`; `RateLimitedError` when its requests per minute are used up."""
        rule = self._rule(key_id)
        if rule is not None and rule.requests_per_minute is not None:
            await self._take(key_id, "requests", RateLimitItemPerMinute(rule.requests_per_minute), 1)

    async def tokens(self, key_id: str, tokens: int) -> None:
        """Count `tokens` of `key_id`; `RateLimitedError` when they do not fit in its tokens per minute,
        `LimitExceededError` (413) when they never could."""
        rule = self._rule(key_id)
        if rule is None or rule.tokens_per_minute is None or tokens <= 0:
            return
        if tokens > rule.tokens_per_minute:
            what = f"estimated tokens of one request, against the tokens per minute of key {key_id!r}"
            raise LimitExceededError("rate_limits", tokens, rule.tokens_per_minute, what)
        await self._take(key_id, "tokens", RateLimitItemPerMinute(rule.tokens_per_minute), tokens)

    async def _take(self, key_id: str, kind: str, item: RateLimitItem, cost: int) -> None:
        assert self._limiter is not None
        try:
            if await self._limiter.hit(item, _NAMESPACE, kind, key_id, cost=cost):
                return
            stats = await self._limiter.get_window_stats(item, _NAMESPACE, kind, key_id)
        except StorageError as exc:
            _log.warning("rate limit storage failed, %s of key %s let through: %s", kind, key_id, exc)
            return
        self._metrics.rate_limited.labels(key_id, kind).inc()
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimitedError(
            f"key {key_id!r} used its {item.amount} {kind} per minute (serve.rate_limits); retry in "
            f"{retry_after} s",
            retry_after,
        )
