"""Course search and course management over HTTP, on the real encoder and engine."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from leanrank.pipeline import Pipeline
from leanrank.serve import create_app
from tests.serve.conftest import ADMIN_KEY, COOKING_TEXT, DEMO_KEY, settings_for
from tests.serve.live import LiveServer


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, index: Pipeline) -> Iterator[LiveServer]:
    settings = settings_for(tmp_path_factory.mktemp("courses"), background_ingest_bytes=400)
    server = LiveServer(create_app(settings, pipeline=index))
    yield server
    server.close()


def test_search_returns_hits_with_offsets_stage_scores_and_cost(live: LiveServer) -> None:
    with live.client(DEMO_KEY) as http:
        reply = http.post("/v1/search", json={"query": "как работает цикл for", "course": "demo", "k": 2})
    assert reply.status_code == 200
    body = reply.json()
    assert body["course"] == "demo"
    assert body["request_id"] == reply.headers["x-request-id"]
    top = body["hits"][0]
    assert top["source"] == "lesson.md"
    assert "Цикл for" in top["text"]
    # identity reranks nothing: the score is the fusion score, and there is no rerank score to show.
    assert "fusion" in top["stage_scores"]
    assert "rerank" not in top["stage_scores"]
    assert top["score"] == top["stage_scores"]["fusion"]
    assert 0 <= top["start"] < top["end"]
    assert body["served_by"] == "identity"
    assert body["cost_usd"] == 0.0
    assert body["usage"]["documents"] == body["candidates"]
    assert body["candidates"] + sum(body["dropped"].values()) == body["retrieved"]
    assert set(body["timings_ms"]) == {"retrieve", "cascade", "rerank"}


def test_search_filters_stay_inside_the_course(live: LiveServer) -> None:
    with live.client(ADMIN_KEY) as http:
        hits = http.post(
            "/v1/search", json={"query": "pasta", "course": "demo", "k": 10, "langs": ["en"]}
        ).json()
    assert hits["hits"]
    assert {h["source"] for h in hits["hits"]} == {"lesson.md"}
    assert all(h["lang"] == "en" for h in hits["hits"])


def test_a_heading_filter_matches_a_prefix_in_any_case(live: LiveServer) -> None:
    with live.client(ADMIN_KEY) as http:
        found = http.post(
            "/v1/search", json={"query": "def", "course": "demo", "k": 10, "heading_prefix": ["funct"]}
        )
        none = http.post(
            "/v1/search", json={"query": "def", "course": "demo", "heading_prefix": ["Lesson 9"]}
        )
    assert found.status_code == 200, found.text
    assert found.json()["hits"]
    assert {(tuple(h["heading"]), h["heading_path"]) for h in found.json()["hits"]} == {
        (("Functions",), "Functions")
    }
    assert none.status_code == 422
    assert none.json()["error"] == (
        "no heading of course demo starts with 'Lesson 9'; its top headings: Functions; Циклы"
    )


def test_empty_query_is_400(live: LiveServer) -> None:
    with live.client(ADMIN_KEY) as http:
        reply = http.post("/v1/search", json={"query": "  ", "course": "demo"})
    assert (reply.status_code, reply.json()["error_type"]) == (400, "empty_input")


def wait_done(http: httpx.Client, url: str) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job: dict[str, object] = http.get(url).json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {url} did not finish")


def test_upload_list_delete(live: LiveServer, index: Pipeline) -> None:
    small = {"files": ("week1/recipes.md", COOKING_TEXT.encode())}
    functions = "# Functions\n\nA function is defined with the def keyword. " + "It takes arguments. " * 20
    large = {"files": ("functions.md", functions.encode())}
    with live.client(ADMIN_KEY) as http:
        now = http.post("/v1/courses/uploads/documents", files=small)
        assert now.status_code == 200
        job = now.json()
        assert job["status"] == "done"
        assert [f["status"] for f in job["files"]] == ["added"]
        assert index.roots.get("uploads") is None  # the job's temporary folder is no course's folder
        assert (
            http.post("/v1/courses/uploads/documents", files=small).json()["files"][0]["status"]
            == "unchanged"
        )

        later = http.post("/v1/courses/uploads/documents", files=large)
        assert later.status_code == 202
        assert later.headers["location"] == later.json()["status_url"]
        done = wait_done(http, later.headers["location"])
        assert done["status"] == "done"
        assert done["finished_at"]

        docs = http.get("/v1/courses/uploads/documents").json()["documents"]
        assert {d["source"] for d in docs} == {"week1/recipes.md", "functions.md"}
        hit = http.post("/v1/search", json={"query": "def keyword", "course": "uploads", "k": 1}).json()[
            "hits"
        ][0]
        assert hit["source"] == "functions.md"

        gone = http.delete("/v1/courses/uploads/documents/week1/recipes.md")
        assert gone.status_code == 200
        assert gone.json()["deleted_chunks"] > 0
        assert http.delete("/v1/courses/uploads/documents/week1/recipes.md").status_code == 404
        assert http.delete("/v1/courses/uploads").json()["deleted_chunks"] > 0
        assert http.get("/v1/courses/uploads/documents").status_code == 404
        assert "uploads" not in {c["course"] for c in http.get("/v1/courses").json()["courses"]}


def test_a_bad_file_is_reported_and_the_rest_ingested(live: LiveServer) -> None:
    files = [
        ("files", ("notes.md", b"# Notes\n\nA short note about loops.\n")),
        ("files", ("image.png", b"\x89PNG")),
    ]
    with live.client(ADMIN_KEY) as http:
        job = http.post("/v1/courses/mixed/documents", files=files).json()
        http.delete("/v1/courses/mixed")
    statuses = {f["source"]: (f["status"], f["reason"]) for f in job["files"]}
    assert statuses["notes.md"][0] == "added"
    assert statuses["image.png"][0] == "skipped"
    assert statuses["image.png"][1]


def test_an_upload_with_one_name_twice_is_refused_naming_it(live: LiveServer) -> None:
    files = [
        ("files", ("notes.md", b"# Notes\n\nLoops repeat code.\n")),
        ("files", ("week1/a.md", b"# A\n\nFirst.\n")),
        ("files", ("week1/a.md", b"# A\n\nSecond.\n")),
    ]
    with live.client(ADMIN_KEY) as http:
        reply = http.post("/v1/courses/twice/documents", files=files)
        listed = http.get("/v1/courses/twice/documents")
    assert (reply.status_code, reply.json()["error"]) == (
        422,
        "two uploaded files are named 'week1/a.md'; each needs its own path",
    )
    assert listed.status_code == 404  # nothing ingested


def test_a_bad_upload_of_an_indexed_file_says_its_earlier_version_is_kept(live: LiveServer) -> None:
    with live.client(ADMIN_KEY) as http:
        first = http.post(
            "/v1/courses/kept/documents", files=[("files", ("notes.md", b"# Notes\n\nLoops repeat code.\n"))]
        ).json()
        again = http.post("/v1/courses/kept/documents", files=[("files", ("notes.md", b""))]).json()
        http.delete("/v1/courses/kept")
    [added], [skipped] = first["files"], again["files"]
    assert (added["status"], added["kept"]) == ("added", 0)
    assert (skipped["status"], skipped["reason"], skipped["kept"]) == (
        "skipped",
        "the file is empty",
        added["chunks"],
    )


def test_metrics_count_requests_and_reranks_by_backend_and_course(live: LiveServer) -> None:
    with live.client(DEMO_KEY) as http:
        http.post("/v1/search", json={"query": "функция", "course": "demo"})
    with live.client(ADMIN_KEY) as http:
        text = http.get("/metrics").text
    assert 'leanrank_http_requests_total{method="POST",route="/v1/search",status="200"}' in text
    assert 'leanrank_rerank_calls_total{backend="identity",course="demo"}' in text
    assert "leanrank_http_request_duration_seconds_bucket" in text
    assert "# TYPE leanrank_cache_hits_total counter" in text


def test_docs_are_served_offline_without_a_key(live: LiveServer) -> None:
    with live.client(None) as http:
        page = http.get("/docs")
        script = http.get("/docs/assets/swagger-ui-bundle.js")
        style = http.get("/docs/assets/swagger-ui.css")
        other = http.get("/v1/usage")
    assert page.status_code == 200
    assert "/docs/assets/swagger-ui-bundle.js" in page.text
    assert "cdn." not in page.text  # no asset from a CDN: the page works on a machine without internet
    assert (script.status_code, style.status_code) == (200, 200)
    assert script.headers["content-type"].startswith(("application/javascript", "text/javascript"))
    assert len(script.content) > 1_000_000  # the whole Swagger UI bundle
    assert other.status_code == 401  # only the docs' assets are public
