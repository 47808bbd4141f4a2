"""Sync wrappers over leanrank's async core that also work inside a running event loop.

`asyncio.run` refuses to start while a loop runs in the thread (a notebook cell, an `async def` web
handler calling a sync API), so there the coroutine runs on a private loop in a worker thread and the
caller waits for it, as for any blocking call. Context variables (tracing spans) travel along.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

_T = TypeVar("_T")


def run_sync(call: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """The result of the coroutine `call()` makes, from sync code, whether or not a loop is running here.

    `call` is a factory so the coroutine is created on the loop that runs it.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(call())
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="leanrank-sync") as pool:
        return pool.submit(context.run, lambda: asyncio.run(call())).result()
