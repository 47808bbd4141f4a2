"""The reranker-embedder agreement in `GET /v1/usage`: per course, only the courses a key may see."""

from __future__ import annotations

from pathlib import Path

from leanrank.pipeline import Pipeline
from leanrank.serve.diagnostics import Agreement, AgreementTally
from tests.pipeline.test_relevance import Reverse
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
