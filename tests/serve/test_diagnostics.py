"""The reranker-embedder agreement in `GET /v1/usage`: per course, only the courses a key may see."""

from __future__ import annotations

from pathlib import Path

from leanrank.pipeline import Pipeline
from leanrank.rerank.identity import IdentityReranker
from leanrank.serve.diagnostics import Agreement, AgreementTally
from tests.pipeline.test_relevance import LINEAR, Reverse
from tests.serve.conftest import ADMIN_KEY, COOKING_KEY, DEMO_KEY, settings_for
from tests.serve.test_billing import serve


def test_the_tally_averages_per_course_and_skips_searches_that_reranked_nothing() -> None:
    tally = AgreementTally()
    for course, value in (("a", 1.0), ("a", 0.5), ("b", None), ("b", 0.2)):
        tally.add(course, value)
    assert tally.by_course() == {"a": Agreement(2, 0.75), "b": Agreement(1, 0.2)}


def test_usage_shows_the_agreement_of_the_courses_a_key_may_see(tmp_path: Path, index: Pipeline) -> None:
    server, search = serve(settings_for(tmp_path / "data"), index, Reverse(), None)
    try:
        with server.client(DEMO_KEY) as http:
            found = http.post("/v1/search", json={"course": "demo", "query": "цикл for"})
            mine = http.get("/v1/usage").json()["agreement"]
        with server.client(COOKING_KEY) as http:
            theirs = http.get("/v1/usage").json()["agreement"]
        with server.client(ADMIN_KEY) as http:
            every = http.get("/v1/usage").json()["agreement"]
    finally:
        server.close()
        search.close()
    assert found.status_code == 200, found.text
    assert mine == every == {"demo": {"searches": 1, "mean": 1.0}}  # a small course: all within 50
    assert theirs == {}


def test_a_search_request_may_set_min_relevance(tmp_path: Path, index: Pipeline) -> None:
    settings = settings_for(tmp_path / "data")
    LINEAR.write(tmp_path / "data" / "calibration")
    server, search = serve(settings, index, IdentityReranker(), None)
    body = {"course": "demo", "query": "цикл for", "k": 5, "min_relevance": 0.5}
    try:
        with server.client(DEMO_KEY) as http:
            strict = http.post("/v1/search", json=body)
            plain = http.post("/v1/search", json={**body, "min_relevance": None})
            bad = http.post("/v1/search", json={**body, "min_relevance": 1.5})
    finally:
        server.close()
        search.close()
    assert strict.status_code == plain.status_code == 200, strict.text
    assert bad.status_code == 422
    kept = [h["stage_scores"]["relevance"] for h in strict.json()["hits"]]
    assert kept == [min(1.0, h["score"] / 0.4) for h in strict.json()["hits"]]
    assert all(p >= 0.5 for p in kept)
    assert len(kept) == sum(1 for h in plain.json()["hits"] if h["score"] >= 0.2) < len(plain.json()["hits"])
