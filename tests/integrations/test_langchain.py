"""`LeanrankCompressor` against the real langchain-core and LangChain's own `ContextualCompressionRetriever`
(langchain-classic, in the `langchain` extra): order, top_n, scores, usage, sync and async paths."""

from __future__ import annotations

import copy
from typing import Literal

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ValidationError

from leanrank.integrations import USAGE_KEY
from leanrank.integrations.langchain import SCORE_KEY, LeanrankCompressor
from leanrank.rerank.guard import GuardedReranker
from leanrank.rerank.identity import IdentityReranker
from tests.integrations.conftest import QUERY, TEXTS
from tests.rerank.servers import FakeProvider, adapter, score_of

Path = Literal["async", "sync-in-loop"]


def docs() -> list[Document]:
    return [Document(page_content=t, metadata={"source": f"s{i}"}, id=f"d{i}") for i, t in enumerate(TEXTS)]


async def compress(compressor: LeanrankCompressor, documents: list[Document], path: Path) -> list[Document]:
    if path == "async":
        return list(await compressor.acompress_documents(documents, QUERY))
    # The sync method called while this test's event loop runs (Jupyter, async web apps).
    return list(compressor.compress_documents(documents, QUERY))


def test_identity_keeps_first_stage_order_and_top_3_by_default() -> None:
    out = LeanrankCompressor(reranker=IdentityReranker()).compress_documents(docs(), QUERY)
    assert [d.id for d in out] == ["d0", "d1", "d2"]
    assert [d.metadata[SCORE_KEY] for d in out] == [1.0, 1 - 1 / 5, 1 - 2 / 5]
    assert [d.metadata["source"] for d in out] == ["s0", "s1", "s2"]
    usage = out[0].metadata[USAGE_KEY]
    assert usage["backend"] == "identity"
    assert (usage["billed_units"], usage["cost_usd"], usage["documents"]) == (0.0, 0.0, 5)


@pytest.mark.parametrize("path", ["async", "sync-in-loop"])
async def test_cohere_orders_by_score_and_records_usage(cohere: FakeProvider, path: Path) -> None:
    model = adapter(cohere)
    out = await compress(LeanrankCompressor(reranker=model, top_n=None), docs(), path)
    assert [d.page_content for d in out] == sorted(TEXTS, key=score_of, reverse=True)
    assert all(d.metadata[SCORE_KEY] == score_of(d.page_content) for d in out)
    assert cohere.batch_sizes() == [5]
    usage = out[0].metadata[USAGE_KEY]
    assert usage["backend"] == model.name
    assert (usage["billed_units"], usage["billed_unit"], usage["count_source"]) == (
        1,
        "search_units",
        "reported",
    )
    assert {"query_tokens", "document_tokens", "cost_usd"} <= usage.keys()
    assert all(d.metadata[USAGE_KEY] == usage for d in out)
    assert out[0].metadata[USAGE_KEY] is not out[1].metadata[USAGE_KEY]


def test_sync_without_a_loop_matches_async(cohere: FakeProvider) -> None:
    compressor = LeanrankCompressor(reranker=adapter(cohere), top_n=2)
    out = compressor.compress_documents(docs(), QUERY)
    best = sorted(TEXTS, key=score_of, reverse=True)[:2]
    assert [d.page_content for d in out] == best
    assert [d.id for d in out] == [f"d{TEXTS.index(t)}" for t in best]


@pytest.mark.parametrize("path", ["async", "sync-in-loop"])
async def test_input_is_untouched(cohere: FakeProvider, path: Path) -> None:
    given = docs()
    before = copy.deepcopy(given)
    out = await compress(LeanrankCompressor(reranker=adapter(cohere)), given, path)
    assert given == before
    assert all(SCORE_KEY not in d.metadata for d in given)
    assert not {id(d) for d in out} & {id(d) for d in given}


@pytest.mark.parametrize("path", ["async", "sync-in-loop"])
async def test_empty_input_makes_no_call(cohere: FakeProvider, path: Path) -> None:
    assert await compress(LeanrankCompressor(reranker=adapter(cohere)), [], path) == []
    assert cohere.requests == []


def test_catalog_name_and_validation() -> None:
    model = LeanrankCompressor(reranker="identity").reranker
    assert isinstance(model, GuardedReranker)
    assert isinstance(model.inner, IdentityReranker)
    with pytest.raises(ValidationError, match="reranker"):
        LeanrankCompressor(reranker=42)
    with pytest.raises(ValidationError, match="top_n"):
        LeanrankCompressor(reranker="identity", top_n=0)


class ListRetriever(BaseRetriever):
    """A first stage that returns its documents for any query."""

    documents: list[Document]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return list(self.documents)


async def test_plugs_into_a_compression_retriever(cohere: FakeProvider) -> None:
    retriever = ContextualCompressionRetriever(
        base_compressor=LeanrankCompressor(reranker=adapter(cohere), top_n=2),
        base_retriever=ListRetriever(documents=docs()),
    )
    best = sorted(TEXTS, key=score_of, reverse=True)[:2]
    assert [d.page_content for d in await retriever.ainvoke(QUERY)] == best
    assert [d.page_content for d in retriever.invoke(QUERY)] == best
    assert cohere.batch_sizes() == [5, 5]
