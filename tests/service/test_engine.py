"""The registry of a replica: two models side by side in this process, behind the real HTTP
app, and what a lookup says for a model or a task that is not served."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from export.artifact import load_artifact
from service import metrics
from service.engine import Registry
from service.errors import ApiError
from service.model import ServedModel
from service.routes import build_api
from service.settings import ServiceSettings
from service.tasks import Task

DEFAULT = "all-MiniLM-L6-v2"  # the artifact's own name


@pytest.fixture(scope="module")
def registry(minilm_artifact: Path) -> Iterator[Registry]:
    """The same artifact served twice: as itself, and as ``small`` taking two inputs at most."""
    settings = ServiceSettings(artifact=minilm_artifact, backend="onnxruntime", num_cpus=1)
    small = settings.model_copy(update={"model_name": "small", "max_inputs": 2})
    artifact, shared = load_artifact(minilm_artifact), metrics.init(None)
    models = [ServedModel(s, artifact, shared) for s in (settings, small)]
    registry = Registry(settings, models, shared)
    yield registry
    registry.close()


@pytest.fixture(scope="module")
def client(registry: Registry) -> Iterator[TestClient]:
    with TestClient(build_api(registry)) as client:
        yield client


def test_each_model_answers_under_its_own_name(client: TestClient) -> None:
    listed = client.get("/v1/models").json()["data"]
    assert [m["id"] for m in listed] == [DEFAULT, "small"]
    texts = ["two models", "one replica"]
    vectors = {}
    for name in (None, DEFAULT, "small"):
        response = client.post("/v1/embeddings", json={"input": texts, "model": name})
        assert response.status_code == 200, response.text
        assert response.json()["model"] == (name or DEFAULT)
        vectors[name] = np.array([d["embedding"] for d in response.json()["data"]])
    np.testing.assert_allclose(vectors[DEFAULT], vectors["small"], atol=1e-6)
    np.testing.assert_allclose(vectors[None], vectors[DEFAULT], atol=1e-6)


def test_each_model_keeps_its_own_limits_and_metrics(client: TestClient) -> None:
    three = {"input": ["a", "b", "c"]}
    assert client.post("/v1/embeddings", json={**three, "model": DEFAULT}).status_code == 200
    refused = client.post("/v1/embeddings", json={**three, "model": "small"})
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "too_many_inputs"
    exposed = client.get("/metrics").text
    for model in (DEFAULT, "small"):
        assert f'embedserve_batch_size_count{{model="{model}"}}' in exposed
        assert f'embedserve_queue_depth{{model="{model}"}} 0.0' in exposed


def test_a_model_not_served_is_404_naming_the_ones_that_are(
    registry: Registry, client: TestClient
) -> None:
    with pytest.raises(ApiError) as caught:
        registry.lookup("other", "embed")
    error = caught.value
    assert (error.status, error.param, error.code) == (404, "model", "model_not_found")
    assert error.message == f"model 'other' is not served here; use {DEFAULT!r}, 'small'"
    response = client.post("/v1/embeddings", json={"input": "x", "model": "other"})
    assert response.status_code == 404
    assert response.json()["error"]["message"] == error.message


def test_a_model_has_the_pipelines_of_its_tasks_only(registry: Registry) -> None:
    embedder = {"embed", "embed_tokens"}
    assert set(registry.pipelines) == {(m, t) for m in (DEFAULT, "small") for t in embedder}


@pytest.mark.parametrize("task", ["rerank", "predict"])
def test_a_task_the_model_does_not_serve_is_400_naming_what_it_does(
    registry: Registry, task: Task
) -> None:
    with pytest.raises(ApiError) as caught:
        registry.lookup("small", task)
    error = caught.value
    assert (error.status, error.tei_status, error.code) == (400, 424, "task_not_served")
    assert error.message == (
        "model 'small' is an embedding model: it serves /v1/embeddings, /embed, /embed_all"
    )


def test_two_models_under_one_name_are_refused(registry: Registry) -> None:
    with pytest.raises(ValueError, match="two models are served as 'small'"):
        Registry(registry.settings, [*registry.models, registry.models[1]], registry.metrics)


def test_one_model_with_the_artifacts_name_under_another_name_answers_to_both(
    minilm_artifact: Path,
) -> None:
    settings = ServiceSettings(artifact=minilm_artifact, backend="onnxruntime", num_cpus=1)
    registry = Registry.from_settings(settings.model_copy(update={"model_name": "mine"}))
    try:
        assert registry.lookup("mine", "embed") is registry.lookup(DEFAULT, "embed")
        assert registry.lookup(None, "embed").model.name == "mine"
    finally:
        registry.close()
