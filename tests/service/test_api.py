"""The HTTP API over the real model, against the offline PyTorch model: in this process (the
unit tier), and once per route over Ray Serve's ingress."""

from __future__ import annotations

import base64
import re

import httpx
import numpy as np
import pytest

from ..helpers import cosine, embed


@pytest.fixture(scope="module")
def atol(client: httpx.Client) -> float:
    """Batch-composition tolerance of the served precision (bf16 is the default on some CPUs)."""
    return 1e-5 if client.get("/info").json()["backend"]["precision"] == "fp32" else 2e-3


LONG = " ".join(["The committee reviewed every clause of the agreement before the vote."] * 40)


def test_openai_route_matches_pytorch_on_real_text(
    client: httpx.Client, corpus, reference_vectors: np.ndarray
) -> None:
    texts = corpus[:360]
    served = np.concatenate([embed(client, texts[i : i + 37]) for i in range(0, len(texts), 37)])
    reference = reference_vectors[:360]
    assert served.shape == reference.shape == (len(texts), 384)
    assert cosine(served, reference).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)


def test_tei_route_matches_pytorch(
    client: httpx.Client, corpus, reference_vectors: np.ndarray
) -> None:
    texts = corpus[-45:]  # the long passages
    response = client.post("/embed", json={"inputs": texts})
    assert response.status_code == 200, response.text
    served = np.array(response.json(), dtype=np.float32)
    assert cosine(served, reference_vectors[-45:]).min() >= 0.9999


def test_every_input_shape(client: httpx.Client, minilm, atol: float) -> None:
    texts = ["first input", "a second, longer input sentence"]
    ids = minilm.tokenizer.tokenize(texts)
    as_list = embed(client, texts)
    one = embed(client, texts[0])  # a bare string
    by_ids = embed(client, ids)  # a list of token-id lists
    one_ids = embed(client, ids[0])  # a single token-id list
    assert one.shape == one_ids.shape == (1, 384)
    np.testing.assert_allclose(one[0], as_list[0], atol=atol)
    np.testing.assert_allclose(by_ids, as_list, atol=atol)
    np.testing.assert_allclose(one_ids[0], as_list[0], atol=atol)


def test_response_shape_and_usage(client: httpx.Client, minilm) -> None:
    response = client.post("/v1/embeddings", json={"input": ["hello world", "hi"], "user": "u1"})
    body = response.json()
    assert body["object"] == "list" and body["model"] == "all-MiniLM-L6-v2"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert all(d["object"] == "embedding" for d in body["data"])
    tokens = sum(len(s) for s in minilm.tokenizer.tokenize(["hello world", "hi"]))
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert response.headers["x-total-tokens"] == str(tokens)
    assert float(response.headers["x-queue-time-ms"]) >= 0
    assert float(response.headers["x-inference-time-ms"]) > 0
    assert response.headers["x-request-id"]


def test_request_ids_are_made_only_for_requests_without_one(client: httpx.Client) -> None:
    made = client.post("/embed", json={"inputs": "hi"})
    assert re.fullmatch("[0-9a-f]{32}", made.headers["x-request-id"]), made.headers
    given = client.post("/embed", json={"inputs": "hi"}, headers={"x-request-id": "abc-123"})
    assert given.status_code == 200, given.text
    assert "x-request-id" not in given.headers  # Ray's proxy echoes it: once, not twice


def test_base64_decodes_to_the_float_answer(client: httpx.Client) -> None:
    texts = ["base64 is smaller on the wire", "and exact"]
    floats = embed(client, texts)
    body = client.post("/v1/embeddings", json={"input": texts, "encoding_format": "base64"}).json()
    decoded = np.stack(
        [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in body["data"]]
    )
    np.testing.assert_array_equal(decoded, floats)


def test_dimensions_truncate_then_renormalise(client: httpx.Client) -> None:
    full = embed(client, ["matryoshka style truncation"])
    short = embed(client, ["matryoshka style truncation"], dimensions=64)
    assert short.shape == (1, 64)
    expected = full[:, :64] / np.linalg.norm(full[:, :64], axis=1, keepdims=True)
    np.testing.assert_allclose(short, expected, atol=1e-6)


@pytest.mark.parametrize("side", ["right", "left"])
def test_truncation_both_directions(client: httpx.Client, minilm, side: str) -> None:
    text = LONG + " Only the very end differs: purple elephants."
    direction = side.capitalize()  # TEI spells it "Right"/"Left"
    body = client.post("/embed", json={"inputs": [text], "truncation_direction": direction})
    assert body.status_code == 200, body.text
    served = np.array(body.json(), dtype=np.float32)
    expected = minilm.encode([text], side=side)
    other = minilm.encode([text], side="left" if side == "right" else "right")
    assert cosine(served, expected)[0] >= 0.9999
    assert cosine(expected, other)[0] < 0.999  # the two sides really differ


