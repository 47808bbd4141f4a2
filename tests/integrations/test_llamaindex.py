"""`LeanrankPostprocessor` against the real llama-index-core, offline: hand-made nodes, a mock LLM."""

from __future__ import annotations

import copy
from typing import Any, Literal

import pytest
from llama_index.core import Settings
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.instrumentation.span_handlers import SimpleSpanHandler
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.response_synthesizers import ResponseMode
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from pydantic import Field, ValidationError

from leanrank.integrations import USAGE_KEY
from leanrank.integrations.llamaindex import LeanrankPostprocessor
from leanrank.rerank.guard import GuardedReranker
from leanrank.rerank.identity import IdentityReranker
from tests.integrations.conftest import QUERY, TEXTS
from tests.rerank.servers import FakeProvider, adapter, score_of

Path = Literal["async", "sync-in-loop"]


@pytest.fixture(autouse=True)
def offline_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing may fall back to OpenAI. The private fields: the public getters would resolve OpenAI first."""
    monkeypatch.setattr(Settings, "_llm", MockLLM())
    monkeypatch.setattr(Settings, "_embed_model", MockEmbedding(embed_dim=8))


def nodes() -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(id_=f"n{i}", text=t, metadata={"file_name": f"f{i}.md"}), score=0.5)
        for i, t in enumerate(TEXTS)
    ]


async def postprocess(
    processor: LeanrankPostprocessor, given: list[NodeWithScore], path: Path, query: str | None = QUERY
) -> list[NodeWithScore]:
    if path == "async":
        return await processor.apostprocess_nodes(given, query_str=query)
    # The sync method called while this test's event loop runs (Jupyter, async web apps).
    return processor.postprocess_nodes(given, query_str=query)


def test_identity_keeps_first_stage_order_and_top_3_by_default() -> None:
    out = LeanrankPostprocessor(reranker=IdentityReranker()).postprocess_nodes(nodes(), query_str=QUERY)
    assert [n.node_id for n in out] == ["n0", "n1", "n2"]
    assert [n.score for n in out] == [1.0, 1 - 1 / 5, 1 - 2 / 5]
    usage = out[0].node.metadata[USAGE_KEY]
    assert usage["backend"] == "identity"
    assert (usage["billed_units"], usage["cost_usd"], usage["documents"]) == (0.0, 0.0, 5)
    assert out[0].node.metadata["file_name"] == "f0.md"


@pytest.mark.parametrize("path", ["async", "sync-in-loop"])
async def test_cohere_orders_by_score_and_records_usage(cohere: FakeProvider, path: Path) -> None:
    model = adapter(cohere)
    out = await postprocess(LeanrankPostprocessor(reranker=model, top_n=None), nodes(), path)
    assert [n.get_content() for n in out] == sorted(TEXTS, key=score_of, reverse=True)
    assert all(n.score == score_of(n.get_content()) for n in out)
    (request,) = cohere.requests
    assert request.body["documents"] == TEXTS  # content only: metadata would be billed
    usage = out[0].node.metadata[USAGE_KEY]
    assert usage["backend"] == model.name
    assert (usage["billed_units"], usage["billed_unit"], usage["count_source"]) == (
        1,
        "search_units",
        "reported",
    )
    assert {"query_tokens", "document_tokens", "cost_usd"} <= usage.keys()
    assert all(n.node.metadata[USAGE_KEY] == usage for n in out)


def test_sync_without_a_loop_matches_async(cohere: FakeProvider) -> None:
    out = LeanrankPostprocessor(reranker=adapter(cohere), top_n=2).postprocess_nodes(nodes(), query_str=QUERY)
    best = sorted(TEXTS, key=score_of, reverse=True)[:2]
    assert [n.node_id for n in out] == [f"n{TEXTS.index(t)}" for t in best]


def test_usage_stays_out_of_llm_and_embedding_text() -> None:
    (top,) = LeanrankPostprocessor(reranker="identity", top_n=1).postprocess_nodes(nodes(), query_str=QUERY)
    for mode in (MetadataMode.LLM, MetadataMode.EMBED):
        text = top.node.get_content(metadata_mode=mode)
        assert "f0.md" in text
        assert USAGE_KEY not in text
        assert "billed" not in text


def test_metadata_mode_embed_sends_metadata(cohere: FakeProvider) -> None:
    processor = LeanrankPostprocessor(reranker=adapter(cohere), metadata_mode=MetadataMode.EMBED)
    processor.postprocess_nodes(nodes()[:1], query_str=QUERY)
    assert cohere.requests[0].body["documents"] == [f"file_name: f0.md\n\n{TEXTS[0]}"]


@pytest.mark.parametrize("path", ["async", "sync-in-loop"])
async def test_input_is_untouched(cohere: FakeProvider, path: Path) -> None:
    given = nodes()
    before = copy.deepcopy(given)
    out = await postprocess(LeanrankPostprocessor(reranker=adapter(cohere)), given, path)
    assert [n.model_dump() for n in given] == [n.model_dump() for n in before]
    assert not {id(n) for n in out} & {id(n) for n in given}
    assert not {id(n.node) for n in out} & {id(n.node) for n in given}


@pytest.mark.parametrize("path", ["async", "sync-in-loop"])
async def test_empty_input_makes_no_call(cohere: FakeProvider, path: Path) -> None:
    assert await postprocess(LeanrankPostprocessor(reranker=adapter(cohere)), [], path) == []
    assert cohere.requests == []


@pytest.mark.parametrize("path", ["async", "sync-in-loop"])
async def test_missing_query_is_a_value_error(cohere: FakeProvider, path: Path) -> None:
    with pytest.raises(ValueError, match="query bundle"):
        await postprocess(LeanrankPostprocessor(reranker=adapter(cohere)), nodes(), path, query=None)
    assert cohere.requests == []


def test_catalog_name_and_validation() -> None:
    processor = LeanrankPostprocessor(reranker="identity")
    guarded = processor.reranker
    assert isinstance(guarded, GuardedReranker)
    assert isinstance(guarded.inner, IdentityReranker)
    assert processor.to_dict()["class_name"] == "LeanrankPostprocessor"
    with pytest.raises(ValidationError, match="reranker"):
        LeanrankPostprocessor(reranker=42)
    with pytest.raises(ValidationError, match="top_n"):
        LeanrankPostprocessor(reranker="identity", top_n=0)


class ListRetriever(BaseRetriever):
    """A first stage that returns fresh copies of its nodes for any query."""

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return nodes()


async def test_plugs_into_a_query_engine(cohere: FakeProvider) -> None:
    engine = RetrieverQueryEngine.from_args(
        ListRetriever(),
        llm=MockLLM(),
        node_postprocessors=[LeanrankPostprocessor(reranker=adapter(cohere), top_n=2)],
        response_mode=ResponseMode.NO_TEXT,
    )
    best = sorted(TEXTS, key=score_of, reverse=True)[:2]
    assert [n.get_content() for n in (await engine.aquery(QUERY)).source_nodes] == best
    assert [n.get_content() for n in engine.query(QUERY).source_nodes] == best
    assert cohere.batch_sizes() == [5, 5]


class _Collected(BaseEventHandler):
    events: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Collected"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)


@pytest.mark.parametrize("path", ["async", "sync-in-loop"])
async def test_each_call_is_an_instrumentation_span_with_rerank_events(path: Path) -> None:
    root = get_dispatcher()
    events, spans = _Collected(), SimpleSpanHandler()
    root.add_event_handler(events)
    root.add_span_handler(spans)
    try:
        kept = await postprocess(LeanrankPostprocessor(reranker="identity", top_n=2), nodes(), path)
    finally:
        root.event_handlers.remove(events)
        root.span_handlers.remove(spans)
    start, end = [e for e in events.events if isinstance(e, (ReRankStartEvent, ReRankEndEvent))]
    assert isinstance(start, ReRankStartEvent)
    assert (start.model_name, start.top_n, len(start.nodes)) == ("identity", 2, len(TEXTS))
    assert isinstance(end, ReRankEndEvent)
    assert [n.node.node_id for n in end.nodes] == [n.node.node_id for n in kept]
    ours = [s for s in spans.completed_spans if s.id_.startswith("LeanrankPostprocessor._apostprocess_nodes")]
    assert len(ours) == 1
    assert start.span_id == end.span_id == ours[0].id_  # the events belong to the call's span
