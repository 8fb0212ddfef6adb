"""The OpenAPI document of the routes: request schemas with this deployment's limits bound in,
each route's responses in its dialect with why each error status comes, and the headers a route
takes. FastAPI only sees ``Request`` in the handlers, so everything is declared here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .protocol import (
    DEADLINE_HEADER,
    LIMIT_KEY,
    MODEL_HEADER,
    REQUESTS,
    Limit,
    LimitValue,
    OpenAIError,
    TeiError,
)

if TYPE_CHECKING:
    from fastapi import FastAPI


def bind_limits(schema: Any, limits: Mapping[Limit, LimitValue]) -> Any:
    """``schema`` with every ``x-limit`` marker replaced by this deployment's number."""
    if isinstance(schema, list):
        return [bind_limits(item, limits) for item in schema]
    if not isinstance(schema, dict):
        return schema
    bound = {key: bind_limits(value, limits) for key, value in schema.items() if key != LIMIT_KEY}
    for keyword, name in schema.get(LIMIT_KEY, {}).items():
        bound[keyword] = limits[name]
    return bound


def request_components(
    limits: Mapping[Limit, LimitValue],
) -> tuple[dict[type[BaseModel], dict[str, str]], dict[str, Any]]:
    """The request models as OpenAPI components: a ``$ref`` per model, and the schemas
    (nested models' ``$defs`` included) to put under ``components/schemas``."""
    refs, defs = models_json_schema(
        [(model, "validation") for model in REQUESTS],
        ref_template="#/components/schemas/{model}",
    )
    return (
        {cast("type[BaseModel]", model): ref for (model, _), ref in refs.items()},
        bind_limits(defs.get("$defs", {}), limits),
    )


BEARER = "bearer"
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
# Why each status may come; Ray's router and proxy answer 429 and 503 for any route.
ERRORS: dict[int, dict[str, Any]] = {
    400: {"description": "malformed JSON or compressed body, an empty input, a token id outside "
          f"the vocabulary, dimensions over the model's, a bad {DEADLINE_HEADER}, a prompt_name "
          "the model lacks (TEI routes: 422, as TEI), a task the model does not serve "
          "(task_not_served; TEI routes: 424, as TEI)"},
    401: {"description": "missing or wrong API key (Authorization: Bearer <key>)"},
    404: {"description": f"the model named (the body's model; {MODEL_HEADER} on TEI routes) "
          "is not served here"},
    413: {"description": "body over max_body_bytes (decoded), too many inputs, or an input over "
          "the model's length with truncation off"},
    415: {"description": "a Content-Encoding other than gzip, deflate or identity"},
    422: {"description": "a body that does not fit the request schema; on TEI routes also a "
          "prompt_name the model lacks"},
    424: {"description": "the addressed model does not serve this route (an embedding model "
          "asked to rerank, a reranker asked to embed), as TEI answers it"},
    429: {"description": "busy: too much work queued; retry after Retry-After",
          "headers": RETRY_AFTER},
    503: {"description": "no replica can answer (starting, lost, unhealthy); retry after "
          "Retry-After", "headers": RETRY_AFTER},
    504: {"description": "the request's deadline passed before its inputs ran"},
}  # fmt: skip
BODY_ERRORS = (400, 413, 415, 422)
METRICS_RESPONSE = {
    "description": "Prometheus text exposition format",
    "content": {"text/plain": {"schema": {"type": "string"}}},
}
DEADLINE_PARAMETER = {
    "name": DEADLINE_HEADER,
    "in": "header",
    "required": False,
    "description": "answer within this many milliseconds or get 504 (the server's "
    "request_timeout_s, 300 s by default, still bounds it)",
    "schema": {"type": "number", "exclusiveMinimum": 0},
}
MODEL_PARAMETER = {
    "name": MODEL_HEADER,
    "in": "header",
    "required": False,
    "description": "the served model to ask (GET /v1/models lists them); default: the first",
    "schema": {"type": "string"},
}


def route_docs(
    dialect: str,
    success: type[BaseModel] | dict[str, Any],
    errors: tuple[int, ...],
    *,
    secured: bool,
    body: dict[str, Any] | None = None,
    deadline: bool = False,
) -> dict[str, Any]:
    """``api.get/post`` arguments that document a route: FastAPI only sees ``Request``.

    ``success`` is the 200 body's model, or a whole response object for one that is not JSON
    (give such a route ``response_class=Response``: FastAPI documents a route's error models in
    its response class's media type); ``body`` is the ``$ref`` of the request model
    (``request_components``); errors come in the route's dialect; 401 and the bearer requirement
    only where this deployment has API keys; a TEI route's body may address a model by header.
    """
    error = TeiError if dialect == "tei" else OpenAIError
    ok = success if isinstance(success, dict) else {"model": success}
    responses: dict[int | str, dict[str, Any]] = {200: ok}
    for status in sorted(errors):
        if secured or status != 401:
            responses[status] = {"model": error, **ERRORS[status]}
    extra: dict[str, Any] = {}
    if body is not None:
        extra["requestBody"] = {
            "required": True,
            "description": "JSON; may be sent gzip- or deflate-compressed (Content-Encoding)",
            "content": {"application/json": {"schema": body}},
        }
    if secured:
        extra["security"] = [{BEARER: []}]
    parameters = [DEADLINE_PARAMETER] if deadline else []
    if dialect == "tei" and body is not None:
        parameters.append(MODEL_PARAMETER)
    if parameters:
        extra["parameters"] = parameters
    return {"responses": responses, "openapi_extra": extra}


def complete_openapi(api: FastAPI, components: dict[str, Any], secured: bool) -> None:
    """Add what the routes declare by reference to FastAPI's document, once, when first asked
    for: the request models' schemas and, with API keys, the bearer scheme."""
    generate = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is not None:
            return api.openapi_schema
        document = generate()  # kept as api.openapi_schema: completed here once
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        if clash := schemas.keys() & components.keys():
            raise RuntimeError(f"request and response schemas share names: {sorted(clash)}")
        schemas.update(components)
        if secured:
            scheme = {"type": "http", "scheme": "bearer", "description": "an API key"}
            document["components"]["securitySchemes"] = {BEARER: scheme}
        return document

    api.openapi = openapi  # type: ignore[method-assign]
