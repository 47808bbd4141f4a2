"""OpenTelemetry spans for the stages of a search and of a metered rerank call (extra `leanrank[otel]`).

Spans: `leanrank.search` around `leanrank.retrieve`, `leanrank.cascade` and `leanrank.rerank` (one metered
rerank call: backend, documents, tokens, cost), which holds `leanrank.ledger.write`. leanrank only uses
the OpenTelemetry API: spans go to the tracer provider the application configured (with none, the API's
no-op one), and without the API installed every call here does nothing. Token counts use the GenAI
semantic conventions' `gen_ai.usage.input_tokens`; the rest are `leanrank.*` attributes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ParamSpec, Protocol, TypeVar

try:
    from opentelemetry import trace
except ImportError:  # the `otel` extra is not installed: spans are no-ops
    trace = None  # type: ignore[assignment]

AttributeValue = str | bool | int | float
_P = ParamSpec("_P")
_R = TypeVar("_R")


class Annotator(Protocol):
    """What a stage may do to its span: add attributes known only at its end."""

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None: ...


class _NoSpan:
    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        pass


@contextmanager
def span(name: str, attributes: Mapping[str, AttributeValue | None] | None = None) -> Iterator[Annotator]:
    """A span named `name`, current inside the block, with the attributes that are not None.

    An exception leaving the block is recorded on the span, which is marked as an error.
    """
    if trace is None:
        yield _NoSpan()
        return
    given = {k: v for k, v in (attributes or {}).items() if v is not None}
    with trace.get_tracer("leanrank").start_as_current_span(name, attributes=given) as current:
        yield current


def traced(
    name: str,
) -> Callable[[Callable[_P, Coroutine[Any, Any, _R]]], Callable[_P, Coroutine[Any, Any, _R]]]:
    """An async function run inside a span named `name` (the parent of the spans its stages open)."""

    def decorate(function: Callable[_P, Coroutine[Any, Any, _R]]) -> Callable[_P, Coroutine[Any, Any, _R]]:
        @functools.wraps(function)
        async def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            with span(name):
                return await function(*args, **kwargs)

        return run

    return decorate
