"""``/openapi.json`` of the real service: a valid OpenAPI document that says what the routes do.

The routes read raw requests, so FastAPI cannot infer their bodies; these tests hold the declared
schemas to the behaviour: the bounds a schema states are the ones the service enforces, errors
are documented in each route's dialect, and the bearer scheme appears exactly where keys do.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from jsonschema import Draft202012Validator
from schemathesis.core.result import Err, Ok
from schemathesis.python import asgi

from .conftest import ClientFactory, InProcessClient

KEY = "openapi-key"
OPERATIONS = {
    ("POST", "/v1/embeddings"),
    ("POST", "/embed"),
    ("POST", "/embed_all"),
    ("POST", "/tokenize"),
    ("POST", "/rerank"),
    ("POST", "/predict"),
    ("POST", "/"),
    ("POST", "/v1/rerank"),
    ("GET", "/health"),
    ("GET", "/info"),
    ("GET", "/v1/models"),
    ("GET", "/metrics"),
}
TEI_PATHS = ("/embed", "/embed_all", "/tokenize", "/rerank", "/predict", "/")
PUBLIC = {"/health", "/metrics"}


@pytest.fixture(scope="module")
def client(make_client: ClientFactory) -> InProcessClient:
    """The app with an API key, so the document has its security parts."""
    c = make_client(api_keys=[KEY])
    c.headers["Authorization"] = f"Bearer {KEY}"
    return c


@pytest.fixture(scope="module")
def document(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/openapi.json", headers={"Authorization": ""})  # no key needed
    assert response.status_code == 200, response.text
    return response.json()


def validator(document: dict[str, Any], component: str) -> Draft202012Validator:
    """A JSON Schema validator for one component, its ``$ref``s resolved in the document."""
    return Draft202012Validator({**document, "$ref": f"#/components/schemas/{component}"})


def test_schemathesis_loads_a_valid_document_with_every_route(
    client: InProcessClient, document: dict[str, Any]
) -> None:
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
        schema.validate()  # raises on a document that is not valid OpenAPI
        results = list(schema.get_all_operations())
    finally:
        asgi.shutdown_lifespans()  # schemathesis would hold the app, and its engine, for good
    assert [result.err() for result in results if isinstance(result, Err)] == []
    loaded = [result.ok() for result in results if isinstance(result, Ok)]
    assert {(op.method.upper(), op.path) for op in loaded} == OPERATIONS
    assert document["openapi"].startswith("3.")


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for item in node:
                yield from refs(item)

    found = set(refs(document))
    assert "#/components/schemas/OpenAIEmbeddingRequest" in found
    for ref in found:
        assert ref.startswith("#/"), ref
        target: Any = document
        for part in ref[2:].split("/"):
            assert part in target, f"{ref} does not resolve"
            target = target[part]
    assert not any("$defs" in ref for ref in found)


def test_post_routes_declare_their_request_model(document: dict[str, Any]) -> None:
    expected = {
        "/v1/embeddings": "OpenAIEmbeddingRequest",
        "/embed": "TeiEmbedRequest",
        "/embed_all": "TeiEmbedAllRequest",
        "/tokenize": "TokenizeRequest",
        "/rerank": "TeiRerankRequest",
        "/predict": "TeiPredictRequest",
        "/": "TeiEmbedRequest",  # the default model's own route's: MiniLM's /embed
        "/v1/rerank": "CohereRerankRequest",
    }
    for path, model in expected.items():
        body = document["paths"][path]["post"]["requestBody"]
        assert body["required"] is True
        assert body["content"]["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/{model}"
        }


@pytest.mark.parametrize(
    ("body", "accepted"),
    [
        ({"input": [30521]}, True),  # the last token id of the vocabulary
        ({"input": [30522]}, False),
        ({"input": [[101, 102], [0]]}, True),
        ({"input": [[]]}, False),
        ({"input": "x", "dimensions": 384}, True),
        ({"input": "x", "dimensions": 385}, False),
        ({"input": ["x"] * 2048}, True),
        ({"input": ["x"] * 2049}, False),
        ({"input": ""}, False),
        ({"input": []}, False),
    ],
)
def test_documented_bounds_are_the_enforced_ones(
    client: httpx.Client, document: dict[str, Any], body: dict[str, Any], accepted: bool
) -> None:
    """The schema carries this deployment's vocabulary, dimension and input count; a body is
    valid by the document exactly when the service embeds it."""
    assert validator(document, "OpenAIEmbeddingRequest").is_valid(body) is accepted
    response = client.post("/v1/embeddings", json=body)
    assert (response.status_code == 200) is accepted, response.text
    if not accepted:
        assert response.status_code in (400, 413), response.text


def test_tei_direction_in_any_documented_case_is_accepted(
    client: httpx.Client, document: dict[str, Any]
) -> None:
    for direction in ("right", "Left"):
        body = {"inputs": "a", "truncation_direction": direction}
        assert validator(document, "TeiEmbedRequest").is_valid(body)
        assert client.post("/embed", json=body).status_code == 200


def test_errors_are_documented_in_each_routes_dialect(document: dict[str, Any]) -> None:
    for path, methods in document["paths"].items():
        for operation in methods.values():
            expected = "TeiError" if path in TEI_PATHS else "OpenAIError"
            errors = {s: r for s, r in operation["responses"].items() if not s.startswith("2")}
            assert {"429", "503"} <= errors.keys(), path
            for status, response in errors.items():
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": f"#/components/schemas/{expected}"}, (path, status)
    embeddings = document["paths"]["/v1/embeddings"]["post"]["responses"]
    assert set(embeddings) == {"200", "400", "401", "404", "413", "415", "422", "429", "503", "504"}
    for path in ("/embed", "/rerank", "/predict", "/"):  # a model named by x-model, or unable
        assert {"404", "424"} <= document["paths"][path]["post"]["responses"].keys(), path
    headers = [p["name"] for p in document["paths"]["/rerank"]["post"]["parameters"]]
    assert headers == ["x-request-timeout-ms", "x-model"]


@pytest.mark.parametrize(
    ("path", "content", "headers", "status"),
    [
        ("/v1/embeddings", b"{", {}, 400),
        ("/v1/embeddings", b'{"input": 5}', {}, 422),
        ("/v1/embeddings", b'{"input": "x", "model": "gpt-4"}', {}, 404),
        ("/embed", b"[]", {}, 422),
        ("/embed_all", b'{"inputs": "x"}', {"Content-Encoding": "br"}, 415),
        ("/tokenize", b'{"inputs": "x"}', {"Authorization": "Bearer wrong"}, 401),
    ],
)
def test_real_error_answers_match_the_document(
    client: httpx.Client,
    document: dict[str, Any],
    path: str,
    content: bytes,
    headers: dict[str, str],
    status: int,
) -> None:
    schema = schemathesis.openapi.from_dict(document)
    response = client.post(path, content=content, headers=headers)
    assert response.status_code == status, response.text
    schema[path]["POST"].validate_response(response)  # raises when the body is not as declared


def test_success_answers_match_the_document(client: httpx.Client, document: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_dict(document)
    calls = [
        ("POST", "/v1/embeddings", {"input": ["a", "b"], "encoding_format": "base64"}),
        ("POST", "/embed", {"inputs": ["a"]}),
        ("POST", "/embed_all", {"inputs": "ab"}),
        ("POST", "/tokenize", {"inputs": ["Zürich"]}),
        ("GET", "/health", None),
        ("GET", "/info", None),
        ("GET", "/v1/models", None),
        ("GET", "/metrics", None),
    ]
    for method, path, body in calls:
        response = client.request(method, path, json=body)
        assert response.status_code == 200, (path, response.text)
        schema[path][method].validate_response(response)


def test_key_routes_declare_bearer_and_public_ones_do_not(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path, methods in document["paths"].items():
        for operation in methods.values():
            if path in PUBLIC:
                assert "security" not in operation and "401" not in operation["responses"]
            else:
                assert operation["security"] == [{"bearer": []}], path
                assert "401" in operation["responses"], path


def test_docs_page_is_served(client: httpx.Client) -> None:
    response = client.get("/docs", headers={"Authorization": ""})
    assert response.status_code == 200
    assert "/openapi.json" in response.text


def test_a_deployment_without_keys_documents_no_security(make_client: ClientFactory) -> None:
    """The document describes its own deployment: no keys, no bearer scheme and no 401s."""
    document = make_client().get("/openapi.json").json()
    assert "securitySchemes" not in document["components"]
    for methods in document["paths"].values():
        for operation in methods.values():
            assert "security" not in operation and "401" not in operation["responses"]
    schemathesis.openapi.from_dict(document).validate()
