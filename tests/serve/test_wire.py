"""The gateway's wire formats against what the providers and their clients do (issue 16, items 1, 4, 6-11).

A real server on loopback with a scripted backend: each test sets the scores and the scale the backend
declares, sends the body a real client sends, and checks the answer and what reached the backend.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cohere
import pytest

from leanrank.pipeline import Pipeline
from leanrank.serve import create_app, new_key
from leanrank.settings import ServeSettings, Settings
from tests.rerank.test_guard import ISSUE_DOCS, Fixed
from tests.serve.conftest import ADMIN_KEY, DEMO_KEY, ENTRIES, settings_for
from tests.serve.live import LiveServer

QUERY = "Как работает цикл for?"
METRICS_KEY, METRICS_ENTRY = new_key("prometheus", "metrics")
LONG = " ".join(["слово"] * 1500)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.fixture(scope="module")
def backend() -> Fixed:
    return Fixed([])


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, backend: Fixed, index: Pipeline
) -> Iterator[LiveServer]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("wire"), serve=ServeSettings(api_keys=[*ENTRIES, METRICS_ENTRY])
    )
    server = LiveServer(create_app(settings, reranker=backend, pipeline=index))
    yield server
    server.close()


def post(gateway: LiveServer, path: str, body: dict[str, Any], key: str = ADMIN_KEY) -> Any:
    with gateway.client(key) as http:
        return http.post(path, json=body)


def answers(backend: Fixed, scores: list[float], scale: str = "probabilities") -> None:
    backend.scores = tuple(scores)
    backend.scale = scale  # type: ignore[assignment]
    backend.sent.clear()


def test_blank_documents_rank_last_and_are_not_sent(gateway: LiveServer, backend: Fixed) -> None:
    answers(backend, [0.2, 0.7])
    reply = post(gateway, "/v2/rerank", {"model": "rerank-v3.5", "query": QUERY, "documents": ISSUE_DOCS})
    assert reply.status_code == 200
    assert backend.sent == [[ISSUE_DOCS[0], ISSUE_DOCS[3]]]
    results = reply.json()["results"]
    assert [(r["index"], r["relevance_score"]) for r in results] == [(3, 0.7), (0, 0.2), (1, 0.0), (2, 0.0)]
    assert reply.headers["x-leanrank-warning"] == "2 blank documents ranked last, not sent"


def test_tei_scores_follow_the_declared_scale(gateway: LiveServer, backend: Fixed) -> None:
    """Issue 16, item 4: logits 0.9 and 0.45 are mapped whether or not another score is outside [0, 1]."""
    answers(backend, [0.9, 0.45], "logits")
    two = post(gateway, "/rerank", {"query": QUERY, "texts": ["a", "b"]}).json()
    answers(backend, [0.9, 0.45, -8.15], "logits")
    three = post(gateway, "/rerank", {"query": QUERY, "texts": ["a", "b", "c"]}).json()
    assert [r["score"] for r in two] == pytest.approx([sigmoid(0.9), sigmoid(0.45)])
    assert [r["score"] for r in three] == pytest.approx([sigmoid(0.9), sigmoid(0.45), sigmoid(-8.15)])
    raw = post(gateway, "/rerank", {"query": QUERY, "texts": ["a", "b"], "raw_scores": True}).json()
    assert [r["score"] for r in raw] == pytest.approx([0.9, 0.45])
    answers(backend, [0.9, 0.45], "probabilities")
    probabilities = post(gateway, "/rerank", {"query": QUERY, "texts": ["a", "b"]}).json()
    assert [r["score"] for r in probabilities] == pytest.approx([0.9, 0.45])
    cohere_body = {"model": "rerank-v3.5", "query": QUERY, "documents": ["a", "b"]}
    answers(backend, [0.9, 0.45], "logits")
    results = post(gateway, "/v2/rerank", cohere_body).json()["results"]
    assert [r["relevance_score"] for r in results] == pytest.approx([sigmoid(0.9), sigmoid(0.45)])


def test_nan_scores_rank_last_and_never_reach_the_wire_as_null(gateway: LiveServer, backend: Fixed) -> None:
    """Issue 16, item 6."""
    answers(backend, [0.3, math.nan, 0.8])
    client = cohere.ClientV2(api_key=ADMIN_KEY, base_url=gateway.url)
    response = client.rerank(model="rerank-v3.5", query=QUERY, documents=["a", "b", "c"])
    assert [(r.index, r.relevance_score) for r in response.results] == [(2, 0.8), (0, 0.3), (1, 0.0)]
    reply = post(gateway, "/rerank", {"query": QUERY, "texts": ["a", "b", "c"], "raw_scores": True})
    assert "null" not in reply.text
    assert [r["index"] for r in reply.json()] == [2, 0, 1]
    assert reply.headers["x-leanrank-warning"] == "1 non-finite scores from fixed ranked last"


def test_a_jina_minimal_body_gets_jinas_answer(gateway: LiveServer, backend: Fixed) -> None:
    """Issue 16, item 7: Jina's documented minimal body; `return_documents` defaults to true."""
    answers(backend, [0.1, 0.9])
    body = {"model": "jina-reranker-v2-base-multilingual", "query": QUERY, "documents": ["a", "b"]}
    reply = post(gateway, "/v1/rerank", body).json()
    assert set(reply) == {"model", "usage", "results"}
    assert reply["model"] == "jina-reranker-v2-base-multilingual"
    assert reply["usage"] == {"total_tokens": 2}  # the backend's reported count
    assert reply["results"] == [
        {"index": 1, "relevance_score": 0.9, "document": {"text": "b"}},
        {"index": 0, "relevance_score": 0.1, "document": {"text": "a"}},
    ]
    lean = post(gateway, "/v1/rerank", {**body, "return_documents": False}).json()
    assert all("document" not in r for r in lean["results"])


