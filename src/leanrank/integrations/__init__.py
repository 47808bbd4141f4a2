"""Adapters that put any leanrank `Reranker` into LangChain and LlamaIndex pipelines.

`leanrank.integrations.langchain.LeanrankCompressor` (extra `leanrank[langchain]`) and
`leanrank.integrations.llamaindex.LeanrankPostprocessor` (extra `leanrank[llamaindex]`) behave alike: they
rerank by text, keep the best `top_n` as new objects (the caller's inputs are never changed), and attach
the call's usage to every result under `metadata[USAGE_KEY]`. Usage travels with the results rather than
in an attribute of the adapter because one adapter serves concurrent calls; it is the usage of the whole
call (every document scored, not just the ones kept), so bill it once per call, not once per result.

This module imports neither framework, so it is always importable; the helpers below are shared by the
two adapters and are not public API.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from leanrank.rerank.base import Reranker, RerankResponse
from leanrank.rerank.catalog import reranker as _by_name

USAGE_KEY = "leanrank_usage"

__all__ = ["USAGE_KEY"]

_T = TypeVar("_T")


def _resolve(value: object) -> object:
    """A catalog name becomes the reranker it names; anything else is left to the model's validation."""
    return _by_name(value) if isinstance(value, str) else value


def _best(scores: tuple[float, ...], top_n: int | None) -> list[int]:
    """Indices of the `top_n` best scores, best first; ties keep input order (the first stage's)."""
    return sorted(range(len(scores)), key=lambda i: -scores[i])[:top_n]


def _usage_record(model: Reranker, response: RerankResponse) -> dict[str, Any]:
    """The usage as a plain dict, so it survives the frameworks' serialisation and needs no leanrank types."""
    return {"backend": response.served_by or model.name, **dataclasses.asdict(response.usage)}


def _run_sync(call: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run an async call from sync code, also where an event loop is already running (Jupyter, async apps).

    `asyncio.run` refuses to nest, so under a running loop the call gets its own loop in a worker thread;
    the caller's loop is blocked until it returns, as any sync call would block it. Context variables
    (tracing spans) are carried over to the worker.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(call())
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="leanrank-sync") as pool:
        return pool.submit(context.run, lambda: asyncio.run(call())).result()
