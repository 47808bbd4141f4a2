"""Keys and tenants: 401 without a valid key, hashed storage, no key in logs, and a key of course A
refused for course B on every endpoint (including search filters and usage)."""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from leanrank.errors import ConfigError
from leanrank.pipeline import Pipeline
from leanrank.serve import KeyRing, create_app, hash_key, new_key
from leanrank.serve.errors import UnauthorizedError
from leanrank.serve.middleware import PUBLIC_PATHS
from leanrank.settings import ServeSettings
from tests.serve.conftest import (
    ADMIN_ENTRY,
    ADMIN_KEY,
    BOTH_KEY,
    COOKING_KEY,
    DEMO_KEY,
    ENTRIES,
    settings_for,
)
from tests.serve.live import LiveServer

RERANK = {"query": "борщ", "documents": ["Свёклу варят отдельно.", "Boil water."]}


# Keys of a course not indexed yet: `physics` alone, and with `demo`.
PHYSICS_KEY, PHYSICS_ENTRY = new_key("teacher-physics", "physics")
DEMO_PHYSICS_KEY, DEMO_PHYSICS_ENTRY = new_key("teacher-new", "demo,physics")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, index: Pipeline) -> Iterator[LiveServer]:
    keys = ServeSettings(api_keys=[*ENTRIES, PHYSICS_ENTRY, DEMO_PHYSICS_ENTRY])
    settings = settings_for(tmp_path_factory.mktemp("sec")).model_copy(update={"serve": keys})
    server = LiveServer(create_app(settings, pipeline=index))
    yield server
    server.close()


@pytest.fixture(scope="module")
def cooking_job(live: LiveServer) -> str:
    """An ingest job of course `cooking`, made by its own key (re-uploading unchanged content)."""
    with live.client(COOKING_KEY) as http:
        files = {"files": ("recipes.md", b"# Pasta\n\nBoil water, add salt, cook the pasta.\n")}
        reply = http.post("/v1/courses/cooking/documents", files=files)
    assert reply.status_code == 200, reply.text
    job_id: str = reply.json()["id"]
    return job_id


def protected_routes(live: LiveServer) -> list[APIRoute]:
    return [r for r in live.app.routes if isinstance(r, APIRoute) and r.path not in PUBLIC_PATHS]


def test_every_protected_route_wants_a_key(live: LiveServer) -> None:
    with live.client(None) as http:
        for route in protected_routes(live):
            path = (
                route.path.replace("{course}", "demo")
                .replace("{job_id}", "x")
                .replace("{source:path}", "a.md")
            )
            for method in route.methods:
                reply = http.request(method, path)
                assert reply.status_code == 401, (method, path)
                assert reply.json()["error_type"] == "unauthorized"
    with live.client("lr_" + "x" * 43) as http:
        assert http.get("/v1/courses").status_code == 401


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "missing API key: send `Authorization: Bearer <key>`"),
        ("Bearer", "missing API key: send `Authorization: Bearer <key>`"),
        (
            "Basic " + base64.b64encode(f"admin:{ADMIN_KEY}".encode()).decode(),
            "`Authorization: Basic` is not accepted: the API key goes in `Authorization: Bearer <key>`",
        ),
        (ADMIN_KEY, "the API key goes in `Authorization: Bearer <key>`, with the word Bearer"),
    ],
)
def test_a_key_sent_the_wrong_way_is_told_where_it_goes(
    live: LiveServer, authorization: str | None, message: str
) -> None:
    """`Authorization: Basic …` was told "missing API key", as if no credential had been sent."""
    with live.client(None, {"Authorization": authorization} if authorization else None) as http:
        reply = http.get("/v1/courses")
    assert (reply.status_code, reply.json()["error_type"]) == (401, "unauthorized")
    assert reply.json()["message"] == message
    assert ADMIN_KEY not in reply.text


def test_public_probes_need_no_key(live: LiveServer) -> None:
    with live.client(None) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").json() == {"status": "ready"}
        assert http.get("/openapi.json").status_code == 200


def test_the_openapi_document_asks_for_the_key_wherever_the_edge_does(live: LiveServer) -> None:
    """The rerank routes take their caller off the request, not through `PrincipalDep`, and declare the key
    themselves; their header parameters stay documented. `/metrics` needs one per `serve.metrics_access`."""
    with live.client(None) as http:
        paths = http.get("/openapi.json").json()["paths"]
    asked = {
        (path, method)
        for path, operations in paths.items()
        for method, operation in operations.items()
        if operation.get("security") == [{"ApiKey": []}]
    }
    keyed = {(path, method) for path, operations in paths.items() for method in operations}
    keyed -= {(path, "get") for path in PUBLIC_PATHS | {"/metrics"}}
    assert asked == keyed
    assert {("/v2/rerank", "post"), ("/v1/rerank", "post"), ("/rerank", "post")} <= asked
    for path in ("/v2/rerank", "/v1/rerank", "/rerank", "/v1/rerank/batch"):
        headers = [(p["name"], p["in"], p["required"]) for p in paths[path]["post"]["parameters"]]
        assert headers == [("X-Leanrank-Course", "header", False), ("X-Leanrank-Cascade", "header", False)]


