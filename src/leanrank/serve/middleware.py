"""The edge every request passes first: request id, API key, rate limit, body size, metrics, access log.

Authentication and the key's requests-per-minute limit happen here, before routing and body parsing, so
a request without a valid key gets 401 whatever its body, a key over its limit 429, and an oversized body
is refused before it is read (413 naming the limit).
The access log names the key's id, never the key.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leanrank.errors import InputError
from leanrank.serve.auth import KeyRing
from leanrank.serve.errors import LimitExceededError, error_response
from leanrank.serve.metrics import Metrics
from leanrank.serve.ratelimit import RateLimits
from leanrank.serve.routes.dashboard import ASSETS as DASHBOARD_ASSETS
from leanrank.serve.routes.dashboard import DASHBOARD
from leanrank.settings import ServeSettings

# `/health` and `/info` are TEI's probes, which its clients and orchestrators call without a key; the
# dashboard's page holds no data (its data endpoint needs an admin key).
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/health", "/info", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
) | {DASHBOARD}
DOCS_ASSETS = "/docs/assets"
"""Where Swagger UI's and ReDoc's scripts are served from (no CDN: `/docs` works offline); public too."""
_UPLOAD = re.compile(r"^/v1/courses/[^/]+/documents/?$")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_access = logging.getLogger("leanrank.serve.access")


class EdgeMiddleware:
    """Pure ASGI (no request buffering, no per-request task) so it adds microseconds, not milliseconds."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: KeyRing,
        limits: ServeSettings,
        metrics: Metrics,
        rate_limits: RateLimits,
        routes: Sequence[BaseRoute],
    ) -> None:
        self.app = app
        self.routes = routes
        self.keys = keys
        self.limits = limits
        self.metrics = metrics
        self.rate_limits = rate_limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        headers = Headers(scope=scope)
        client_id = headers.get("x-request-id", "")
        request_id = client_id if _CLIENT_ID.match(client_id) else uuid.uuid4().hex
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        key_id = "-"
        try:
            path = scope["path"]
            public = (
                path in PUBLIC_PATHS
                or path.startswith((DOCS_ASSETS + "/", DASHBOARD_ASSETS + "/"))
                or self._open_metrics(path)
            )
            if not public:
                principal = self.keys.authenticate(headers.get("authorization"))
                state["principal"] = principal
                key_id = principal.key_id
                if client_id and request_id != client_id:
                    # Refused, not replaced: a retry under an id the client thinks is kept would be billed
                    # twice. After the key check, so a caller without a key learns nothing else first.
                    raise InputError(
                        "X-Request-Id must be 1 to 128 letters, digits, '.', '_', ':' or '-' (it keys "
                        "idempotent retries and billing)"
                    )
                await self.rate_limits.request(key_id)
            receive = await self._limited(scope, headers, receive)
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Refused here (no key, body too large), or a bug below: either way, the one JSON error shape.
            if status:  # the response has begun: too late to replace it
                raise
            await error_response(exc, request_id)(scope, receive, send_with_id)
        finally:
            template = _route_template(scope, self.routes)
            seconds = time.perf_counter() - t0
            self.metrics.observe_request(template, scope["method"], status, seconds)
            _access.info(
                "%s %s %d %.1fms key=%s request_id=%s",
                scope["method"],
                template,
                status,
                seconds * 1000,
                key_id,
                request_id,
            )

    def _open_metrics(self, path: str) -> bool:
        return path == "/metrics" and self.limits.metrics_access == "open"

    async def _limited(self, scope: Scope, headers: Headers, receive: Receive) -> Receive:
        """`receive` unchanged when the declared length fits; a replay of the buffered body when none is."""
        upload = scope["method"] == "POST" and _UPLOAD.match(scope["path"])
        name = "max_upload_bytes" if upload else "max_request_bytes"
        limit: int = getattr(self.limits, name)
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > limit:
                raise LimitExceededError(name, int(declared), limit, "request body bytes")
            return receive
        if scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            return receive
        # No length (chunked transfer): read up to the limit, then hand the app the body as one message.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                raise LimitExceededError(name, size, limit, "request body bytes")
            if not message.get("more_body", False):
                message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return message

        return replay


def _route_template(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    """The path template of the route that answered, or for a request refused before routing (no key,
    body too large) of the one of `routes` it was sent to: metrics count it there, not as `unmatched`."""
    route = scope.get("route")
    if route is None:
        for candidate in routes:
            match, _ = candidate.matches(scope)
            if match is Match.FULL:
                route = candidate
                break
            if match is Match.PARTIAL and route is None:  # the path matched, not the method
                route = candidate
    return str(getattr(route, "path", "unmatched"))
