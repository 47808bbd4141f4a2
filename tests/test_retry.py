"""The one retry policy the network adapters share: waits, caps, jitter and the server's Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from leanrank.errors import ConfigError
from leanrank.retry import RetryPolicy, retry_after_s


def test_waits_double_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=6, backoff_s=0.5, max_wait_s=3.0)
    for attempt, full in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (5, 3.0)]:
        waits = {policy.wait_s(attempt) for _ in range(50)}
        assert all(full / 2 <= w <= full for w in waits)
        assert len(waits) > 1  # jittered: concurrent callers do not retry in lockstep


def test_the_servers_retry_after_replaces_the_backoff_still_capped() -> None:
    policy = RetryPolicy(backoff_s=5.0, max_wait_s=10.0)
    assert policy.wait_s(1, retry_after=0.0) == 0.0
    assert policy.wait_s(1, retry_after=60.0) == 10.0


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert retry_after_s(httpx.Headers({"Retry-After": "3"})) == 3.0
    assert retry_after_s(httpx.Headers({"retry-after": "-1"})) == 0.0
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (retry_after_s(httpx.Headers({"Retry-After": soon})) or 0) <= 30
    assert retry_after_s(httpx.Headers({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0
    assert retry_after_s(httpx.Headers({"Retry-After": "soon"})) is None
    assert retry_after_s(httpx.Headers()) is None


@pytest.mark.parametrize("bad", [{"max_attempts": 0}, {"backoff_s": -1.0}, {"max_wait_s": -1.0}])
def test_bounds_that_cannot_work_are_config_errors(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(**bad)  # type: ignore[arg-type]
