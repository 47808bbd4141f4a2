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

import dataclasses
from typing import Any

from leanrank.rerank.base import Reranker, RerankResponse, rank_order
from leanrank.rerank.catalog import reranker as _by_name
from leanrank.rerank.guard import guard

USAGE_KEY = "leanrank_usage"

__all__ = ["USAGE_KEY"]


def _resolve(value: object) -> object:
    """A catalog name becomes the reranker it names, a `Reranker` goes behind the guard (blank documents
    and non-finite scores); anything else is left to the model's validation."""
    if isinstance(value, str):
        return _by_name(value)
    return guard(value) if isinstance(value, Reranker) else value


def _best(scores: tuple[float, ...], top_n: int | None) -> list[int]:
    """Indices of the `top_n` best scores, best first; ties keep input order (the first stage's)."""
    return rank_order(scores, top_n)


def _usage_record(model: Reranker, response: RerankResponse) -> dict[str, Any]:
    """The usage as a plain dict, so it survives the frameworks' serialisation and needs no leanrank types."""
    return {"backend": response.served_by or model.name, **dataclasses.asdict(response.usage)}
