"""Clients that open connections and never finish a request head (slowloris) on a real server: each
connection closes at the head deadline, and connections beyond the cap are answered 503."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from leanrank.pipeline import Pipeline
from leanrank.serve import create_app
from tests.serve.conftest import settings_for
from tests.serve.live import LiveServer

HEAD_TIMEOUT_S = 1.0
MAX_CONNECTIONS = 120
PARTIAL_HEAD = b"POST /v2/rerank HTTP/1.1\r\nHost: leanrank\r\nContent-Type: application/json\r\n"


@pytest.fixture
def live(tmp_path: Path, index: Pipeline) -> Iterator[LiveServer]:
    settings = settings_for(tmp_path, header_timeout_s=HEAD_TIMEOUT_S, max_connections=MAX_CONNECTIONS)
    server = LiveServer(create_app(settings, pipeline=index))
    yield server
    server.close()


def _connect(live: LiveServer) -> socket.socket:
    host, port = live.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.settimeout(60)  # a guard against hanging the suite, far above the deadline
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def _get(sock: socket.socket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: leanrank\r\nConnection: close\r\n\r\n".encode())
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_hundred_incomplete_heads_are_all_closed(live: LiveServer) -> None:
    socks = [_connect(live) for _ in range(100)]
    try:
        for sock in socks:
            sock.sendall(PARTIAL_HEAD)
        assert all(_closed_by_server(sock) for sock in socks)
        with _connect(live) as sock:  # the server still answers
            assert _get(sock, "/healthz").startswith(b"HTTP/1.1 200")
    finally:
        for sock in socks:
            sock.close()


def test_a_trickled_head_does_not_extend_the_deadline(live: LiveServer) -> None:
    """One header line every 0.1 s would take 30 s to finish the head; the connection closes before that."""
    with _connect(live) as sock:
        sock.sendall(PARTIAL_HEAD)
        sent = 0
        with pytest.raises((BrokenPipeError, ConnectionResetError)):  # noqa: PT012
            for i in range(300):
                sock.sendall(f"X-Slow-{i}: 1\r\n".encode())
                sent += 1
                time.sleep(0.1)
        assert sent < 300


@pytest.fixture
def capped(tmp_path: Path, index: Pipeline) -> Iterator[LiveServer]:
    """A server whose head deadline is far longer than opening the cap's connections takes on a loaded
    machine: with `live`'s 1 s, the first silent connections could be closed before the last was open."""
    settings = settings_for(tmp_path, header_timeout_s=60.0, max_connections=MAX_CONNECTIONS)
    server = LiveServer(create_app(settings, pipeline=index))
    yield server
    server.close()


def test_connections_beyond_the_cap_get_503(capped: LiveServer) -> None:
    """With the cap taken by silent connections a request is refused; once they are closed it is served."""
    idle = [_connect(capped) for _ in range(MAX_CONNECTIONS)]
    try:
        with _connect(capped) as sock:
            assert _get(sock, "/healthz").startswith(b"HTTP/1.1 503")
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 30  # the server sees the closed connections go as its loop gets to them
    while True:
        with _connect(capped) as sock:
            answer = _get(sock, "/healthz")
        if answer.startswith(b"HTTP/1.1 200") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert answer.startswith(b"HTTP/1.1 200")
