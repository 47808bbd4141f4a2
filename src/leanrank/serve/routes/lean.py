"""`LeanRoute`: FastAPI's route, answering a well-formed request without FastAPI's generic handler.

The rerank routes are the gateway's hot path. FastAPI's generic handler parses the JSON body with the `json`
module and validates the dict it gives, solves each parameter as a dependency, then validates the endpoint's
answer against the response model once more before dumping it: 11 % of the event loop's time per call of 20
documents (py-spy under `bench/gateway.py`'s load; 6 % with this handler). A `LeanRoute` is declared like any
route (the OpenAPI schema is FastAPI's, from the same signature) and serves a request itself when nothing in
it can fail: a JSON body that pydantic-core parses and validates in one pass (`model_validate_json`), header
parameters that validate. Anything else (a body that does not parse or validate, another content type, a
header value FastAPI would refuse) goes to FastAPI's own handler before the endpoint runs, so every refusal
is FastAPI's, worded as before. The endpoint's answer, already a response model, is dumped by the route's
own serializer (`exclude_none` and aliases as declared), as FastAPI would dump it.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class LeanRoute(APIRoute):
    """An `APIRoute` (use as an `APIRouter`'s `route_class`) with the lean handler above, for endpoints
    whose parameters are one JSON body model, header parameters, the `Request` and the `Response`, and
    whose answer has a `response_model`; any other endpoint keeps FastAPI's handler."""

    def get_route_handler(self) -> Handler:
        generic = super().get_route_handler()
        return _lean(self, generic) or generic


def _lean(route: APIRoute, generic: Handler) -> Handler | None:
    """The lean handler of `route`, falling back to `generic`; None when the endpoint is not of that form."""
    dependant, body_field, answer = route.dependant, route.body_field, route.response_field
    other = (
        dependant.dependencies,
        dependant.path_params,
        dependant.query_params,
        dependant.cookie_params,
        dependant.background_tasks_param_name,
        dependant.websocket_param_name,
    )
    if any(other) or body_field is None or answer is None or route.status_code is not None:
        return None
    body_type = body_field.field_info.annotation
    if not (isinstance(body_type, type) and issubclass(body_type, BaseModel)):
        return None
    body_name, headers = body_field.name, dependant.header_params
    call = dependant.call
    assert call is not None  # a route always has an endpoint

    async def handle(request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        if content_type.partition(";")[0].strip().lower() != "application/json":
            return await generic(request)
        try:
            body = body_type.model_validate_json(await request.body())
        except ValidationError:
            return await generic(request)  # FastAPI's own words for what is wrong
        values: dict[str, Any] = {body_name: body}
        for field in headers:
            given = request.headers.get(field.alias)
            value, errors = (field.get_default(), []) if given is None else field.validate(given)
            if errors:
                return await generic(request)
            values[field.name] = value
        reply = Response()  # the endpoint's headers, as FastAPI hands them over
        del reply.headers["content-length"]
        if dependant.request_param_name:
            values[dependant.request_param_name] = request
        if dependant.response_param_name:
            values[dependant.response_param_name] = reply
        content = answer.serialize_json(
            await call(**values),
            by_alias=route.response_model_by_alias,
            exclude_unset=route.response_model_exclude_unset,
            exclude_defaults=route.response_model_exclude_defaults,
            exclude_none=route.response_model_exclude_none,
        )
        response = Response(content, media_type="application/json")
        response.headers.raw.extend(reply.headers.raw)
        return response

    return handle
