"""The typed catalog: names build the right backend with validated options, and mistakes say what to do."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from leanrank.errors import ConfigError
from leanrank.rerank.base import Reranker
from leanrank.rerank.catalog import CATALOG, catalog_rows, reranker
from leanrank.rerank.fallback import FallbackReranker
from leanrank.rerank.guard import GuardedReranker
from leanrank.rerank.identity import IdentityReranker
from leanrank.rerank.providers import PROVIDERS, HttpReranker
from leanrank.rerank.windows import WindowedReranker
from tests.rerank.servers import API_KEY, MODEL, FakeProvider, score_of


@pytest.fixture
def jina(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProvider]:
    server = FakeProvider("jina")
    monkeypatch.setenv("LEANRANK_JINA_BASE_URL", server.url)
    monkeypatch.setenv("LEANRANK_JINA_API_KEY", API_KEY)
    yield server
    server.close()


def test_every_provider_has_a_catalog_entry() -> None:
    assert set(PROVIDERS) <= set(CATALOG)
    assert {"identity", "local"} <= set(CATALOG)
    assert [row["kind"] for row in catalog_rows()] == list(CATALOG)


def unguarded(model: Reranker) -> Reranker:
    """What the catalog built, behind the guard every name gets."""
    assert isinstance(model, GuardedReranker)
    return model.inner


def test_identity() -> None:
    assert isinstance(unguarded(reranker("identity")), IdentityReranker)


@pytest.mark.parametrize("name", ["nope", "nope:model", "cohere", "identity:x", "tei"])
def test_unknown_names_say_how_to_list_the_known(name: str) -> None:
    with pytest.raises(ConfigError, match="leanrank backends"):
        reranker(name)


def test_options_are_validated_per_kind(jina: FakeProvider) -> None:
    with pytest.raises(ConfigError, match=r"option timeout_sec: Extra inputs.*options: .*timeout_s"):
        reranker(f"jina:{MODEL}?timeout_sec=3")
    with pytest.raises(ConfigError, match="option timeout_s"):
        reranker(f"jina:{MODEL}?timeout_s=-1")
    with pytest.raises(ConfigError, match="option runtime"):
        reranker("local:/models/x?runtime=tensorflow")


async def test_http_name_with_options_reaches_the_provider(jina: FakeProvider) -> None:
    model = reranker(f"jina:{MODEL}?max_docs=2&timeout_s=5")
    assert isinstance(unguarded(model), HttpReranker)
    response = await model.rerank("q", ["a", "b", "c"])
    assert response.scores == pytest.approx([score_of(d) for d in "abc"])
    assert jina.batch_sizes() == [2, 1]


async def test_document_caps_wrap_the_provider(jina: FakeProvider) -> None:
    model = reranker(f"jina:{MODEL}?max_doc_tokens=64&long_docs=maxpool")
    assert isinstance(unguarded(model), WindowedReranker)
    long_doc = " ".join(["слово"] * 200)
    response = await model.rerank("q", [long_doc, "short"])
    assert len(response.scores) == 2
    sent = jina.requests[0].body["documents"]
    assert len(sent) > 2
    assert sent[-1] == "short"


def test_providers_with_documented_caps_get_them_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEANRANK_COHERE_API_KEY", "k")
    model = unguarded(reranker("cohere:rerank-v3.5"))
    assert isinstance(model, WindowedReranker)
    assert model.policy.max_tokens == 4_096
    assert model.policy.max_query_tokens == 2_048
    assert model.policy.mode == "truncate"


def test_a_pipe_makes_a_fallback_chain(jina: FakeProvider) -> None:
    chain = unguarded(reranker(f"jina:{MODEL} | identity"))
    assert isinstance(chain, FallbackReranker)
    assert [type(link) for link in chain.chain] == [HttpReranker, IdentityReranker]


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEANRANK_VOYAGE_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="LEANRANK_VOYAGE_API_KEY"):
        reranker("voyage:rerank-2.5")
