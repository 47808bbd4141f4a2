"""`LeanrankPostprocessor`: any leanrank reranker as a LlamaIndex node postprocessor.

Goes in `node_postprocessors=[...]` of a query engine or is called on its own. Needs the extra
`leanrank[llamaindex]`; without it, importing this module raises `DependencyError` naming it.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from leanrank.aio import run_sync as _run_sync
from leanrank.errors import DependencyError
from leanrank.integrations import USAGE_KEY, _best, _resolve, _usage_record
from leanrank.rerank.base import Reranker

try:
    from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]  # re-exported
    from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import BaseNode, MetadataMode, NodeWithScore, QueryBundle
except ImportError as exc:
    raise DependencyError("llama-index-core", "llamaindex") from exc

__all__ = ["USAGE_KEY", "LeanrankPostprocessor"]

dispatcher = get_dispatcher(__name__)


class LeanrankPostprocessor(BaseNodePostprocessor):
    """Keeps the `top_n` nodes (all if None) the reranker scores best, best first, with `.score` set to it.

    Results are new `NodeWithScore`s over copies of the nodes carrying `metadata[USAGE_KEY]` (the whole
    call's usage, see `leanrank.integrations`); the key is excluded from the LLM and embedding text so the
    record never reaches a prompt. `reranker` takes a `Reranker` or a catalog name. Nodes are scored by
    their content with `metadata_mode` (default: none), because metadata sent to a paid reranker is billed.
    Empty input returns `[]` without calling the reranker; a missing query is a `ValueError`.

    Each call is a LlamaIndex instrumentation span with `ReRankStartEvent` and `ReRankEndEvent`, as
    LlamaIndex's own rerankers emit, so its event handlers and tracing integrations see it.
    """

    reranker: Reranker = Field(exclude=True)
    top_n: int | None = Field(default=3, ge=1)
    metadata_mode: MetadataMode = MetadataMode.NONE

    @field_validator("reranker", mode="before")
    @classmethod
    def _by_name(cls, value: object) -> object:
        return _resolve(value)

    @classmethod
    def class_name(cls) -> str:
        return "LeanrankPostprocessor"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        """Sync wrapper of `_apostprocess_nodes`; safe to call while an event loop is running."""
        return _run_sync(lambda: self._apostprocess_nodes(nodes, query_bundle))

    @dispatcher.span
    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        """Native async: the base class would run the sync method in a thread."""
        if query_bundle is None:
            raise ValueError("Missing query bundle in extra info.")
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle, nodes=nodes, top_n=self.top_n or len(nodes), model_name=self.reranker.name
            )
        )
        kept: list[NodeWithScore] = []
        if nodes:
            texts = [item.node.get_content(metadata_mode=self.metadata_mode) for item in nodes]
            response = await self.reranker.rerank(query_bundle.query_str, texts)
            usage = _usage_record(self.reranker, response)
            kept = [
                NodeWithScore(node=_with_usage(nodes[i].node, usage), score=response.scores[i])
                for i in _best(response.scores, self.top_n)
            ]
        dispatcher.event(ReRankEndEvent(nodes=kept))
        return kept


def _with_usage(node: BaseNode, usage: dict[str, Any]) -> BaseNode:
    """A copy of `node` carrying `usage`, hidden from the text LLMs and embedders see."""

    def hidden(keys: list[str]) -> list[str]:
        return keys if USAGE_KEY in keys else [*keys, USAGE_KEY]

    return node.model_copy(
        update={
            "metadata": {**node.metadata, USAGE_KEY: dict(usage)},
            "excluded_llm_metadata_keys": hidden(node.excluded_llm_metadata_keys),
            "excluded_embed_metadata_keys": hidden(node.excluded_embed_metadata_keys),
        }
    )
