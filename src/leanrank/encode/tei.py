"""Dense embeddings from a Hugging Face text-embeddings-inference (TEI) server.

A GPU box runs TEI once and every leanrank process shares it. The wire format is TEI's native one:
`POST /embed` takes `{"inputs": [...], "normalize": true, "truncate": true}` and answers a JSON array of
float arrays; `GET /info` says how many inputs one request may carry (`max_client_batch_size`), so larger
calls are split here rather than rejected there with 413.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx
import numpy as np

from leanrank.encode.base import Matrix
from leanrank.errors import BackendError, ConfigError
from leanrank.retry import RetryPolicy, retry_after_s

_log = logging.getLogger(__name__)

# Overload and gateway failures pass; validation errors (4xx) would fail the same way again.
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# The request never reached the model or the connection dropped: safe to resend (embedding is idempotent).
# A read timeout is not retried: the server is busy with the batch, resending doubles its load.
_RETRY_ERRORS = (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ConnectTimeout)


@dataclass(frozen=True, slots=True)
class _Info:
    model_id: str
    max_client_batch_size: int


class TeiEmbedEncoder:
    """Client for one TEI server; thread-safe (httpx.Client is), close it or use it as a context manager.

    `query_prefix`/`passage_prefix` are prepended to the text sent, for models trained with instructions
    (e5: `"query: "`, `"passage: "`); bge-m3 needs none. `batch_size` caps inputs per request below the
    server's own limit. Requests failing with 429/5xx or a dropped connection are retried `max_retries`
    times with jittered exponential backoff starting at `backoff_s`, or after the server's `Retry-After`
    (`leanrank.retry`), at most 10 s apart.
    """

    def __init__(
        self,
        url: str,
        *,
        query_prefix: str = "",
        passage_prefix: str = "",
        batch_size: int | None = None,
        timeout: float | httpx.Timeout = 30.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        api_key: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"TEI url must start with http:// or https://, got {url!r}")
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        if max_retries < 0 or backoff_s < 0:
            raise ConfigError("max_retries and backoff_s must not be negative")
        self._url = url.rstrip("/")
        self._query_prefix = query_prefix
        self._passage_prefix = passage_prefix
        self._batch_size = batch_size
        self._retry = RetryPolicy(max_attempts=max_retries + 1, backoff_s=backoff_s, max_wait_s=10.0)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=self._url, timeout=timeout, headers=headers, transport=transport)
        self._lock = threading.Lock()
        self._info_cache: _Info | None = None
        self._dim: int | None = None

    @property
    def name(self) -> str:
        return f"tei/{self._info().model_id}"

    @property
    def dim(self) -> int:
        if self._dim is None:  # TEI's /info does not state it: one tiny embedding does.
            return int(self._embed(["dim"]).shape[1])
        return self._dim

    def embed_passages(self, texts: Sequence[str]) -> Matrix:
        return self._embed([self._passage_prefix + text for text in texts])

    def embed_query(self, text: str) -> Matrix:
        row: Matrix = self._embed([self._query_prefix + text])[0]
        return row

    def token_count(self, text: str) -> int:
        if not text:
            return 0
        body = self._request("POST", "/tokenize", {"inputs": text, "add_special_tokens": False})
        if not isinstance(body, list) or len(body) != 1 or not isinstance(body[0], list):
            raise BackendError(f"TEI /tokenize returned {_preview(body)}, expected one list of tokens")
        return len(body[0])

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _embed(self, inputs: list[str]) -> Matrix:
        if not inputs:
            return np.zeros((0, self.dim), dtype=np.float32)
        step = self._info().max_client_batch_size
        if self._batch_size is not None:
            step = min(step, self._batch_size)
        chunks = [self._embed_batch(inputs[i : i + step]) for i in range(0, len(inputs), step)]
        return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]

    def _embed_batch(self, inputs: list[str]) -> Matrix:
        body = self._request("POST", "/embed", {"inputs": inputs, "normalize": True, "truncate": True})
        try:
            matrix = np.asarray(body, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise BackendError(f"TEI /embed returned {_preview(body)}, expected arrays of floats") from exc
        if matrix.ndim != 2 or matrix.shape[0] != len(inputs) or matrix.shape[1] == 0:
            raise BackendError(
                f"TEI /embed returned shape {matrix.shape} for {len(inputs)} inputs, expected one row each"
            )
        if not np.isfinite(matrix).all():
            raise BackendError("TEI /embed returned non-finite values")
        if self._dim is None:
            self._dim = matrix.shape[1]
        elif matrix.shape[1] != self._dim:
            raise BackendError(f"TEI embedding dimension changed from {self._dim} to {matrix.shape[1]}")
        return matrix

    def _info(self) -> _Info:
        with self._lock:
            if self._info_cache is None:
                body = self._request("GET", "/info", None)
                model_id = body.get("model_id") if isinstance(body, dict) else None
                limit = body.get("max_client_batch_size") if isinstance(body, dict) else None
                if not isinstance(model_id, str) or not isinstance(limit, int) or limit < 1:
                    raise BackendError(f"TEI /info returned {_preview(body)}, expected model_id and limits")
                self._info_cache = _Info(model_id=model_id, max_client_batch_size=limit)
            return self._info_cache

    def _request(self, method: str, path: str, payload: dict[str, Any] | None) -> Any:
        """JSON body of the response, retrying transient failures; BackendError once they persist."""
        where = f"TEI {method} {self._url}{path}"
        failure, retry_after = "", None
        for attempt in range(self._retry.max_attempts):
            if attempt:
                delay = self._retry.wait_s(attempt, retry_after)
                _log.warning("%s failed (%s); retry %d in %.1fs", where, failure, attempt, delay)
                time.sleep(delay)
            retry_after = None
            try:
                response = self._client.request(method, path, json=payload)
            except _RETRY_ERRORS as exc:
                failure = f"{type(exc).__name__}: {exc}"
                continue
            except httpx.HTTPError as exc:
                raise BackendError(f"{where} failed: {type(exc).__name__}: {exc}") from exc
            if response.status_code in _RETRY_STATUSES:
                failure, retry_after = _describe(response), retry_after_s(response.headers)
                continue
            if response.is_error:
                raise BackendError(f"{where} failed: {_describe(response)}")
            try:
                return response.json()
            except ValueError as exc:
                raise BackendError(f"{where} returned invalid JSON: {response.text[:200]!r}") from exc
        raise BackendError(f"{where} failed after {self._retry.max_attempts} attempts: {failure}")


def _describe(response: httpx.Response) -> str:
    """`HTTP 413: batch size 64 > maximum allowed batch size 32`: TEI's JSON `error`, else the raw body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    message = body.get("error") if isinstance(body, dict) else None
    if not isinstance(message, str):
        message = response.text[:200] or response.reason_phrase
    return f"HTTP {response.status_code}: {message}"


def _preview(body: Any) -> str:
    text = repr(body)
    return text if len(text) <= 120 else text[:117] + "..."
