"""Shared async HTTP machinery for the rerank providers: one JSON POST with bounded retries and typed errors.

Every provider speaks JSON over `POST` with a bearer key, fails with the same status codes and wants the
same courtesy on overload (back off, honour `Retry-After`: `leanrank.retry`), so that lives here once and
`providers.py` only describes what differs.

The client is aiohttp's, for the gateway's added latency: against httpx's pooled client, sequential calls to a
loopback backend over a kept connection took about 0.6× the wall time and 0.35× the CPU.

A call that failed in a way its provider may still bill is noted for the meter in `billable_failures`: a
fallback chain's failed link (`fallback`), and here every attempt that was sent whole but got no answer (the
connection dropped while the provider worked) before it was retried or given up: the provider may have
served, and billed, each one. A cancellation (the call's deadline, a caller gone) is noted here too, where
it is known what it cut off: the attempt in flight, or nothing when it came between attempts (a back-off
sleep). The note travels beside the error, not on it: one exception object may be raised to several
concurrent calls (a micro-batch's failure).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache, partial
from types import SimpleNamespace
from typing import Any

import aiohttp
import certifi

from leanrank.errors import BackendError, ConfigError
from leanrank.retry import RetryPolicy, retry_after_s

_log = logging.getLogger(__name__)

# Overload and gateway failures pass; other 4xx would fail the same way again.
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# The request never reached the model or the connection dropped: safe to resend (reranking is idempotent).
# A timeout once connected is not retried: the server is busy with the batch, resending doubles its load.
# Of those, the ones before anything was sent: no connection (refused, DNS, TLS handshake; a timeout before
# one was made, `_Attempt`), or a kept one found closed when the request's head was written.
_NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ClientConnectionResetError)
# And the ones after: the line broke, or the answer came malformed, once the request was on it: the
# provider may have served it. aiohttp does not tell a failed body write from a failed read (both
# `ClientOSError`), so a request cut off while being written counts as sent: one possibly billed call too
# many errs on the budget's side.
_SENT_UNANSWERED = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientPayloadError,
    aiohttp.ClientResponseError,
    aiohttp.ClientOSError,
)
# As httpx encodes `json=`: UTF-8 (Cyrillic escaped as \uXXXX would triple the body), compact, and no NaN (a
# ValueError before sending rather than a body the provider cannot parse).
_JSON = partial(json.dumps, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


@dataclass(slots=True, eq=False)
class Billable:
    """What `billable_failures` collects about the calls made inside it.

    `calls`: those that failed in a way their provider may still bill, by the name of the reranker that made
    each, in call order: attempts sent but unanswered, and the fallback chains' failed links (the one whose
    failure ended a chain included); filled as they fail. `cut_off`: a cancellation reached a
    `JsonClient.post` made for a reranker (`billed_as`), which noted the attempt in flight, if there was
    one: that call's attempts are all in `calls` already. `in_flight`: the fallback chain's link whose call
    is under way (`under_way`), None between links and once the chain is over.
    """

    calls: list[str] = field(default_factory=list)
    cut_off: bool = False
    in_flight: str | None = None

    def add(self, other: Billable) -> None:
        """Take in what `other` collected, after what is here. `other` may be filled in another task (a
        batcher's, `leanrank.rerank.batch.Waiting`) whose caller stops waiting while a chain link is under
        way there: that link is taken in too, as cut off, as the caller's own cancellation would have noted
        it; what that task notes later is not taken in."""
        self.calls.extend(other.calls)
        if other.in_flight is not None:
            self.calls.append(other.in_flight)
        self.cut_off = self.cut_off or other.cut_off or other.in_flight is not None

    def unnoted(self, exc: BaseException) -> bool:
        """Whether the call that ended in `exc` may be billed beyond `calls`: it may be billed at all
        (`maybe_billed`) and its attempts were not noted as the cancellation cut them off. A backend that
        notes nothing (a custom one, a micro-batch's seat for a single backend, whose request goes on in
        another task) is counted once on its timeout, as if an attempt were in flight; a seat for a chain
        has its link in flight noted instead (`add`)."""
        return maybe_billed(exc) and not self.cut_off


_BILLABLE: ContextVar[Billable | None] = ContextVar("leanrank_billable_failures", default=None)


@contextmanager
def billable_failures(into: Billable | None = None) -> Iterator[Billable]:
    """What the calls made inside the block may be billed for though they failed (`Billable`).

    `into` is the one to fill (a new one by default): a batcher's, which hands it to the caller the calls
    were made for (`leanrank.rerank.batch.Waiting`, `note_all`)."""
    billable = Billable() if into is None else into
    token = _BILLABLE.set(billable)
    try:
        yield billable
    finally:
        _BILLABLE.reset(token)


def note_billable(name: str) -> None:
    """Note a failed call by the reranker `name` as possibly billed, in `billable_failures` (else no-op)."""
    billable = _BILLABLE.get()
    if billable is not None:
        billable.calls.append(name)


@contextmanager
def under_way(name: str) -> Iterator[None]:
    """The call by the reranker `name` (a fallback chain's link) is the one in flight inside the block
    (`Billable.in_flight`, in `billable_failures`; else no-op)."""
    billable = _BILLABLE.get()
    if billable is None:
        yield
        return
    outer, billable.in_flight = billable.in_flight, name
    try:
        yield
    finally:
        billable.in_flight = outer


def note_all(collected: Billable) -> None:
    """Note what another `billable_failures` block collected (a batch's task, for its caller) in this
    context's, its chain link in flight as cut off (`Billable.add`; else no-op)."""
    billable = _BILLABLE.get()
    if billable is not None:
        billable.add(collected)


def note_failure(name: str, exc: BaseException) -> None:
    """Note the call by the reranker `name` that ended in `exc` when its provider may bill it beyond what
    is noted already (`Billable.unnoted`), in `billable_failures` (else no-op)."""
    billable = _BILLABLE.get()
    if billable is not None and billable.unnoted(exc):
        billable.calls.append(name)


def _cut_off(billed_as: str | None, *, in_flight: bool) -> None:
    """A cancellation reached a call of the reranker `billed_as`: the attempt in flight, sent or being sent,
    may be billed (there is no telling how far it got); waiting between attempts, nothing was in flight."""
    billable = _BILLABLE.get()
    if billed_as is None or billable is None:
        return
    if in_flight:
        billable.calls.append(billed_as)
    billable.cut_off = True


class RerankHttpError(BackendError):
    """A rerank provider call failed; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RerankAuthError(RerankHttpError):
    """401/403: the key is missing, wrong or not allowed to use this model; retrying cannot help."""


class RateLimitedError(RerankHttpError):
    """429 persisted through every retry."""


class RerankServerError(RerankHttpError):
    """5xx or a dropped connection persisted through every retry."""


class RequestRejectedError(RerankHttpError):
    """Any other 4xx: the provider refused this request as sent."""


class PayloadTooLargeError(RequestRejectedError):
    """413: too many or too long documents for one request; the caller may split and resend."""


class BadResponseError(RerankHttpError):
    """A 2xx answer that is not the documented shape (bad JSON, missing or duplicate indices, ...)."""


class RerankTimeoutError(RerankHttpError):
    """No answer within the configured timeout."""


# Failures after which the provider may still bill the call: it was sent, and maybe served.
MAYBE_BILLED = (RerankTimeoutError, BadResponseError)


def maybe_billed(exc: BaseException) -> bool:
    """Whether a call that ended in `exc` may still be billed: it was sent and maybe served (`MAYBE_BILLED`),
    or its caller stopped waiting for the answer (cancelled: a client that went away)."""
    return isinstance(exc, (*MAYBE_BILLED, asyncio.CancelledError))


@dataclass(frozen=True, slots=True)
class JsonReply:
    """A decoded 2xx body with the headers some providers report usage in (TEI: `x-compute-tokens`), read-only
    and looked up case-insensitively."""

    body: Any
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class _Response:
    """An answer read whole, its connection back in the pool: what decoding and the typed errors need."""

    status: int
    reason: str
    headers: Mapping[str, str]
    raw: bytes

    @property
    def text(self) -> str:
        """The body as text for error messages: providers answer UTF-8; anything else is shown, not parsed."""
        return self.raw.decode("utf-8", errors="replace")


class _Attempt:
    """Whether one request got a connection (new or kept from the pool), set by `_TRACE`.

    The total timeout covers connecting too, and a timeout raises the same `TimeoutError` whenever it fires:
    before a connection there was nothing sent to bill, and the attempt is retried as a connection failure."""

    __slots__ = ("connected",)

    def __init__(self) -> None:
        self.connected = False


async def _connected(session: aiohttp.ClientSession, context: SimpleNamespace, params: object) -> None:
    attempt = context.trace_request_ctx
    if isinstance(attempt, _Attempt):
        attempt.connected = True


KEEPALIVE_S = 4.0
"""How long an idle connection to a provider is kept for reuse (aiohttp's default is 15 s, httpx's 5)."""

# Every session's; each request passes its `_Attempt` as `trace_request_ctx`.
_TRACE = aiohttp.TraceConfig()
_TRACE.on_connection_create_end.append(_connected)
_TRACE.on_connection_reuseconn.append(_connected)


class JsonClient:
    """An `aiohttp.ClientSession` for one provider, closed with `aclose` (`LoopClients` does).

    Made inside the running loop it serves, and only used there. Its connections are kept alive and pooled,
    at most 100 at once (aiohttp's default, as httpx's was: a burst beyond it waits for a free one), with
    `TCP_NODELAY` set (aiohttp sets it on every connection: no 40 ms wait for a delayed ACK). Every attempt
    has a total timeout of `timeout_s`, connecting and reading the whole answer included: always on. An idle
    connection is closed after `KEEPALIVE_S`, before servers that close theirs after 5 s (uvicorn's default,
    so infinity's) would: reusing one they just closed could lose a request on the way.
    """

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        api_key: str | None,
        timeout_s: float,
        retry: RetryPolicy,
    ) -> None:
        check_endpoint(provider, base_url, timeout_s)
        self._provider = provider
        # Paths are appended, not resolved against it: aiohttp's `base_url` would drop a path such as `/v1`.
        self._base_url = base_url.rstrip("/")
        self._retry = retry
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=_tls_context(), keepalive_timeout=KEEPALIVE_S),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            json_serialize=_JSON,
            trace_configs=[_TRACE],
        )

    async def aclose(self) -> None:
        """Close the connections; the client cannot be used after."""
        await self._session.close()

    async def post(self, path: str, payload: dict[str, Any], *, billed_as: str | None = None) -> JsonReply:
        """The decoded answer to `POST path`, retrying 429/5xx and dropped connections; typed errors after.

        Each attempt sent whole whose connection then dropped is noted as a possibly billed call of the
        reranker `billed_as` (`note_billable`), retried or not; so is the attempt in flight when the call is
        cancelled, while a cancellation during the wait before a retry notes none (`Billable.cut_off`)."""
        where = f"{self._provider} POST {self._base_url}{path}"
        attempts = self._retry.max_attempts
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            sent = _Attempt()
            try:
                response = await self._request("POST", path, payload, sent)
            except asyncio.CancelledError:
                _cut_off(billed_as, in_flight=True)
                raise
            except TimeoutError as exc:
                if sent.connected:
                    raise RerankTimeoutError(f"{where} timed out: {type(exc).__name__}") from exc
                failure: RerankHttpError = RerankServerError(f"{where} failed: connect timed out")
            except _NOT_SENT as exc:
                failure = _failed(where, exc)
            except _SENT_UNANSWERED as exc:
                if billed_as is not None:
                    note_billable(billed_as)
                failure = _failed(where, exc)
            except aiohttp.ClientError as exc:
                raise _failed(where, exc) from exc
            else:
                if response.status not in _RETRY_STATUSES:
                    return _decode(where, response)
                failure = _status_error(where, response)
                retry_after = retry_after_s(response.headers)
            if attempt == attempts:
                failure.args = (f"{failure} (gave up after {attempts} attempts)",)
                raise failure
            delay = self._retry.wait_s(attempt, retry_after)
            _log.warning("%s; retry %d in %.2fs", failure, attempt, delay)
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                _cut_off(billed_as, in_flight=False)
                raise

    async def get(self, path: str) -> JsonReply:
        """The decoded answer to `GET path`, tried once: metadata a caller can do without (TEI's /info)."""
        where = f"{self._provider} GET {self._base_url}{path}"
        try:
            response = await self._request("GET", path)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _failed(where, exc) from exc
        return _decode(where, response)

    async def _request(
        self, method: str, path: str, payload: dict[str, Any] | None = None, attempt: _Attempt | None = None
    ) -> _Response:
        """One request, its answer read whole so the connection goes back to the pool before decoding;
        `attempt` learns whether it got a connection. Redirects are not followed, as httpx did not: aiohttp
        would resend a POST as a body-less GET."""
        async with self._session.request(
            method, self._base_url + path, json=payload, allow_redirects=False, trace_request_ctx=attempt
        ) as response:
            raw = await response.read()
            return _Response(response.status, response.reason or "", response.headers, raw)


class LoopClients:
    """One `JsonClient` per event loop, kept for the loop's life: its connections are reused across calls.

    A client must not outlive the loop it was made on, and a reranker has no `close`, so each client is
    closed by the loop itself when it shuts down (`asyncio.run`, uvicorn and pytest-asyncio all finalise
    the loop's async generators then): a generator parked in `finally: await client.aclose()` does it.
    A long-lived loop (the service) thus keeps one pool per backend for the process's life; a short one
    (a CLI search) opens and closes its own.
    """

    def __init__(self, make: Callable[[], JsonClient]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[JsonClient, AsyncIterator[None]]
        ] = weakref.WeakKeyDictionary()

    async def get(self) -> JsonClient:
        """The running loop's client, made on first use."""
        loop = asyncio.get_running_loop()
        with self._lock:
            kept = self._clients.get(loop)
        if kept is not None:
            return kept[0]
        client = self._make()
        closer = _close_with_loop(client)
        await anext(closer)  # parked at its `yield` until the loop finalises it
        with self._lock:
            self._clients[loop] = (client, closer)  # the generator must stay referenced until then
        return client


async def _close_with_loop(client: JsonClient) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await client.aclose()


@cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context per process: building one loads the CA bundle (tens of milliseconds), and a fresh
    client per call would otherwise pay that on every rerank."""
    return ssl.create_default_context(cafile=certifi.where())


def _failed(where: str, exc: BaseException) -> RerankServerError:
    return RerankServerError(f"{where} failed: {type(exc).__name__}: {_one_line(str(exc))}")


def _decode(where: str, response: _Response) -> JsonReply:
    if response.status >= 400:
        raise _status_error(where, response)
    try:
        return JsonReply(json.loads(response.raw), response.headers)
    except ValueError as exc:
        raise BadResponseError(f"{where} returned invalid JSON: {response.text[:120]!r}") from exc


def check_endpoint(provider: str, base_url: str, timeout_s: float) -> None:
    """ConfigError at construction rather than a confusing failure at the first request."""
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{provider} base url must start with http:// or https://, got {base_url!r}")
    if timeout_s <= 0:
        raise ConfigError(f"{provider} timeout must be positive, got {timeout_s}")


def _status_error(where: str, response: _Response) -> RerankHttpError:
    status = response.status
    message = f"{where} failed: HTTP {status}: {_detail(response)}"
    if status in (401, 403):
        return RerankAuthError(message, status)
    if status == 429:
        return RateLimitedError(message, status)
    if status == 413:
        return PayloadTooLargeError(message, status)
    if status >= 500:
        return RerankServerError(message, status)
    return RequestRejectedError(message, status)


def _detail(response: _Response) -> str:
    """The provider's own `message`/`error`/`detail` when the body carries one, else the raw body."""
    try:
        body = json.loads(response.raw)
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            value = body.get(key)
            if isinstance(value, str):
                return _one_line(value)
    return _one_line(response.text) or response.reason


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= 200 else flat[:197] + "..."
