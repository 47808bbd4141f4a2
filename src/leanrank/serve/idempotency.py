"""Idempotent billed requests: a client resending its `X-Request-Id` gets the first answer back.

The 2xx answer of a billed route is kept in the ledger's database under `key id/request id`, with a
fingerprint of the request (path, course header, cascade opt-out header, body). The same request again is
answered from there (`x-leanrank-replayed: true`): no backend is called, nothing is billed twice. Another
request under a used id is refused (409). Only ids the client chose are kept (a generated id never comes
back). Failed requests are not kept, so a retry after a failure is served and billed afresh; a retry while
the first attempt still runs is refused by the meter, which holds the id for the call's duration.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leanrank.cost.ledger import CostLedger, LedgerError, Reply, RequestConflictError
from leanrank.serve.auth import Principal
from leanrank.serve.service import ledger_id

BILLED_PATHS = frozenset({"/v2/rerank", "/v1/rerank", "/rerank", "/v1/search", "/v1/rerank/batch"})
_KEPT = frozenset({"content-type", "x-compute-tokens", "x-compute-characters", "x-inference-time"})
"""Headers a replay carries besides every `x-leanrank-*` one (cost, budget, backend, the cascade's counts,
warnings): the answer as first sent, less what the transport sets."""
_log = logging.getLogger("leanrank.serve")


class Idempotency:
    """Pure ASGI, inside `EdgeMiddleware` (which authenticated the key and bounded the body)."""

    def __init__(self, app: ASGIApp, *, ledger: CostLedger) -> None:
        self.app = app
        self.ledger = ledger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in BILLED_PATHS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        state = scope["state"]
        request_id = state["request_id"]
        if headers.get("x-request-id") != request_id:
            await self.app(scope, receive, send)
            return
        principal: Principal = state["principal"]
        key = ledger_id(principal, request_id)
        body = await _read(receive)
        course = headers.get("x-leanrank-course", "")
        parts = [scope["path"].encode(), course.encode(), _canonical(body)]
        cascade = header_token(headers.get("x-leanrank-cascade", ""))
        if cascade:  # appended only when sent: answers kept before it was fingerprinted still replay
            parts.append(b"cascade:" + cascade.encode())
        fingerprint = hashlib.sha256(b"\0".join(parts)).hexdigest()
        kept = await asyncio.to_thread(self.ledger.find_reply, key)
        if kept is not None:
            if kept.fingerprint != fingerprint:
                raise RequestConflictError(
                    f"request id {request_id!r} was used for another request; send a new X-Request-Id"
                )
            await _replay(kept, send)
            return
        status, out_headers, chunks = 0, list[tuple[str, str]](), list[bytes]()

        async def once() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", []):
                    lowered = name.decode("latin-1").lower()
                    if lowered in _KEPT or lowered.startswith("x-leanrank-"):
                        out_headers.append((name.decode("latin-1"), value.decode("latin-1")))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if 200 <= status < 300 and not message.get("more_body", False):
                    # Kept before the answer leaves: a client resending at once must find it.
                    saved = json.dumps(out_headers)
                    await self._keep(key, Reply(fingerprint, status, saved, b"".join(chunks)))
            await send(message)

        await self.app(scope, _after(once, receive), capture)

    async def _keep(self, key: str, reply: Reply) -> None:
        try:
            await asyncio.to_thread(self.ledger.keep_reply, key, reply)
        except LedgerError as exc:  # the call is billed; only a replay of its answer is lost
            _log.error("could not keep the answer of %s for replay: %s", key, exc)


async def _read(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _after(first: Receive, then: Receive) -> Receive:
    """`first` once (the buffered body), then the client's own messages (a disconnect)."""
    done = False

    async def receive() -> Message:
        nonlocal done
        if done:
            return await then()
        done = True
        return await first()

    return receive


async def _replay(reply: Reply, send: Send) -> None:
    raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in json.loads(reply.headers)]
    raw = [(n, v) for n, v in raw if n.lower() != b"content-length"]
    raw += [(b"content-length", str(len(reply.body)).encode()), (b"x-leanrank-replayed", b"true")]
    await send({"type": "http.response.start", "status": reply.status, "headers": raw})
    await send({"type": "http.response.body", "body": reply.body})


def header_token(value: str) -> str:
    """A header value that is a token (`X-Leanrank-Cascade`), as the routes compare it: ` OFF ` is `off`."""
    return value.strip().casefold()


def _canonical(body: bytes) -> bytes:
    """A JSON body with its keys sorted and its spacing dropped, so a resend that a client library serialised
    in another key order is the same request; anything else (not JSON) as sent."""
    try:
        value = json.loads(body)
    except ValueError:
        return body
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()  # ASCII: lone surrogates too
