"""Service fixtures in two tiers.

The unit tier (``client``, ``make_client``) serves the real HTTP app (``service.routes``) over a
real engine in this process, through httpx's ASGI transport: real ASGI requests and responses,
the real ONNX model, no Ray. An engine starts in seconds where a Ray redeploy costs a replica
start (tens of seconds on two cores), so every module can have the settings it tests.
The Ray tier (``ray_client``, ``deploy``) is for what only the running service shows: its
ingress, Ray's backpressure, replicas that die or stop, logs of every process.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from starlette.types import ASGIApp

from common.arrays import encode_batches
from export.artifact import load_artifact
from models import Tokenizer
from service.engine import Registry
from service.routes import build_api
from service.settings import ModelEntry, ServiceSettings


class InProcessClient(httpx.Client):
    """A synchronous httpx client of an ASGI app in this process.

    httpx's ``ASGITransport`` is async only; this runs it on ``portal``'s event loop, the same
    loop for every request, since the engine's batcher keeps state between requests. Tests that
    need requests at once run them on that loop too: ``portal.call`` a coroutine that sends them
    through ``httpx.ASGITransport(app)``.
    """

    def __init__(self, app: ASGIApp, portal: BlockingPortal) -> None:
        super().__init__(transport=PortalTransport(app, portal), base_url="http://testserver")
        self.app = app
        self.portal = portal


class PortalTransport(httpx.BaseTransport):
    def __init__(self, app: ASGIApp, portal: BlockingPortal) -> None:
        self.asgi = httpx.ASGITransport(app=app)
        self.portal = portal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()  # the body as bytes, a stream the async transport can read

        async def send() -> tuple[int, httpx.Headers, bytes]:
            response = await self.asgi.handle_async_request(request)
            return response.status_code, response.headers, await response.aread()

        status, headers, body = self.portal.call(send)
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body))


ClientFactory = Callable[..., InProcessClient]
# Names of the models the ``scorers`` app serves, the reranker the default.
RERANKER, CLASSIFIER, EMBEDDER = "reranker", "classifier", "minilm"


Scored = list[str | tuple[str, str]]  # texts and (query, document) pairs


def artifact_ids(artifact_path: Path, inputs: Scored) -> list[list[int]]:
    """Token ids of texts and pairs (in the pair template) by an artifact's own tokenizer."""
    artifact = load_artifact(artifact_path)
    config = artifact.config
    assert artifact.tokenizer_path is not None
    tokenizer = Tokenizer(artifact.tokenizer_path, config.max_seq_length, config.pad_token_id)
    return [
        tokenizer.tokenize([item])[0]
        if isinstance(item, str)
        else tokenizer.tokenize_pairs([item])[0]
        for item in inputs
    ]


def graph_logits(artifact_path: Path, inputs: Scored) -> np.ndarray:
    """``(n, num_labels)`` logits of an artifact's graph through ONNX Runtime, on the ids of its
    own tokenizer: what a served score must equal."""
    artifact = load_artifact(artifact_path)
    session = ort.InferenceSession(str(artifact.model_path), providers=["CPUExecutionProvider"])

    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        return session.run(["logits"], feeds)[0]  # (B, num_labels)

    return encode_batches(artifact_ids(artifact_path, inputs), run, artifact.config.pad_token_id)


@cache
def _classifier(kind: str, num_labels: int) -> Any:
    from models import load_classifier
    from tests.tiny_models import tiny_classifier_cached

    return load_classifier(tiny_classifier_cached(kind, num_labels))


def reference_logits(kind: str, num_labels: int, inputs: Scored) -> np.ndarray:
    """The same logits from our PyTorch ``SequenceClassifier`` of the checkpoint the artifact
    was exported from (the tests' tiny ``kind`` checkpoint)."""
    return _classifier(kind, num_labels).predict(inputs)


def wait_healthy(proc: subprocess.Popen[str], url: str, timeout_s: float = 180) -> None:
    """Wait until a launched ``python -m service`` answers /health; fail with its output if it
    exits first or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else proc.returncode
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise AssertionError(f"the service did not become healthy in {timeout_s:g} s")


@contextmanager
def in_process(settings: ServiceSettings) -> Iterator[InProcessClient]:
    """The app one replica serves, over an engine of its own in this process, and a client of it
    whose event loop (a thread) lives as long as the block."""
    registry = Registry.from_settings(settings)  # metrics of its own, as in a replica
    try:
        with start_blocking_portal() as portal, InProcessClient(build_api(registry), portal) as c:
            yield c
    finally:
        registry.close()


@pytest.fixture(scope="module")
def make_client(minilm_artifact: Path) -> Iterator[ClientFactory]:
    """``make_client(**settings)``: an in-process app with these settings; closed with the
    module."""
    with ExitStack() as stack:

        def make(**overrides: Any) -> InProcessClient:
            settings = ServiceSettings(artifact=minilm_artifact, **overrides)
            return stack.enter_context(in_process(settings))

        yield make


@pytest.fixture(scope="module")
def serve_models() -> Iterator[ClientFactory]:
    """``serve_models(ModelEntry(...), ..., **settings)``: an in-process app serving these
    models (the first the default); closed with the module."""
    with ExitStack() as stack:

        def make(*models: ModelEntry, **overrides: Any) -> InProcessClient:
            settings = ServiceSettings(models=list(models), **overrides)
            return stack.enter_context(in_process(settings))

        yield make


@pytest.fixture(scope="session")
def scorers(
    reranker_artifact: Path, classifier_artifact: Path, minilm_artifact: Path
) -> Iterator[InProcessClient]:
    """One app serving a tiny reranker (the default), a tiny 3-label classifier and MiniLM,
    on ONNX Runtime fp32 (the backend whose scores must equal the graph's), for every module
    that tests rerank, predict and the root route."""
    models = [
        ModelEntry(artifact=reranker_artifact, name=RERANKER),
        ModelEntry(artifact=classifier_artifact, name=CLASSIFIER),
        ModelEntry(artifact=minilm_artifact, name=EMBEDDER),
    ]
    settings = ServiceSettings(models=models, backend="onnxruntime", num_cpus=1)
    with in_process(settings) as c:
        yield c


@pytest.fixture(scope="module")
def client(make_client: ClientFactory) -> InProcessClient:
    """The in-process app with default settings (modules may override)."""
    return make_client()


@pytest.fixture(scope="module")
def ray_client(deploy: Callable[..., str]) -> Iterator[httpx.Client]:
    """A client of embedserve deployed on Ray with default settings."""
    with httpx.Client(base_url=deploy(), timeout=60) as c:
        yield c
