"""Bodies of the HTTP API as pydantic models: strict requests (no silent coercion; whole-number
floats count as integers, as in JSON Schema), the responses and both error dialects, and the
pieces of the OpenAPI document built from them.

The routes read requests themselves (bounded, orjson, these models) and write responses with
orjson; the response models here only document what they write, and the fuzz tests hold the
service to them (tests/service/test_fuzz.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    RootModel,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue, models_json_schema
from pydantic_core import CoreSchema

if TYPE_CHECKING:
    from fastapi import FastAPI

DEADLINE_HEADER = "x-request-timeout-ms"


def deadline_seconds(raw: str) -> float | None:
    """``x-request-timeout-ms`` in seconds; None unless a positive, finite number. Checked in
    milliseconds: 5e-324 ms is positive, though 0.0 once converted to seconds."""
    try:
        given_ms = float(raw)
    except ValueError:
        return None
    return given_ms / 1000 if given_ms > 0 and math.isfinite(given_ms) else None


# A deployment's own bounds in a schema: {"x-limit": {"maximum": "vocabulary"}} becomes
# {"maximum": <the model's last token id>} when the document is built (``bind_limits``);
# {"x-limit": {"enum": "prompts"}} the list of the model's prompt names.
LIMIT_KEY = "x-limit"
Limit = Literal["vocabulary", "dimension", "inputs", "prompts"]
LimitValue = int | list[str]


class Documented:
    """JSON Schema keywords for the documentation only, added to the generated schema.

    The routes check these themselves and answer 400 or 413 with their own codes (an empty
    input, an unknown token id, too many inputs); as pydantic constraints they would turn into
    generic 422s, so validation stays as it is and only the document says it.
    """

    def __init__(self, keywords: dict[str, Any]) -> None:
        self.keywords = keywords

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {**handler(core_schema), **self.keywords}


def limited(**limits: Limit) -> Documented:
    return Documented({LIMIT_KEY: limits})


Text = Annotated[StrictStr, Documented({"minLength": 1})]
Texts = Annotated[list[Text], Documented({"minItems": 1}), limited(maxItems="inputs")]
TokenId = Annotated[StrictInt, Documented({"minimum": 0}), limited(maximum="vocabulary")]
TokenIds = Annotated[list[TokenId], Documented({"minItems": 1})]
Dimensions = Annotated[StrictInt, limited(maximum="dimension")]
PromptName = Annotated[StrictStr, limited(enum="prompts")]


def _whole_numbers(value: Any, depth: int = 2) -> Any:
    """``value`` with whole-number floats as ints, in lists nested up to ``depth`` deep."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list) and depth > 0:
        return [_whole_numbers(item, depth - 1) for item in value]
    return value


class OpenAIEmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``: https://platform.openai.com/docs/api-reference/embeddings"""

    model_config = ConfigDict(extra="ignore")

    input: (
        Text
        | Texts
        | TokenIds
        | Annotated[list[TokenIds], Documented({"minItems": 1}), limited(maxItems="inputs")]
    )
    model: StrictStr | None = Field(None, description="the served model's id; others get 404")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Dimensions | None = Field(None, ge=1)
    user: StrictStr | None = None
    prompt_name: PromptName | None = Field(
        None,
        description="extension: a prompt of the model (GET /info lists them) put before each "
        "text, as text-embeddings-inference's prompt_name; default: the model's default prompt",
    )

    @field_validator("input", "dimensions", mode="wrap")
    @classmethod
    def _whole_floats_are_integers(cls, value: Any, strict: ValidatorFunctionWrapHandler) -> Any:
        """Take ``5.0`` where an integer goes: JSON Schema counts it as one, so the document
        cannot promise otherwise (found by tests/service/test_protocol.py). Tried only after
        strict validation failed: a well-formed request pays nothing."""
        try:
            return strict(value)
        except ValidationError:
            return strict(_whole_numbers(value))


def _direction(value: object) -> object:
    # TEI spells the enum "Right"/"Left"; accept any case.
    return value.lower() if isinstance(value, str) else value