def test_jina_documents_with_ids_are_accepted_and_echoed(gateway: LiveServer, backend: Fixed) -> None:
    answers(backend, [0.4, 0.6])
    docs = [{"id": "d1", "text": "a"}, {"id": "d2", "text": "b"}]
    body = {"model": "jina-reranker-m0", "query": QUERY, "documents": docs}
    reply = post(gateway, "/v1/rerank", body)
    assert reply.status_code == 200, reply.text
    assert [r["document"] for r in reply.json()["results"]] == [docs[1], docs[0]]
    assert backend.sent == [["a", "b"]]


def test_cohere_v1_answers_in_cohere_v1_shape(gateway: LiveServer, backend: Fixed) -> None:
    """Issue 16, item 9: a v1 body with `return_documents` is Cohere's, with billed units, version 1."""
    answers(backend, [0.2, 0.5])
    body = {
        "model": "rerank-multilingual-v3.0",
        "query": QUERY,
        "documents": ["a", "b"],
        "return_documents": True,
    }
    reply = post(gateway, "/v1/rerank", body).json()
    assert set(reply) == {"id", "results", "meta"}
    assert reply["meta"]["api_version"] == {"version": "1"}
    assert reply["meta"]["billed_units"] == {"search_units": 0, "input_tokens": 2}
    assert [r["document"] for r in reply["results"]] == [{"text": "b"}, {"text": "a"}]
    v2 = post(gateway, "/v2/rerank", {"model": "rerank-v3.5", "query": QUERY, "documents": ["a"]}).json()
    assert v2["meta"]["api_version"] == {"version": "2"}


def test_cohere_v1_rank_fields_score_the_named_fields(gateway: LiveServer, backend: Fixed) -> None:
    """Issue 16, item 8: structured documents with `rank_fields`."""
    answers(backend, [0.5, 0.6])
    docs = [{"title": "Циклы", "body": "for перебирает", "id": 7}, {"title": "Функции", "body": "def"}]
    body = {"model": "rerank-v3.5", "query": QUERY, "documents": docs, "rank_fields": ["title", "body"]}
    reply = post(gateway, "/v1/rerank", body)
    assert reply.status_code == 200, reply.text
    assert backend.sent == [["title: Циклы\nbody: for перебирает", "title: Функции\nbody: def"]]
    bad = post(gateway, "/v1/rerank", {"model": "rerank-v3.5", "query": QUERY, "documents": [{"title": "x"}]})
    assert bad.status_code == 422
    assert "rank_fields" in bad.json()["message"]


