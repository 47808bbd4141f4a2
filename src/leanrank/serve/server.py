"""How uvicorn runs the service: the one set of server options `leanrank serve` and the tests' live
servers share, including a deadline for a request's head.

uvicorn closes idle keep-alive connections, but a connection that sends a request line and some headers
and then goes silent is never timed out: a hundred such clients hold a hundred connections forever
(slowloris). `HeadDeadlineProtocol` closes a connection whose request head is not complete within
`serve.header_timeout_s` of its first byte (of connecting, for the first request); `limit_concurrency`
caps connections (a request beyond it gets 503).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from leanrank.settings import ServeSettings


class HeadDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's head (request line and headers)."""

    head_timeout_s: float = 10.0
    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _watch_head(self) -> None:
        """Armed while a head is awaited (h11 sees the client idle); never re-armed by more of the same head,
        so trickling one byte at a time does not extend it."""
        if self.conn.their_state is not h11.IDLE:
            self._disarm()
        elif self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def on_response_complete(self) -> None:
        super().on_response_complete()  # idle from here: uvicorn's keep-alive timer takes over
        self._disarm()

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def server_options(settings: ServeSettings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run` / `uvicorn.Config` (besides the app, host, port and logging)."""
    protocol = type(
        "HeadDeadlineProtocol", (HeadDeadlineProtocol,), {"head_timeout_s": settings.header_timeout_s}
    )
    return {
        "http": protocol,
        # Longer than clients keep idle connections: else a client may send its next request on a
        # connection the server is closing at that instant, and see it drop.
        "timeout_keep_alive": settings.keep_alive_s,
        "limit_concurrency": settings.max_connections,
        "timeout_graceful_shutdown": settings.shutdown_timeout_s,
    }
