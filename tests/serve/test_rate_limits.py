"""Per-key rate limits over a real loopback server: requests and tokens per minute, 429 with Retry-After
from the one error table, counted in memory by default and in the real Redis at 127.0.0.1:6379 across two
servers."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from leanrank.errors import ConfigError
from leanrank.pipeline import Pipeline
from leanrank.serve import create_app, new_key
from leanrank.settings import RateLimitSettings, ServeSettings, Settings
from tests.serve.conftest import ADMIN_KEY, COOKING_KEY, DEMO_KEY, ENTRIES
from tests.serve.live import LiveServer

DOCS = ["Цикл for перебирает элементы.", "A function returns a value."]  # 8 + 7 estimated tokens
BODY = {"model": "identity", "query": "цикл for", "documents": DOCS}  # 2 x 2 + 15 = 19 tokens
REDIS_URL = "redis://127.0.0.1:6379/0"


def serve(tmp_path: Path, index: Pipeline, entries: list[str], **serve: Any) -> LiveServer:
    settings = Settings(data_dir=tmp_path, serve=ServeSettings(api_keys=entries, **serve))
    return LiveServer(create_app(settings, pipeline=index))


@pytest.fixture
def limited(tmp_path: Path, index: Pipeline) -> Iterator[LiveServer]:
    """The demo teacher may make 3 requests a minute, the cooking teacher use 40 rerank tokens; others
    100 requests."""
    rules = [
        RateLimitSettings(key="teacher-demo", requests_per_minute=3),
        RateLimitSettings(key="teacher-cooking", tokens_per_minute=40),
        RateLimitSettings(key="*", requests_per_minute=100),
    ]
    server = serve(tmp_path, index, ENTRIES, rate_limits=rules)
    yield server
    server.close()


def test_a_key_over_its_requests_per_minute_gets_429_with_retry_after(limited: LiveServer) -> None:
    with limited.client(DEMO_KEY) as http:
        answered = [http.get("/v1/usage").status_code for _ in range(3)]
        refused = http.get("/v1/usage")
    with limited.client(ADMIN_KEY) as http:
        other = http.get("/v1/usage")
        metrics = http.get("/metrics").text
    assert answered == [200, 200, 200]
    assert refused.status_code == 429
    body = refused.json()
    assert (body["error_type"], body["limit"]) == ("rate_limited", "rate_limits")
    assert "3 requests per minute" in body["error"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert other.status_code == 200  # another key has its own count
    assert 'leanrank_rate_limit_rejections_total{key="teacher-demo",limit="requests"} 1.0' in metrics


def test_rerank_tokens_per_minute_are_counted_and_one_request_above_the_limit_is_413(
    limited: LiveServer,
) -> None:
    with limited.client(COOKING_KEY) as http:
        too_big = http.post("/v2/rerank", json={**BODY, "documents": DOCS * 3})  # 12 + 45 = 57 > 40
        first = http.post("/v2/rerank", json=BODY)  # 19 of 40
        second = http.post("/v2/rerank", json=BODY)  # 38 of 40
        third = http.post("/v2/rerank", json=BODY)  # 57: over
    assert too_big.status_code == 413
    assert too_big.json()["limit"] == "rate_limits"
    assert (first.status_code, second.status_code) == (200, 200)
    assert third.status_code == 429
    assert "40 tokens per minute" in third.json()["error"]
    assert 1 <= int(third.headers["retry-after"]) <= 60


def test_a_batch_counts_the_tokens_of_every_entry(limited: LiveServer) -> None:
    entry = {"query": BODY["query"], "documents": DOCS}  # 19 tokens, as BODY
    with limited.client(COOKING_KEY) as http:
        too_big = http.post("/v1/rerank/batch", json={"model": "identity", "requests": [entry] * 3})  # 57
        two = http.post("/v1/rerank/batch", json={"model": "identity", "requests": [entry] * 2})  # 38 of 40
        after = http.post("/v2/rerank", json=BODY)  # 57: over
    assert too_big.status_code == 413
    assert too_big.json()["limit"] == "rate_limits"
    assert "57 is above the limit of 40" in too_big.json()["error"]
    assert two.status_code == 200
    assert after.status_code == 429
    assert "40 tokens per minute" in after.json()["error"]


def test_a_rule_for_a_key_that_is_not_configured_is_a_config_error(tmp_path: Path) -> None:
    rules = [RateLimitSettings(key="teacher-dmeo", requests_per_minute=3)]
    settings = Settings(data_dir=tmp_path, serve=ServeSettings(api_keys=ENTRIES, rate_limits=rules))
    with pytest.raises(ConfigError, match="'teacher-dmeo', which is not configured"):
        create_app(settings)


def test_a_rule_needs_a_limit() -> None:
    with pytest.raises(ValueError, match="needs requests_per_minute, tokens_per_minute or both"):
        RateLimitSettings(key="*")


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def test_two_servers_sharing_redis_count_a_key_together(tmp_path: Path, index: Pipeline) -> None:
    if not _redis_up():
        pytest.skip("needs Redis on 127.0.0.1:6379")
    key, entry = new_key(f"rl-{uuid.uuid4().hex[:8]}", "admin")  # a fresh key id: no counts from other runs
    rules = [RateLimitSettings(key="*", requests_per_minute=4)]
    servers = [
        serve(tmp_path / name, index, [entry], rate_limits=rules, rate_limit_storage=REDIS_URL)
        for name in ("a", "b")
    ]
    try:
        statuses = [
            httpx.get(
                f"{servers[i % 2].url}/v1/usage", headers={"Authorization": f"Bearer {key}"}
            ).status_code
            for i in range(6)
        ]
    finally:
        for server in servers:
            server.close()
    assert statuses == [200, 200, 200, 200, 429, 429]  # 4 in all, not 4 per server


def test_an_unreachable_redis_lets_requests_through_and_logs_it(
    tmp_path: Path, index: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    rules = [RateLimitSettings(key="*", requests_per_minute=1)]
    server = serve(tmp_path, index, ENTRIES, rate_limits=rules, rate_limit_storage="redis://127.0.0.1:9/0")
    try:
        with caplog.at_level("WARNING", logger="leanrank.serve.ratelimit"), server.client(ADMIN_KEY) as http:
            statuses = [http.get("/v1/usage").status_code for _ in range(2)]
    finally:
        server.close()
    assert statuses == [200, 200]  # nothing listens on port 9: no count, no refusal
    assert "rate limit storage failed, requests of key ops let through" in caplog.text
