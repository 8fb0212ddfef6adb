"""Bearer keys: every route but health and metrics refuses a request without a configured key."""

from __future__ import annotations

import httpx
import pytest

from .conftest import ClientFactory


@pytest.fixture(scope="module")
def client(make_client: ClientFactory) -> httpx.Client:
    return make_client(api_keys=["key-one", "key-two"])


@pytest.mark.parametrize("header", [None, "Bearer wrong", "key-one", "Basic key-one"])
def test_requests_without_a_valid_key_get_401(client: httpx.Client, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = client.post("/v1/embeddings", json={"input": "x"}, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert response.headers["www-authenticate"] == "Bearer"
    tei = client.post("/embed", json={"inputs": "x"}, headers=headers)
    assert tei.status_code == 401 and tei.json()["error_type"] == "Unauthorized"


@pytest.mark.parametrize("key", ["key-one", "key-two"])
def test_any_configured_key_works(client: httpx.Client, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    assert client.post("/v1/embeddings", json={"input": "x"}, headers=headers).status_code == 200


def test_health_and_metrics_stay_open(client: httpx.Client) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/info").status_code == 401