def test_keys_are_stored_as_sha256_hashes() -> None:
    key, entry = new_key("someone", "demo,cooking")
    key_id, digest, scopes = entry.split(":")
    assert (key_id, scopes) == ("someone", "demo,cooking")
    assert digest == hashlib.sha256(key.encode()).hexdigest() == hash_key(key)
    assert key not in entry
    assert all(k not in "".join(ENTRIES) for k in (ADMIN_KEY, DEMO_KEY, COOKING_KEY, BOTH_KEY))
    ring = KeyRing([entry])
    principal = ring.authenticate(f"Bearer {key}")
    assert principal.key_id == "someone"
    assert principal.courses == {"demo", "cooking"}
    assert not principal.admin
    with pytest.raises(UnauthorizedError):
        ring.authenticate(f"Bearer {digest}")  # the stored hash is not a key


@pytest.mark.parametrize(
    "entry",
    [
        "ops:abc:admin",
        f"ops:{'0' * 64}:",
        f"ops:{'0' * 64}:admin,demo",
        f"bad id:{'0' * 64}:admin",
        "ops:admin",
    ],
)
def test_malformed_key_entries_are_config_errors(entry: str) -> None:
    with pytest.raises(ConfigError):
        KeyRing([entry])


def test_a_service_without_keys_does_not_start(tmp_path: Path) -> None:
    settings = settings_for(tmp_path).model_copy(update={"serve": ServeSettings()})
    with pytest.raises(ConfigError, match="no API keys"):
        create_app(settings)


def test_a_paid_backend_as_a_cascade_gate_is_refused(tmp_path: Path) -> None:
    """A gate's calls are not metered: a paid one would rerank every candidate unbilled and unbudgeted."""
    settings = settings_for(tmp_path)
    refused = r"gate '{}' is a paid backend; a gate's calls are not billed"
    gateway = settings.gateway.model_copy(
        update={"cascade": settings.gateway.cascade.model_copy(update={"gate": "cohere:rerank-v3.5"})}
    )
    with pytest.raises(ConfigError, match=refused.format("cohere:rerank-v3.5")):
        create_app(settings.model_copy(update={"gateway": gateway}))
    cascade = settings.cascade.model_copy(update={"gate": "jina:jina-reranker-v2-base-multilingual"})
    with pytest.raises(ConfigError, match=refused.format("jina:jina-reranker-v2-base-multilingual")):
        Pipeline(settings.model_copy(update={"cascade": cascade}))


def test_keys_never_reach_the_logs(live: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with live.client(ADMIN_KEY) as http:
        http.post("/v1/rerank", json=RERANK)
        http.post("/v1/search", json={"query": "борщ", "course": "cooking"})
    with live.client(DEMO_KEY) as http:
        http.post("/v1/search", json={"query": "борщ", "course": "cooking"})
    with live.client("lr_not-a-valid-key-but-secret") as http:
        http.get("/v1/courses")
    assert "key=ops" in caplog.text
    assert "key=teacher-demo" in caplog.text
    for secret in (ADMIN_KEY, DEMO_KEY, "lr_not-a-valid-key-but-secret", ADMIN_KEY[3:]):
        assert secret not in caplog.text


def refused(reply: httpx.Response) -> bool:
    return reply.status_code in (403, 404) and "cooking" not in reply.json().get("courses", [])


def test_a_key_of_course_a_cannot_touch_course_b(live: LiveServer, cooking_job: str) -> None:
    """Each request names course B (cooking) with course A's key (demo): every one is refused."""
    upload = {"files": ("x.md", b"# Hacked\n\nNot yours.\n")}
    course_b: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/v1/search", {"json": {"query": "борщ", "course": "cooking"}}),
        ("POST", "/v1/search", {"json": {"query": "борщ", "course": "cooking", "langs": ["ru"]}}),
        ("GET", "/v1/courses/cooking/documents", {}),
        ("POST", "/v1/courses/cooking/documents", {"files": upload}),
        ("DELETE", "/v1/courses/cooking/documents/recipes.md", {}),
        ("DELETE", "/v1/courses/cooking", {}),
        ("GET", f"/v1/courses/cooking/jobs/{cooking_job}", {}),
        ("GET", f"/v1/courses/demo/jobs/{cooking_job}", {}),  # course A's path, course B's job
        ("GET", "/v1/usage", {"params": {"course": "cooking"}}),
        ("GET", "/v1/usage", {"params": {"by": "tenant"}}),
        ("GET", "/v1/usage", {"params": {"by": "backend"}}),
        ("POST", "/v1/rerank", {"json": RERANK, "headers": {"X-Leanrank-Course": "cooking"}}),
        ("POST", "/v2/rerank", {"json": RERANK, "headers": {"X-Leanrank-Course": "cooking"}}),
        (
            "POST",
            "/v1/rerank/batch",
            {"json": {"requests": [RERANK]}, "headers": {"X-Leanrank-Course": "cooking"}},
        ),
        (
            "POST",
            "/rerank",
            {"json": {"query": "q", "texts": ["a"]}, "headers": {"X-Leanrank-Course": "cooking"}},
        ),
        ("GET", "/metrics", {}),
    ]
    with live.client(DEMO_KEY) as http:
        for method, path, options in course_b:
            reply = http.request(method, path, **options)
            assert reply.status_code in (403, 404), (method, path, reply.status_code, reply.text)
            assert "Boil water" not in reply.text
        assert [c["course"] for c in http.get("/v1/courses").json()["courses"]] == ["demo"]
        assert http.post("/v1/search", json={"query": "цикл for", "course": "demo"}).status_code == 200
        rows = http.get("/v1/usage").json()["rows"]
        assert rows
        assert all(r["key"] == "demo" for r in rows)
    with live.client(ADMIN_KEY) as http:
        assert "recipes.md" in {
            d["source"] for d in http.get("/v1/courses/cooking/documents").json()["documents"]
        }
        assert "cooking" in {r["key"] for r in http.get("/v1/usage").json()["rows"]}
    covered = {
        path.replace("cooking", "{course}").replace(cooking_job, "{job_id}") for _, path, _ in course_b
    }
    covered = {p.replace("recipes.md", "{source:path}").replace("/demo/", "/{course}/") for p in covered}
    every = {r.path for r in protected_routes(live)}
    assert every - {"/v1/courses"} <= covered  # the listing is checked by what it shows, above


