"""A real uvicorn server on a free loopback port, in a thread, and a pooled transport for HTTP adapters:
what the service tests and the gateway benchmark use."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import httpx
import uvicorn
from fastapi import FastAPI

from leanrank.serve.server import server_options


@dataclass
class LiveServer:
    """`app` served by uvicorn in a thread on a free loopback port, lifespan included."""

    app: FastAPI

    def __post_init__(self) -> None:
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and without it
        # every keep-alive response waits 40 ms for a delayed ACK.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        # As `leanrank serve` runs it (keep-alive, head deadline, connection cap, shutdown deadline).
        options = server_options(self.app.state.service.settings.serve)
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on", **options)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)

    @property
    def url(self) -> str:
        host, port = self._socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def client(self, key: str | None, headers: dict[str, str] | None = None) -> httpx.Client:
        """A client sending `key` as its bearer token (none when None), and `headers`."""
        auth = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers={**auth, **(headers or {})}, timeout=30)

    def close(self) -> None:
        self.server.should_exit = True
        self._thread.join(30)
        self._socket.close()


class PooledTransport(httpx.AsyncBaseTransport):
    """One connection pool for all of an adapter's calls.

    The HTTP adapter opens a client per call, and each client's TLS setup costs tens of milliseconds of
    CPU: over a thousand calls that, not the service under test, would be what is measured.
    """

    def __init__(self) -> None:
        self._pool = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pool.handle_async_request(request)

    async def aclose(self) -> None:
        """Kept open across calls (each per-call client closes its transport); the server ends them."""