class TeiEmbedRequest(BaseModel):
    """``POST /embed`` and ``/embed_all``, as in text-embeddings-inference."""

    model_config = ConfigDict(extra="ignore")

    inputs: Text | Texts
    normalize: StrictBool = True
    truncate: StrictBool | None = Field(None, description="default: the server's setting")
    truncation_direction: Annotated[
        Literal["right", "left"],
        Documented({"enum": ["right", "left", "Right", "Left"], "description": "any case"}),
    ] = "right"
    prompt_name: PromptName | None = Field(
        None,
        description="a prompt of the model (GET /info lists them) put before each input; "
        "default: the model's default prompt",
    )

    _lower = field_validator("truncation_direction", mode="before")(_direction)


class TokenizeRequest(BaseModel):
    """``POST /tokenize``: token ids and character offsets of each input."""

    model_config = ConfigDict(extra="ignore")

    inputs: (
        StrictStr
        | Annotated[list[StrictStr], Documented({"minItems": 1}), limited(maxItems="inputs")]
    )
    add_special_tokens: StrictBool = True


REQUESTS: tuple[type[BaseModel], ...] = (OpenAIEmbeddingRequest, TeiEmbedRequest, TokenizeRequest)


class ResponseBody(BaseModel):
    """A response body: exactly these keys (the fuzz tests check every answer against it)."""

    model_config = ConfigDict(extra="forbid")


class Embedding(ResponseBody):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(
        description="floats, or with encoding_format=base64 the little-endian float32 bytes"
    )


class Usage(ResponseBody):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingResponse(ResponseBody):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: Usage


class TeiEmbedResponse(RootModel[list[list[float]]]):
    """One pooled vector per input."""


class TeiEmbedAllResponse(RootModel[list[list[list[float]]]]):
    """Per input, one vector per token (special tokens included, no padding)."""


class TokenInfo(ResponseBody):
    id: int
    text: str
    special: bool
    start: int = Field(description="character offset in the input; 0 for special tokens")
    stop: int


class TokenizeResponse(RootModel[list[list[TokenInfo]]]):
    """Per input, its tokens."""


class HealthResponse(ResponseBody):
    status: Literal["ok"]


class InfoResponse(BaseModel):
    """The served model, backend, batching and limits; more keys may come."""

    model_config = ConfigDict(extra="allow")

    model_id: str
    dimension: int
    max_input_length: int
    backend: dict[str, Any]
    batching: dict[str, Any]
    limits: dict[str, Any]


class ModelCard(ResponseBody):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(ResponseBody):
    object: Literal["list"]
    data: list[ModelCard]


class OpenAIErrorDetail(ResponseBody):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(ResponseBody):
    """The error body of the OpenAI-style routes (and of health, info, unknown routes)."""

    error: OpenAIErrorDetail


class TeiError(ResponseBody):
    """The error body of the TEI-style routes (/embed, /embed_all, /tokenize)."""

    error: str
    error_type: str


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
          "the model lacks (TEI routes: 422, as TEI)"},
    401: {"description": "missing or wrong API key (Authorization: Bearer <key>)"},
    404: {"description": "the model named is not the one served"},
    413: {"description": "body over max_body_bytes (decoded), too many inputs, or an input over "
          "the model's length with truncation off"},
    415: {"description": "a Content-Encoding other than gzip, deflate or identity"},
    422: {"description": "a body that does not fit the request schema; on TEI routes also a "
          "prompt_name the model lacks"},
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


def route_docs(
    dialect: str,
    success: type[BaseModel] | dict[str, Any],
    errors: tuple[int, ...],
    *,
    secured: bool,
    body: dict[str, str] | None = None,
    deadline: bool = False,
) -> dict[str, Any]:
    """``api.get/post`` arguments that document a route: FastAPI only sees ``Request``.

    ``success`` is the 200 body's model, or a whole response object for one that is not JSON
    (give such a route ``response_class=Response``: FastAPI documents a route's error models in
    its response class's media type); ``body`` is the ``$ref`` of the request model
    (``request_components``); errors come in the route's dialect; 401 and the bearer requirement
    only where this deployment has API keys.
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
    if deadline:
        extra["parameters"] = [DEADLINE_PARAMETER]
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
