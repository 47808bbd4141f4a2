"""The drop-in rerank gateway over a real loopback server: the official Cohere SDK, a TEI client and a
Jina-format request each get their provider's wire back, answered by a loopback fake provider behind it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cohere
import pytest

from leanrank.pipeline import Pipeline
from leanrank.rerank.fallback import FallbackReranker
from leanrank.rerank.identity import IdentityReranker
from leanrank.retry import RetryPolicy
from leanrank.serve import create_app
from leanrank.settings import BudgetSettings, CostSettings
from tests.rerank.servers import FakeProvider, Fault, adapter, score_of, tokens_of
from tests.serve.conftest import ADMIN_KEY, COOKING_KEY, DEMO_KEY, settings_for
from tests.serve.live import LiveServer

QUERY = "Как работает цикл for?"
DOCS = [f"Фрагмент {i}: цикл for перебирает элементы, шаг {i}." for i in range(12)]


def best_first(docs: list[str]) -> list[int]:
    return sorted(range(len(docs)), key=lambda i: -score_of(docs[i]))


@pytest.fixture(scope="module")
def cohere_fake() -> Iterator[FakeProvider]:
    fake = FakeProvider("cohere")
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, cohere_fake: FakeProvider, index: Pipeline
) -> Iterator[LiveServer]:
    """The gateway with a Cohere-format provider behind it (the fake bills 1 search unit per 100 docs)."""
    app = create_app(
        settings_for(tmp_path_factory.mktemp("gw")), reranker=adapter(cohere_fake), pipeline=index
    )
    server = LiveServer(app)
    yield server
    server.close()


def test_the_official_cohere_sdk_reranks_through_the_gateway(gateway: LiveServer) -> None:
    client = cohere.ClientV2(api_key=ADMIN_KEY, base_url=gateway.url)
    response = client.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS, top_n=3)
    expected = best_first(DOCS)[:3]
    assert [r.index for r in response.results] == expected
    assert [r.relevance_score for r in response.results] == pytest.approx(
        [score_of(DOCS[i]) for i in expected]
    )
    assert response.meta is not None
    assert response.meta.billed_units is not None
    assert response.meta.billed_units.search_units == 1


def test_the_cohere_sdk_with_a_wrong_key_is_refused(gateway: LiveServer) -> None:
    client = cohere.ClientV2(api_key="not-a-key", base_url=gateway.url)
    with pytest.raises(cohere.errors.UnauthorizedError):
        client.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS)


def test_v1_rerank_answers_a_cohere_body_in_cohere_shape(gateway: LiveServer) -> None:
    with gateway.client(ADMIN_KEY) as http:
        reply = http.post("/v1/rerank", json={"model": "rerank-v3.5", "query": QUERY, "documents": DOCS})
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {"id", "results", "meta"}
    assert [r["index"] for r in body["results"]] == best_first(DOCS)
    assert body["meta"]["billed_units"]["search_units"] == 1
    assert body["id"] == reply.headers["x-request-id"]
    assert reply.headers["x-leanrank-backend"].startswith("cohere:")


def test_tei_clients_get_a_bare_array_best_first(gateway: LiveServer) -> None:
    with gateway.client(ADMIN_KEY) as http:
        reply = http.post("/rerank", json={"query": QUERY, "texts": DOCS, "return_text": True})
    assert reply.status_code == 200
    ranks = reply.json()
    assert [r["index"] for r in ranks] == best_first(DOCS)
    assert all(r["text"] == DOCS[r["index"]] for r in ranks)
    assert [r["score"] for r in ranks] == pytest.approx(sorted((score_of(d) for d in DOCS), reverse=True))
    assert int(reply.headers["x-compute-tokens"]) > 0
    with gateway.client(ADMIN_KEY) as http:
        bare = http.post("/rerank", json={"query": QUERY, "texts": DOCS[:2]}).json()
    assert all("text" not in r for r in bare)


def test_tei_empty_texts_is_400_as_tei_answers(gateway: LiveServer) -> None:
    with gateway.client(ADMIN_KEY) as http:
        reply = http.post("/rerank", json={"query": QUERY, "texts": []})
    assert reply.status_code == 400
    assert reply.json()["error_type"] == "empty_input"


def test_a_scoped_key_bills_its_own_course_once_per_request_id(gateway: LiveServer) -> None:
    body = {"query": QUERY, "documents": DOCS[:2]}
    with gateway.client(DEMO_KEY, headers={"x-request-id": "retried-1"}) as http:
        assert http.post("/v2/rerank", json=body).status_code == 200
        retry = http.post("/v2/rerank", json=body)  # a client's retry: the first answer, replayed
        assert (retry.status_code, retry.headers["x-leanrank-replayed"]) == (200, "true")
        rows = http.get("/v1/usage").json()["rows"]
    assert [(r["key"], r["calls"], r["requests"]) for r in rows] == [("demo", 1, 1)]


def test_jina_format_request(tmp_path: Path, index: Pipeline) -> None:
    jina = FakeProvider("jina")
    server = LiveServer(create_app(settings_for(tmp_path), reranker=adapter(jina), pipeline=index))
    try:
        docs = [{"text": d} for d in DOCS[:4]]
        with server.client(ADMIN_KEY) as http:
            reply = http.post(
                "/v1/rerank",
                json={
                    "model": "jina-reranker-v2-base-multilingual",
                    "query": QUERY,
                    "documents": docs,
                    "top_n": 2,
                    "return_documents": True,
                },
            )
    finally:
        server.close()
        jina.close()
    assert reply.status_code == 200
    body = reply.json()
    assert body["model"] == "jina-reranker-v2-base-multilingual"
    assert body["usage"]["total_tokens"] == tokens_of(QUERY) * 4 + sum(tokens_of(d) for d in DOCS[:4])
    assert [r["index"] for r in body["results"]] == best_first(DOCS[:4])[:2]
    assert all(r["document"]["text"] == DOCS[r["index"]] for r in body["results"])


def test_a_failing_provider_falls_back_and_says_so(tmp_path: Path, index: Pipeline) -> None:
    fake = FakeProvider("cohere")
    fake.script(Fault(503))
    chain = FallbackReranker([adapter(fake, retry=RetryPolicy(max_attempts=1)), IdentityReranker()])
    server = LiveServer(create_app(settings_for(tmp_path), reranker=chain, pipeline=index))
    try:
        with server.client(ADMIN_KEY) as http:
            reply = http.post("/v1/rerank", json={"query": QUERY, "documents": DOCS[:3]})
    finally:
        server.close()
        fake.close()
    assert reply.status_code == 200
    assert reply.headers["x-leanrank-backend"] == "identity"
    assert [r["index"] for r in reply.json()["results"]] == [0, 1, 2]


def test_keys_are_checked_before_the_body(gateway: LiveServer) -> None:
    with gateway.client(None) as http:
        reply = http.post("/v1/rerank", content=b"not json", headers={"content-type": "application/json"})
    assert reply.status_code == 401
    with gateway.client("lr_wrong") as http:
        assert http.post("/v1/rerank", json={"query": QUERY, "documents": DOCS}).status_code == 401


def test_over_a_hard_budget_the_free_fallback_serves(tmp_path: Path, index: Pipeline) -> None:
    fake = FakeProvider("cohere")
    capped = CostSettings(budgets=[BudgetSettings(scope="course", name="demo", hard_usd=0.0)])
    settings = settings_for(tmp_path).model_copy(update={"cost": capped})
    server = LiveServer(create_app(settings, reranker=adapter(fake), pipeline=index))
    body = {"query": QUERY, "documents": DOCS[:3]}
    try:
        with server.client(DEMO_KEY) as http:
            demo = http.post("/v2/rerank", json=body)
        sent_for_demo = len(fake.requests)
        with server.client(COOKING_KEY) as http:
            cooking = http.post("/v2/rerank", json=body)
    finally:
        server.close()
        fake.close()
    assert demo.status_code == cooking.status_code == 200
    assert (demo.headers["x-leanrank-backend"], demo.headers["x-leanrank-budget"]) == ("identity", "hard")
    assert sent_for_demo == 0
    assert cooking.headers["x-leanrank-backend"].startswith("cohere:")


def test_a_named_model_is_served_by_its_backend_or_said_to_be_ignored(
    tmp_path: Path, index: Pipeline
) -> None:
    fake = FakeProvider("cohere")
    chain = FallbackReranker([IdentityReranker(), adapter(fake)])
    server = LiveServer(create_app(settings_for(tmp_path), reranker=chain, pipeline=index))
    body = {"query": QUERY, "documents": DOCS[:3]}
    try:
        with server.client(ADMIN_KEY) as http:
            first = http.post("/v2/rerank", json={**body, "model": "identity"})
            routed = http.post("/v2/rerank", json={**body, "model": "test-model"})
            by_key = http.post("/v1/rerank", json={**body, "model": "cohere:test-model"})
            other = http.post("/v2/rerank", json={**body, "model": "rerank-v3.5"})
            # The name is the client's text: outside printable ASCII it comes back escaped, not as a 500.
            odd = http.post("/v2/rerank", json={**body, "model": "реранк\U000f6f11"})
    finally:
        server.close()
        fake.close()
    assert first.headers["x-leanrank-backend"] == "identity"
    assert "x-leanrank-model-ignored" not in first.headers
    # A later backend of the chain is named: it serves, though identity comes first in the policy.
    assert routed.headers["x-leanrank-backend"] == by_key.headers["x-leanrank-backend"] == "cohere:test-model"
    assert len(fake.requests) == 2
    assert other.status_code == 200
    assert other.headers["x-leanrank-backend"] == "identity"
    assert other.headers["x-leanrank-model-ignored"] == "rerank-v3.5"
    assert odd.status_code == 200
    assert odd.headers["x-leanrank-model-ignored"] == r"\u0440\u0435\u0440\u0430\u043d\u043a\udb9b\udf11"


def test_an_unserved_model_can_be_refused(tmp_path: Path, index: Pipeline) -> None:
    settings = settings_for(tmp_path, unknown_model="refuse")
    server = LiveServer(create_app(settings, reranker=IdentityReranker(), pipeline=index))
    try:
        with server.client(ADMIN_KEY) as http:
            refused = http.post(
                "/v2/rerank", json={"model": "rerank-v3.5", "query": QUERY, "documents": DOCS}
            )
            unnamed = http.post("/v2/rerank", json={"query": QUERY, "documents": DOCS})
    finally:
        server.close()
    assert refused.status_code == 404
    assert refused.json()["error"] == (
        "model 'rerank-v3.5' is not served here; this service serves identity (serve.unknown_model=refuse)"
    )
    assert unnamed.status_code == 200