def test_rank_fields_naming_a_field_no_document_has_is_422(gateway: LiveServer, backend: Fixed) -> None:
    """A typo in `rank_fields` answered 200: every document blank, every score 0, nothing said."""
    answers(backend, [0.5, 0.6])
    docs = [{"title": "Циклы", "body": "for перебирает"}, {"title": "Функции"}]
    for fields, index, name in ((["titel"], 0, "titel"), (["title", "bdy"], 1, "bdy")):
        body = {"model": "rerank-v3.5", "query": QUERY, "documents": docs, "rank_fields": fields}
        reply = post(gateway, "/v1/rerank", body)
        assert reply.status_code == 422, reply.text
        assert reply.json()["message"] == f'rank_fields.{index}: no document has a field "{name}"'
    assert backend.sent == []


def test_document_caps_are_applied_as_windows(gateway: LiveServer, backend: Fixed) -> None:
    """Issue 16, item 8: v1 `max_chunks_per_doc` and `max_tokens_per_doc` map onto leanrank's windows."""
    answers(backend, [0.1, 0.2, 0.3, 0.4])
    body = {"model": "rerank-v3.5", "query": QUERY, "documents": [LONG, "short"], "max_chunks_per_doc": 2}
    reply = post(gateway, "/v1/rerank", body)
    assert reply.status_code == 200, reply.text
    (sent,) = backend.sent
    assert len(sent) == 3  # two windows of the long document, then the short one
    assert sent[2] == "short"
    assert LONG.startswith(sent[0])
    # The long document takes its best window (0.2), the short one its own score (0.3).
    assert [(r["index"], r["relevance_score"]) for r in reply.json()["results"]] == [(1, 0.3), (0, 0.2)]
    answers(backend, [0.1, 0.2])
    body = {"model": "rerank-v3.5", "query": QUERY, "documents": [LONG, "short"], "max_tokens_per_doc": 8}
    assert post(gateway, "/v2/rerank", body).status_code == 200
    assert len(backend.sent[0][0]) < len(LONG)
    assert LONG.startswith(backend.sent[0][0])


def test_max_chunks_per_doc_counts_against_the_document_limit(gateway: LiveServer, backend: Fixed) -> None:
    """Each window is a document sent and billed: 2 documents × 600 windows is over `max_documents` (1000),
    refused before anything is sent, as Cohere bounds documents × `max_chunks_per_doc`."""
    answers(backend, [0.5] * 1500)
    body = {"model": "rerank-v3.5", "query": QUERY, "documents": [LONG, LONG], "max_tokens_per_doc": 1}
    reply = post(gateway, "/v1/rerank", {**body, "max_chunks_per_doc": 600})
    assert reply.status_code == 413
    assert reply.json()["limit"] == "max_documents"
    assert reply.json()["message"] == (
        "documents × max_chunks_per_doc: 1200 is above the limit of 1000 (serve.max_documents)"
    )
    assert backend.sent == []
    assert post(gateway, "/v1/rerank", {**body, "max_chunks_per_doc": 500}).status_code == 200
    assert [len(sent) for sent in backend.sent] == [1000]


def test_what_providers_accept_is_accepted_and_ignored_fields_are_named(
    gateway: LiveServer, backend: Fixed
) -> None:
    """Issue 16, item 8: Cohere `relevant_spans`, TEI lower-case direction and the `rerankers` extras."""
    answers(backend, [0.5])
    v2 = {"model": "rerank-v3.5", "query": QUERY, "documents": ["a"], "relevant_spans": True, "priority": 1}
    reply = post(gateway, "/v2/rerank", v2)
    assert (reply.status_code, reply.headers["x-leanrank-ignored"]) == (200, "priority, relevant_spans")
    tei = {"query": QUERY, "texts": ["a"], "truncation_direction": "left", "model": "bge", "top_n": 1}
    reply = post(gateway, "/rerank", tei)
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-leanrank-ignored"] == "truncation_direction, model, top_n"
    plain = post(gateway, "/rerank", {"query": QUERY, "texts": ["a"]})
    assert "x-leanrank-ignored" not in plain.headers


