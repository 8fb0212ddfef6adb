"""Request parsing under hostile input, as properties (no server).

Whatever arrives, ``service.bodies.decode`` gives the request model or an :class:`ApiError` the
client can act on (400 for bytes that are not JSON, 422 for JSON the model refuses), never any
other exception: those would be 500s. And every body the OpenAPI document calls valid, the model
accepts: the document and the validation cannot drift apart.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from service.bodies import decode
from service.errors import ApiError
from service.openapi import request_components
from service.protocol import REQUESTS, Limit, LimitValue, OpenAIEmbeddingRequest

# Fixed examples per run (derandomized), no example database written into the checkout; bodies
# drawn from the OpenAPI document cost ~20 ms each, so fewer of them.
SETTINGS = settings(max_examples=100, derandomize=True, database=None, deadline=None)
DOCUMENT_SETTINGS = settings(SETTINGS, max_examples=40)
LIMITS: dict[Limit, LimitValue] = {
    "vocabulary": 30521,
    "dimension": 384,
    "inputs": 2048,
    "prompts": ["query"],
}
# Any JSON value (json.dumps, not orjson: integers beyond 64 bits are JSON too).
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def wire(body: Any) -> bytes:
    """A generated body as sent: bytes as they are (negative cases may not be JSON at all)."""
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def outcome(raw: bytes, model: type[BaseModel]) -> BaseModel | ApiError:
    try:
        return decode(raw, model)
    except ApiError as error:
        return error


def assert_client_error(result: BaseModel | ApiError, model: type[BaseModel]) -> None:
    if isinstance(result, ApiError):
        assert (result.status, result.code) in ((400, "invalid_json"), (422, "invalid_value"))
        assert result.message
        assert result.param is None or result.param in model.model_fields
    else:
        assert isinstance(result, model)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b'{"input": [101.0, 102]}', None),  # JSON Schema's integers include 101.0
        (b'{"input": ' + b"[" * 1000 + b"]" * 1000 + b"}", 422),
        (b'{"input": ' + b"[" * 2000 + b"]" * 2000 + b"}", 400),  # past orjson's depth limit
    ],
)
def test_edge_bodies(raw: bytes, status: int | None) -> None:
    result = outcome(raw, OpenAIEmbeddingRequest)
    assert_client_error(result, OpenAIEmbeddingRequest)
    assert (result.status if isinstance(result, ApiError) else None) == status


@SETTINGS
@given(raw=st.binary(max_size=256), model=st.sampled_from(REQUESTS))
def test_any_bytes_give_a_model_or_a_client_error(raw: bytes, model: type[BaseModel]) -> None:
    assert_client_error(outcome(raw, model), model)


@st.composite
def mangled_json(draw: st.DrawFn) -> bytes:
    """JSON text cut short or with a byte changed: the near misses a parser meets in practice."""
    text = json.dumps(draw(JSON_VALUES)).encode()
    at = draw(st.integers(0, len(text)))
    if draw(st.booleans()):
        return text[:at]
    return text[:at] + bytes([draw(st.integers(0, 255))]) + text[at + 1 :]


@SETTINGS
@given(raw=mangled_json(), model=st.sampled_from(REQUESTS))
def test_mangled_json_gives_a_model_or_a_client_error(raw: bytes, model: type[BaseModel]) -> None:
    assert_client_error(outcome(raw, model), model)


@SETTINGS
@given(value=JSON_VALUES, model=st.sampled_from(REQUESTS))
def test_any_json_value_gives_a_model_or_a_client_error(value: Any, model: type[BaseModel]) -> None:
    assert_client_error(outcome(json.dumps(value).encode(), model), model)


@st.composite
def fielded_bodies(draw: st.DrawFn, model: type[BaseModel]) -> dict[str, Any]:
    """Objects with the model's own field names (and some others) holding any JSON value."""
    names = st.sampled_from([*model.model_fields, "extra"])
    return draw(st.dictionaries(names, JSON_VALUES, max_size=5))


@pytest.mark.parametrize("model", REQUESTS, ids=lambda m: m.__name__)
def test_any_values_in_the_models_fields_give_a_model_or_a_422_naming_one(
    model: type[BaseModel],
) -> None:
    @SETTINGS
    @given(body=fielded_bodies(model))
    def check(body: dict[str, Any]) -> None:
        result = outcome(json.dumps(body).encode(), model)
        assert_client_error(result, model)
        if isinstance(result, ApiError) and body:  # an empty object misses "input(s)" itself
            assert result.status == 422 and result.param in model.model_fields

    check()


def request_document() -> dict[str, Any]:
    """The request components of the OpenAPI document, one POST operation per model."""
    refs, components = request_components(LIMITS)
    paths = {
        f"/{model.__name__}": {
            "post": {
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": refs[model]}},
                },
                "responses": {"200": {"description": "accepted"}},
            }
        }
        for model in REQUESTS
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "requests", "version": "1"},
        "paths": paths,
        "components": {"schemas": components},
    }


@pytest.mark.parametrize("model", REQUESTS, ids=lambda m: m.__name__)
def test_every_body_the_document_calls_valid_is_accepted(model: type[BaseModel]) -> None:
    operation = schemathesis.openapi.from_dict(request_document())[f"/{model.__name__}"]["POST"]

    @DOCUMENT_SETTINGS
    @given(case=operation.as_strategy())
    def check(case: schemathesis.Case) -> None:
        raw = wire(case.body)
        assert isinstance(decode(raw, model), model), raw  # an ApiError here fails the test

    check()


@pytest.mark.parametrize("model", REQUESTS, ids=lambda m: m.__name__)
def test_bodies_the_document_rejects_give_a_model_or_a_client_error(
    model: type[BaseModel],
) -> None:
    """Schema-invalid bodies the model still takes (an empty input) get the routes' own 400."""
    operation = schemathesis.openapi.from_dict(request_document())[f"/{model.__name__}"]["POST"]

    @DOCUMENT_SETTINGS
    @given(case=operation.as_strategy(schemathesis.GenerationMode.NEGATIVE))
    def check(case: schemathesis.Case) -> None:
        assert_client_error(outcome(wire(case.body), model), model)

    check()
