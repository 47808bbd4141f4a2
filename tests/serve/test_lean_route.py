"""`LeanRoute` answers exactly as FastAPI's own handler does, and serves well-formed requests itself."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from fastapi import APIRouter, FastAPI, Header, Request, Response
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict

from leanrank.serve.routes import lean
from leanrank.serve.routes.lean import LeanRoute


class Ask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str
    top_n: int | None = None


class Answer(BaseModel):
    chars: int
    top_n: int | None = None
    course: str | None = None


async def endpoint(
    body: Ask,
    request: Request,
    response: Response,
    course: Annotated[str | None, Header(alias="X-Course")] = None,
    mode: Annotated[Literal["off"] | None, Header(alias="X-Mode")] = None,
) -> Answer:
    response.headers["x-seen"] = f"{request.method} {mode}"
    return Answer(chars=len(body.query), top_n=body.top_n, course=course)


def client(route_class: type[APIRoute]) -> TestClient:
    router = APIRouter(route_class=route_class)
    router.post("/ask", response_model=Answer, response_model_exclude_none=True)(endpoint)
    app = FastAPI()
    app.include_router(router)
    return TestClient(app)


CASES: list[tuple[bytes, dict[str, str]]] = [
    (b'{"query": "q"}', {}),
    (b'{"query": "q", "top_n": 3}', {"X-Course": "ml", "X-Mode": "off"}),
    (b'{"query": "q"}', {"X-Mode": "on"}),  # a header FastAPI refuses
    (b'{"query": "q", "extra": 1}', {}),
    (b'{"query": 5}', {}),
    (b'{"query": "q",', {}),  # not JSON
    (b'{"query": "\\ud800"}', {}),  # a lone surrogate, which the json module takes and pydantic-core refuses
    (b"", {}),
    (b'{"query": "q"}', {"content-type": "text/plain"}),
    (b'{"query": "q"}', {"content-type": "application/json; charset=utf-8"}),
]


@pytest.mark.parametrize(("body", "headers"), CASES)
def test_lean_route_answers_as_fastapi_does(body: bytes, headers: dict[str, str]) -> None:
    sent = {"content-type": "application/json"} | headers
    generic = client(APIRoute).post("/ask", content=body, headers=sent)
    leaner = client(LeanRoute).post("/ask", content=body, headers=sent)
    assert (leaner.status_code, leaner.content) == (generic.status_code, generic.content)
    assert sorted(leaner.headers.items()) == sorted(generic.headers.items())


def test_lean_route_serves_a_well_formed_request_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a refusal reaches FastAPI's handler: the well-formed request is answered without it."""
    calls: list[str] = []
    built = lean._lean

    def counting(route: APIRoute, generic: lean.Handler) -> lean.Handler | None:
        async def tracked(request: Request) -> Response:
            calls.append(request.url.path)
            return await generic(request)

        return built(route, tracked)

    monkeypatch.setattr(lean, "_lean", counting)
    test = client(LeanRoute)
    ok = test.post("/ask", json={"query": "q"}, headers={"X-Course": "ml"})
    assert ok.json() == {"chars": 1, "course": "ml"}
    assert ok.headers["x-seen"] == "POST None"
    assert calls == []
    assert test.post("/ask", json={"query": 1}).status_code == 422
    assert calls == ["/ask"]
