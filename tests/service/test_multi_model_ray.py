"""The three-model service (MiniLM embedder, reranker, classifier) deployed on Ray once, over
real HTTP: every route of every model at once, exact per-model counts in ``/metrics``, and
Hugging Face's own client, ``huggingface_hub.InferenceClient``, against TEI's root route."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import huggingface_hub.constants
import numpy as np
import pytest
from huggingface_hub import InferenceClient

from service.settings import ModelEntry

from .test_multi_model import (
    CLASSIFIER,
    COPIES,
    EMBEDDER,
    RERANKER,
    SENTENCES,
    Call,
    assert_answered_as_alone,
    every_route,
    scrape,
    send_at_once,
)


@pytest.fixture(scope="module")
def url(
    deploy: Callable[..., str],
    minilm_artifact: Path,
    reranker_artifact: Path,
    classifier_artifact: Path,
) -> str:
    """embedserve serving the three models; the default first."""
    models = [
        ModelEntry(artifact=minilm_artifact),
        ModelEntry(artifact=reranker_artifact, name=RERANKER),
        ModelEntry(artifact=classifier_artifact, name=CLASSIFIER),
    ]
    return deploy(models=models)


def addressed(call: Call) -> str:
    """The model a call addresses, which its metrics are counted under (served or not)."""
    _, body, headers = call
    return headers.get("x-model") or body.get("model") or EMBEDDER


def test_all_routes_at_once_and_the_counts_per_model(url: str) -> None:
    calls = every_route()
    with httpx.Client(base_url=url, timeout=60) as client:
        alone = [client.post(path, json=body, headers=headers) for path, body, headers in calls]

        async def at_once() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                return await send_at_once(http, calls)

        assert_answered_as_alone(asyncio.run(at_once()), alone, calls)
        counted = scrape(client.get("/metrics").text)
    sent = Counter(
        (f"requests_total {r.status_code}", addressed(call), call[0])
        for call, r in zip(calls, alone, strict=True)
    )
    routes = {path for path, _, _ in calls}
    requests = {k: v for k, v in counted.items() if k[0].startswith("requests") and k[2] in routes}
    assert requests == {k: float(n * (1 + COPIES)) for k, n in sent.items()}
    inputs = {k[1:]: v for k, v in counted.items() if k[0] == "request_inputs_count"}
    assert sum(inputs.values()) == (1 + COPIES) * sum(r.is_success for r in alone)


def test_huggingface_inference_client_on_the_root_route(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a new user of Hugging Face's client does first. ``text_classification`` in
    huggingface_hub 2.4.0 ends with ``parse_obj_as_list(response)[0]`` (inference/_client.py):
    on TEI's flat ``[{"score", "label"}, ...]`` answer (best first) that is one element, the
    top label, not the list its annotation promises."""
    # The suite's HF_HUB_OFFLINE (nothing may reach the Hub) blocks every request the client
    # makes, even to 127.0.0.1.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    embedder = InferenceClient(model=url)
    vector = np.asarray(embedder.feature_extraction(SENTENCES[0]))
    tei = httpx.post(f"{url}/embed", json={"inputs": SENTENCES[0]}, timeout=60).json()
    np.testing.assert_allclose(vector.reshape(1, -1), np.asarray(tei), atol=1e-6)
    classifier = InferenceClient(model=url, headers={"x-model": CLASSIFIER})
    top: Any = classifier.text_classification(SENTENCES[1])
    headers = {"x-model": CLASSIFIER}
    predicted = httpx.post(
        f"{url}/predict", json={"inputs": SENTENCES[1]}, headers=headers, timeout=60
    ).json()
    assert (top.label, top.score) == (predicted[0]["label"], pytest.approx(predicted[0]["score"]))
