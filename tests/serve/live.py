"""A real uvicorn server on a free loopback port, in a thread: what the service tests and the gateway
benchmark use."""

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