UNKNOWN_COURSE: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/search", {"json": {"query": "цикл for", "course": "physics"}}),
    ("GET", "/v1/courses/physics/documents", {}),
    ("DELETE", "/v1/courses/physics/documents/lesson.md", {}),
    ("DELETE", "/v1/courses/physics", {}),
]


@pytest.mark.parametrize(
    ("key", "indexed"),
    [(PHYSICS_KEY, "none yet"), (DEMO_PHYSICS_KEY, "demo")],
    ids=["physics", "demo,physics"],
)
def test_an_unknown_course_is_named_among_the_keys_own_courses_only(
    live: LiveServer, key: str, indexed: str
) -> None:
    """A key of a course not indexed yet read every other tenant's course in the 404 (`indexed courses:
    cooking, demo`), though `/v1/courses` showed it none of them."""
    with live.client(key) as http:
        for method, path, options in UNKNOWN_COURSE:
            reply = http.request(method, path, **options)
            assert (reply.status_code, reply.json()["error_type"]) == (404, "unknown_course"), (method, path)
            assert reply.json()["error"] == f"unknown course 'physics'; indexed courses: {indexed}"
        listed = [c["course"] for c in http.get("/v1/courses").json()["courses"]]
    assert (", ".join(listed) or "none yet") == indexed


def test_steering_toward_another_courses_examples_names_only_the_course_searched(live: LiveServer) -> None:
    with live.client(ADMIN_KEY) as http:
        hits = http.post("/v1/search", json={"query": "борщ", "course": "cooking"}).json()["hits"]
    cooking_chunk = hits[0]["chunk_id"]
    with live.client(DEMO_PHYSICS_KEY) as http:
        for context, error in [
            ({"positive_sources": ["recipes.md"]}, "source 'recipes.md' is not in course demo"),
            ({"negative_chunks": [cooking_chunk]}, f"chunk {cooking_chunk} is not in course demo"),
        ]:
            reply = http.post("/v1/search", json={"query": "цикл for", "course": "demo", "context": context})
            assert (reply.status_code, reply.json()["error"]) == (422, error)
            assert "cooking" not in reply.text


def test_an_admin_is_told_every_indexed_course(live: LiveServer) -> None:
    with live.client(ADMIN_KEY) as http:
        listed = [c["course"] for c in http.get("/v1/courses").json()["courses"]]
        for method, path, options in UNKNOWN_COURSE:
            reply = http.request(method, path, **options)
            assert reply.status_code == 404, (method, path)
            assert reply.json()["error"] == f"unknown course 'physics'; indexed courses: {', '.join(listed)}"
    assert {"cooking", "demo"} <= set(listed)


def test_a_key_with_several_courses_names_the_one_it_bills(live: LiveServer) -> None:
    with live.client(BOTH_KEY) as http:
        assert http.post("/v1/rerank", json=RERANK).status_code == 422
        reply = http.post("/v1/rerank", json=RERANK, headers={"X-Leanrank-Course": "cooking"})
        assert reply.status_code == 200
        assert {c["course"] for c in http.get("/v1/courses").json()["courses"]} == {"demo", "cooking"}


def test_keys_can_come_from_a_file(tmp_path: Path) -> None:
    key, entry = new_key("from-file", "demo")
    path = tmp_path / "keys.txt"
    path.write_text(f"# teachers\n{entry}  # term 1\n\n", encoding="utf-8")
    ring = KeyRing.from_settings(ServeSettings(api_keys=[ADMIN_ENTRY], api_keys_file=path))
    assert ring.authenticate(f"Bearer {key}").courses == {"demo"}
    assert ring.authenticate(f"Bearer {ADMIN_KEY}").admin
    with pytest.raises(ConfigError, match="cannot read"):
        KeyRing.from_settings(ServeSettings(api_keys_file=tmp_path / "missing.txt"))