def test_error_bodies_carry_message_for_the_cohere_sdk(gateway: LiveServer) -> None:
    """Issue 16, item 11."""
    client = cohere.ClientV2(api_key=ADMIN_KEY, base_url=gateway.url)
    with pytest.raises(cohere.core.ApiError) as caught:
        client.rerank(model="rerank-v3.5", query="", documents=["a"])
    body = caught.value.body
    assert caught.value.status_code == 400
    assert body["message"] == body["error"]
    assert body["message"]
    invalid = post(gateway, "/v2/rerank", {"query": QUERY})
    assert invalid.json()["message"] == invalid.json()["error"] == "body.documents: Field required"


def test_error_bodies_carry_detail_for_jina_clients(gateway: LiveServer) -> None:
    """Jina's clients (LangChain's and LlamaIndex's `JinaRerank`) raise `resp["detail"]` when an answer has
    no `results`: the message must be there, not a KeyError."""
    body = {"model": "jina-reranker-v2-base-multilingual", "query": " ", "documents": ["a"]}
    resp = post(gateway, "/v1/rerank", body).json()
    assert "results" not in resp
    assert resp["detail"] == resp["message"] == "the query is empty"
    resp = post(gateway, "/v1/rerank", {**body, "query": QUERY, "top_n": 0}).json()
    assert resp["detail"] == "body.top_n: Input should be greater than or equal to 1"


def test_tei_probes_and_metrics_access(gateway: LiveServer, tmp_path: Path, index: Pipeline) -> None:
    """Issue 16, item 10: `/health` and `/info` without a key; `/metrics` for a dedicated key."""
    with gateway.client(None) as http:
        assert http.get("/health").status_code == 200
        info = http.get("/info").json()
        assert http.get("/metrics").status_code == 401
    assert (info["model_id"], info["max_client_batch_size"], info["max_input_length"]) == (
        "fixed",
        1000,
        1_000_000,
    )
    with gateway.client(METRICS_KEY) as http:
        assert http.get("/metrics").status_code == 200
        assert http.post("/v2/rerank", json={"query": QUERY, "documents": ["a"]}).status_code == 403
    with gateway.client(DEMO_KEY) as http:
        assert http.get("/metrics").status_code == 403
    open_app = create_app(settings_for(tmp_path, metrics_access="open"), reranker=Fixed([]), pipeline=index)
    server = LiveServer(open_app)
    try:
        with server.client(None) as http:
            reply = http.get("/metrics")
    finally:
        server.close()
    assert reply.status_code == 200
    assert "leanrank_http_requests" in reply.text


def test_ignored_field_names_are_escaped_in_the_header(gateway: LiveServer, backend: Fixed) -> None:
    """Client-chosen field names reach a header: non-ASCII and newlines are escaped, never a 500."""
    answers(backend, [0.5, 0.25])
    body = '{"query": "q", "texts": ["a", "b"], "\\u00e9t\\u00e9": 1, "x\\ny": 2}'
    with gateway.client(ADMIN_KEY) as http:
        reply = http.post("/rerank", content=body, headers={"content-type": "application/json"})
    assert reply.status_code == 200
    assert reply.headers["x-leanrank-ignored"] == "x\\ny, \\u00e9t\\u00e9"


def test_a_header_value_ending_in_a_space_keeps_its_quotes(gateway: LiveServer, backend: Fixed) -> None:
    """An empty field name (found by the fuzzer) and a model name padded with spaces: the headers naming them
    would begin or end with a space, which HTTP forbids (the server failed the response); they are quoted."""
    answers(backend, [0.5, 0.25])
    body = '{"query": "q", "texts": ["a", "b"], "truncate": false, "": null}'
    with gateway.client(ADMIN_KEY) as http:
        reply = http.post("/rerank", content=body, headers={"content-type": "application/json"})
        padded = http.post("/v2/rerank", json={"model": " other ", "query": "q", "documents": ["a", "b"]})
    assert (reply.status_code, reply.headers["x-leanrank-ignored"]) == (200, '"truncate, "')
    assert (padded.status_code, padded.headers["x-leanrank-model-ignored"]) == (200, '" other "')
