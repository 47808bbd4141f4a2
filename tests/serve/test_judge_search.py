"""`/v1/search` with the LLM judge: asked for per request, its cost reported beside the reranker's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from leanrank.pipeline import Pipeline
from leanrank.serve import create_app
from leanrank.settings import JudgeSettings
from tests.rerank.chat_server import CHAT_MODEL, FakeChat
from tests.rerank.servers import API_KEY
from tests.serve.conftest import DEMO_KEY, settings_for
from tests.serve.live import LiveServer


@pytest.fixture
def chat() -> Iterator[FakeChat]:
    server = FakeChat(yes_words=("def",))
    yield server
    server.close()


def test_search_runs_the_judge_when_asked(tmp_path: Path, index: Pipeline, chat: FakeChat) -> None:
    judge = JudgeSettings(model=CHAT_MODEL, base_url=chat.url, api_key=SecretStr(API_KEY))
    settings = settings_for(tmp_path).model_copy(update={"judge": judge})
    pipe = Pipeline(settings, dense=index.dense, sparse=index.sparse, store=index.store)
    server = LiveServer(create_app(settings, pipeline=pipe))
    try:
        with server.client(DEMO_KEY) as http:
            query = {"query": "how do I define a function", "course": "demo", "k": 2}
            plain = http.post("/v1/search", json=query).json()
            judged = http.post("/v1/search", json={**query, "judge": True}).json()
    finally:
        server.close()
        pipe.close()
    assert "judge" not in plain["timings_ms"]
    assert plain["judge_cost_usd"] is None
    assert len(chat.requests) == 2
    assert [h["stage_scores"].get("judge") for h in judged["hits"]] == [1.0, 0.0]
    assert "def" in judged["hits"][0]["text"]
    assert judged["judge_cost_usd"] is None  # the fake model has no listed price
    assert "judge" in judged["timings_ms"]
    assert judged["failed"] == []


def test_asking_for_a_judge_the_server_lacks_is_refused(tmp_path: Path, index: Pipeline) -> None:
    server = LiveServer(create_app(settings_for(tmp_path), pipeline=index))
    try:
        with server.client(DEMO_KEY) as http:
            reply = http.post("/v1/search", json={"query": "цикл", "course": "demo", "judge": True})
    finally:
        server.close()
    assert reply.status_code == 422
    assert "judge.model" in reply.text


def test_search_takes_the_students_context(tmp_path: Path, index: Pipeline) -> None:
    server = LiveServer(create_app(settings_for(tmp_path), pipeline=index))
    try:
        with server.client(DEMO_KEY) as http:
            query = {"query": "how do I define a function", "course": "demo", "k": 2}
            plain = http.post("/v1/search", json=query).json()
            ruled_out = plain["hits"][0]["chunk_id"]
            steered = http.post(
                "/v1/search", json={**query, "context": {"negative_chunks": [ruled_out]}}
            ).json()
            unknown = http.post("/v1/search", json={**query, "context": {"positive_sources": ["nope.md"]}})
            typo = http.post("/v1/search", json={**query, "context": {"positive": ["lesson.md"]}})
    finally:
        server.close()
    # The dense list moves away from the ruled-out chunk (BM25, which still likes its words, is left alone).
    dense = {h["chunk_id"]: h["stage_scores"]["dense"] for h in steered["hits"]}
    (other,) = set(dense) - {ruled_out}
    assert plain["hits"][0]["stage_scores"]["dense"] > plain["hits"][1]["stage_scores"]["dense"]
    assert dense[ruled_out] < dense[other]
    assert steered["hits"][1]["score"] > plain["hits"][1]["score"]
    assert unknown.status_code == 422
    assert "source 'nope.md' is not in course demo" in unknown.text
    assert typo.status_code == 422
