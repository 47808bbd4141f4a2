"""One retry policy for every network adapter (rerank providers, TEI, a Qdrant server): how many tries, how
long to wait between them, and a server's `Retry-After` honoured.

The adapters decide what is worth retrying (their protocols differ); how long to wait is decided here, so
they no longer disagree on jitter, caps or whether a server's own answer counts.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

from leanrank.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`max_attempts` bounds the total tries; waits grow from `backoff_s` doubling, capped at `max_wait_s`.

    Jitter (each wait drawn from [½, 1] of the computed one) spreads the retries of concurrent callers so
    they do not hit a recovering server in lockstep; a `Retry-After` from the server replaces the computed
    wait (still capped). Raises `ConfigError` for a bound that cannot work.
    """

    max_attempts: int = 4
    backoff_s: float = 0.5
    max_wait_s: float = 20.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.backoff_s < 0 or self.max_wait_s < 0:
            raise ConfigError("max_attempts must be positive, backoff_s and max_wait_s not negative")

    def wait_s(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to sleep before retry number `attempt` (1-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_wait_s)
        return min(self.backoff_s * 2.0 ** (attempt - 1), self.max_wait_s) * random.uniform(0.5, 1.0)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` (RFC 9110 §10.2.3) as seconds from now: a number of seconds or an HTTP date; None when
    absent or unreadable. `headers` must look names up case-insensitively (httpx's and aiohttp's do)."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)
