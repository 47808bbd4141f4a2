"""Two `leanrank serve` processes sharing one PostgreSQL ledger and one Redis score cache.

Real processes, real servers: every billed call lands in the ledger exactly once whichever replica served
it, a retried request id is recorded once, and a score one replica paid for is a free cache hit on the other.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, inspect, text

from leanrank.cost.ledger import DEFAULT_TABLE as TABLE
from leanrank.serve import new_key
from tests.rerank.servers import API_KEY, MODEL, FakeProvider

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
DOCS = [f"Фрагмент {i}: цикл while повторяет тело, пока условие истинно." for i in range(30)]


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[list[str], str, FakeProvider, str]]:
    if not (reachable("127.0.0.1", 5432) and reachable("127.0.0.1", 6379)):
        pytest.skip("needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379")
    backend = FakeProvider("cohere")
    key, entry = new_key("ops", "admin")
    run = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "LEANRANK_RERANK__BACKEND": f"cohere:{MODEL}",
        "LEANRANK_RERANK__CACHE": REDIS_URL,
        "LEANRANK_COST__LEDGER_URL": PG_URL,
        "LEANRANK_SERVE__API_KEYS": f'["{entry}"]',
        "LEANRANK_COHERE_BASE_URL": backend.url,
        "LEANRANK_COHERE_API_KEY": API_KEY,
        # Pass-through: this test counts every document reaching the backend and the shared cache.
        "LEANRANK_GATEWAY__CASCADE__PRESET": "off",
    }
    ports = [free_port(), free_port()]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "leanrank.cli", "serve", "--port", str(port), "--log-level", "warning"],
            # Each replica has its own embedded index (one process per index); ledger and cache are shared.
            env={**env, "LEANRANK_DATA_DIR": str(tmp_path / f"data-{port}")},
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for port in ports
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 120
        for url in urls:
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    errors = [
                        p.stderr.read().decode()[-2000:] for p in procs if p.poll() is not None and p.stderr
                    ]
                    raise RuntimeError(f"replica {url} did not start: {errors}")
                time.sleep(0.3)
        yield urls, key, backend, run
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        backend.close()
        engine = create_engine(PG_URL)
        if inspect(engine).has_table(TABLE):
            with engine.begin() as conn:
                conn.execute(text(f"DELETE FROM {TABLE} WHERE request_id LIKE :p"), {"p": f"ops/{run}-%"})
        engine.dispose()


def rerank(url: str, key: str, request_id: str, query: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v2/rerank",
        json={"model": "rerank-v3.5", "query": query, "documents": DOCS},
        headers={"Authorization": f"Bearer {key}", "x-request-id": request_id},
        timeout=30,
    )


def test_replicas_share_the_ledger_and_the_cache(replicas: tuple[list[str], str, FakeProvider, str]) -> None:
    urls, key, backend, run = replicas
    query = f"Что делает цикл while? {run}"  # fresh query: no cached scores from earlier runs
    first = rerank(urls[0], key, f"{run}-1", query)
    assert first.status_code == 200, first.text
    assert len(backend.requests) == 1
    # The other replica finds every score in Redis: nothing sent to the paid backend.
    second = rerank(urls[1], key, f"{run}-2", query)
    assert second.status_code == 200, second.text
    assert len(backend.requests) == 1
    assert second.json()["results"] == first.json()["results"]
    # Many distinct calls spread over both replicas, and one retried id sent to both.
    for i in range(3, 23):
        assert rerank(urls[i % 2], key, f"{run}-{i}", f"вопрос {i} {run}").status_code == 200
    for url in urls:
        assert rerank(url, key, f"{run}-retry", f"повтор {run}").status_code == 200
    engine = create_engine(PG_URL)
    with engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT request_id, cache_hits FROM {TABLE} WHERE request_id LIKE :p"),
            {"p": f"ops/{run}-%"},
        ).all()
    engine.dispose()
    ids = [r.request_id for r in rows]
    assert len(ids) == len(set(ids)) == 23  # 22 distinct ids + the retry, each once
    hits = {r.request_id: r.cache_hits for r in rows}
    # Ledger request ids are namespaced by the caller's key id, so tenants cannot collide.
    assert hits[f"ops/{run}-1"] == 0
    assert hits[f"ops/{run}-2"] == len(DOCS)