def test_unnormalised_tei_output(client: httpx.Client, minilm) -> None:
    served = np.array(client.post("/embed", json={"inputs": "raw", "normalize": False}).json())
    assert abs(np.linalg.norm(served[0]) - 1.0) > 1e-3
    assert cosine(served, minilm.encode(["raw"]))[0] >= 0.9999


def test_embed_all_returns_token_vectors_without_padding(
    client: httpx.Client, minilm, atol: float
) -> None:
    import torch

    texts = ["short", "a somewhat longer input for per-token vectors"]
    body = client.post("/embed_all", json={"inputs": texts})
    assert body.status_code == 200, body.text
    served = body.json()
    for text, vectors in zip(texts, served, strict=True):
        batch = minilm.tokenizer.encode([text])
        with torch.inference_mode():
            tokens, _ = minilm.encoder(
                torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask)
            )
        served = np.array(vectors)
        assert served.shape == (int(batch.lengths[0]), 384)
        assert cosine(served, tokens[0].numpy()).min() >= 0.999
        np.testing.assert_allclose(served, tokens[0].numpy(), atol=max(1e-4, 100 * atol))


def test_tokenize(client: httpx.Client, minilm) -> None:
    body = client.post("/tokenize", json={"inputs": ["Hello, Zürich!"]}).json()
    assert [t["id"] for t in body[0]] == minilm.tokenizer.tokenize(["Hello, Zürich!"])[0]
    assert body[0][0]["special"] and body[0][1]["text"] == "hello"
    assert (body[0][1]["start"], body[0][1]["stop"]) == (0, 5)


def test_info_models_health(client: httpx.Client) -> None:
    info = client.get("/info").json()
    assert info["model_id"] == "all-MiniLM-L6-v2" and info["dimension"] == 384
    assert info["max_input_length"] == 256
    assert info["backend"]["name"] in ("onnxruntime", "openvino")
    assert info["backend"]["reason"].startswith("auto:")
    assert info["batching"]["max_batch_size"] >= 1
    assert (info["task"], info["labels"]) == ("embedding", [])
    assert [m["model_id"] for m in info["models"]] == ["all-MiniLM-L6-v2"]
    models = client.get("/v1/models").json()
    assert models["data"][0]["id"] == "all-MiniLM-L6-v2"
    health = client.get("/health")
    assert health.status_code == 200 and health.json() == {"status": "ok"}


def test_openai_python_client(client: httpx.Client, minilm) -> None:
    from openai import OpenAI

    base_url = str(client.base_url).rstrip("/") + "/v1"
    openai = OpenAI(base_url=base_url, api_key="unused", max_retries=0, http_client=client)
    texts = ["the official client sends base64 by default", "and decodes it"]
    result = openai.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
    served = np.array([d.embedding for d in result.data], dtype=np.float32)
    assert cosine(served, minilm.encode(texts)).min() >= 0.9999


def test_every_route_answers_over_rays_ingress(ray_client: httpx.Client, minilm) -> None:
    """The deployed service: each route once through Ray's proxy, the request id echoed."""
    texts = ["served by a Ray replica", "through the proxy"]
    headers = {"x-request-id": "abc-123"}
    response = ray_client.post("/v1/embeddings", json={"input": texts}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "abc-123"
    served = np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float32)
    assert cosine(served, minilm.encode(texts)).min() >= 0.9999
    tei = ray_client.post("/embed", json={"inputs": texts})
    assert tei.status_code == 200, tei.text
    assert cosine(np.array(tei.json()), minilm.encode(texts)).min() >= 0.9999
    per_token = ray_client.post("/embed_all", json={"inputs": texts[0]})
    assert per_token.status_code == 200, per_token.text
    assert np.array(per_token.json()[0]).shape == (len(minilm.tokenizer.tokenize(texts)[0]), 384)
    tokens = ray_client.post("/tokenize", json={"inputs": texts[0]})
    assert [t["id"] for t in tokens.json()[0]] == minilm.tokenizer.tokenize(texts)[0]
    assert ray_client.get("/health").json() == {"status": "ok"}
    assert ray_client.get("/info").json()["model_id"] == "all-MiniLM-L6-v2"
    assert ray_client.get("/v1/models").json()["data"][0]["id"] == "all-MiniLM-L6-v2"
