"""The floor under any Python rerank gateway, timed by `bench/gateway.py` beside leanrank: a bare proxy.

    .venv/bin/python -m bench.passthrough BACKEND_URL PORT [--ledger PATH]

A pure ASGI app on uvicorn (as `leanrank serve` runs, same HTTP parser and event loop) that forwards
`POST /v2/rerank`'s body and `Authorization` header to `BACKEND_URL` through one kept aiohttp session and
answers with the backend's body: no key check, no validation, no cascade, no pricing. With `--ledger`, it
also writes one row per request to a SQLite file in WAL mode with `synchronous=FULL`, in a worker thread,
before answering: the least a gateway that promises a durable record before its answer can do. What
leanrank adds beyond these rows is its own work.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import threading
import time
from typing import Any

import aiohttp
import uvicorn

Scope = dict[str, Any]


def app_for(backend: str, ledger: str | None) -> Any:
    session: aiohttp.ClientSession | None = None
    db: sqlite3.Connection | None = None
    lock = threading.Lock()
    if ledger is not None:
        db = sqlite3.connect(ledger, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS calls (time REAL, request TEXT, bytes INTEGER)")

    def record(conn: sqlite3.Connection, size: int) -> None:
        with lock:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO calls VALUES (?, ?, ?)", (time.time(), "r", size))
            conn.execute("COMMIT")

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        nonlocal session
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if session is None:
            session = aiohttp.ClientSession()
        auth = dict(scope["headers"]).get(b"authorization", b"").decode()
        async with session.post(
            f"{backend}/v2/rerank",
            data=body,
            headers={"authorization": auth, "content-type": "application/json"},
        ) as response:
            answer = await response.read()
            status = response.status
        if db is not None:
            await asyncio.to_thread(record, db, len(answer))
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("backend")
    parser.add_argument("port", type=int)
    parser.add_argument("--ledger", help="SQLite file: one synced row per request before the answer.")
    args = parser.parse_args()
    uvicorn.run(app_for(args.backend, args.ledger), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
