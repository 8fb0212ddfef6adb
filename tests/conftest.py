"""Fixtures shared across the suite: the shipped model, its reference, real texts, and a real
Ray Serve instance on 127.0.0.1 that test modules deploy embedserve onto.

Every test that reaches that instance (``serve_url``, directly or through ``deploy`` and the
fixtures built on it) is marked ``ray``, so ``-m "not ray and not slow"`` is the fast tier.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers import free_port

# The reference library must never reach for a hub: everything it needs is on disk.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


RAY_FIXTURE = "serve_url"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``ray`` what needs the Ray instance (its fixture is in the test's closure) and the
    multi-node scenarios, which start clusters of their own; and run them last, each in its
    module's order: first those that start a Ray of their own (``python -m service``, the
    clusters), then those on the session's instance. Once started, that instance stays up to
    the end, and its idle control plane and replicas (about 6% of this machine's two cores)
    slowed every test after the first that used it, the other Ray starts among them."""
    for item in items:
        if session_ray(item) or item.get_closest_marker("multinode"):
            item.add_marker(pytest.mark.ray)
    items.sort(key=lambda item: (item.get_closest_marker("ray") is not None, session_ray(item)))


def session_ray(item: pytest.Item) -> bool:
    return RAY_FIXTURE in getattr(item, "fixturenames", ())


@pytest.fixture(scope="session")
def minilm():
    """all-MiniLM-L6-v2 loaded through our own code (models.load_pretrained)."""
    from models import load_pretrained

    return load_pretrained("all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def reference():
    """The same files through sentence-transformers: the test-only reference."""
    from sentence_transformers import SentenceTransformer

    from models import get_model_path

    return SentenceTransformer(str(get_model_path()), device="cpu")


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    """Real English text: every built-in sentence and passage."""
    from common import texts

    return texts.corpus()


@pytest.fixture(scope="session")
def reference_vectors(reference, corpus: list[str]):
    """sentence-transformers' unit vectors of the corpus, encoded once for every test that
    holds a path to them (about 25 s on 2 cores)."""
    return reference.encode(corpus, batch_size=32, normalize_embeddings=True)


@pytest.fixture(scope="session")
def minilm_artifact(tmp_path_factory) -> Path:
    """all-MiniLM-L6-v2 exported once per session through the real export CLI."""
    out = tmp_path_factory.mktemp("artifacts") / "all-MiniLM-L6-v2"
    cmd = [sys.executable, "-m", "export", "--model", "all-MiniLM-L6-v2", "--output", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def _export_tiny_classifier(kind: str, num_labels: int, output: Path) -> Path:
    """A tiny random ``<Arch>ForSequenceClassification`` checkpoint exported in this process."""
    from export.options import ExportOptions
    from export.pipeline import export_model
    from tests.tiny_models import tiny_classifier_cached

    folder = tiny_classifier_cached(kind, num_labels)
    return export_model(ExportOptions(model=str(folder), output=output)).output


@pytest.fixture(scope="session")
def reranker_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT cross-encoder (one relevance logit, label LABEL_0) exported once per session."""
    return _export_tiny_classifier("bert", 1, tmp_path_factory.mktemp("artifacts") / "reranker")


@pytest.fixture(scope="session")
def classifier_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny XLM-R classifier (labels negative, neutral, positive) exported once per session."""
    out = tmp_path_factory.mktemp("artifacts") / "classifier"
    return _export_tiny_classifier("xlm-roberta", 3, out)


AUTOSCALING_PUSH_ENVS = (
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S",
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S",
)


@pytest.fixture(scope="session")
def serve_url() -> Iterator[str]:
    import ray
    from ray import serve

    from service.proxy import CALLBACK, CALLBACK_ENV

    os.environ.setdefault(CALLBACK_ENV, CALLBACK)  # as python -m service and the manifests do
    # In-flight counts reach the autoscaler every 0.5 s, not 10: test_autoscaling's decisions
    # then follow its short look-back period instead of Ray's push interval.
    for name in AUTOSCALING_PUSH_ENVS:
        os.environ.setdefault(name, "0.5")
    # Four logical CPUs on a 2-core machine: enough for the 2-replica tests to be scheduled.
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def deploy(
    serve_url: str, minilm_artifact: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., str]:
    """Deploy (or redeploy) embedserve with settings overrides; returns the base URL."""
    from ray import serve

    from service.app import build_app
    from service.settings import ServiceSettings

    def _deploy(**overrides: Any) -> str:
        overrides.setdefault("metrics_dir", tmp_path_factory.mktemp("metrics"))
        if "models" not in overrides:
            overrides.setdefault("artifact", minilm_artifact)
        settings = ServiceSettings(**overrides)
        serve.run(build_app(settings), name="embedserve", route_prefix="/")
        return serve_url

    return _deploy
