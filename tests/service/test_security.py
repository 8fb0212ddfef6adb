"""Nothing a client sends (texts, keys, broken bodies) comes back in an error or reaches a log.

Requests carry a marker that exists nowhere else: in texts, in a wrong API key, in bodies that
are not JSON, have the wrong types, are too long, too many, or not the gzip they claim to be.
The marker must appear in no response (body or headers) and in no log: the app's, in this
process, and every file under the Ray session's log folder of the deployed service, which holds
every process's log: proxy, replicas, controller, workers, raylet.
``test_main.py`` runs the same requests through ``python -m service`` over HAProxy.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import ClientFactory

MARKER = f"zqx{uuid.uuid4().hex}qxz"
# Token ids cannot carry text: an id no vocabulary has, searched for the same way.
ID_MARKER = 918273645546372819
KEY = f"key-{uuid.uuid4().hex}"
LIMIT = 262144  # max_body_bytes of the deployments under test
SETTINGS: dict[str, Any] = {"api_keys": [KEY], "max_body_bytes": LIMIT}


@dataclass(frozen=True)
class Hostile:
    """One request carrying the marker; ``status`` is what the service must answer."""

    path: str
    status: int
    body: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    authorized: bool = True

    def send(self, client: httpx.Client, key: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if self.authorized else {}
        headers |= self.headers
        if self.content is not None:
            return client.post(self.path, content=self.content, headers=headers)
        return client.post(self.path, json=self.body, headers=headers)


TEXT = f"the secret {MARKER} in a sentence"
HOSTILE = [
    # Served: embeddings never echo the text.
    Hostile("/v1/embeddings", 200, {"input": [TEXT, MARKER]}),
    Hostile("/embed", 200, {"inputs": TEXT}),
    Hostile("/embed_all", 200, {"inputs": TEXT}),
    # Keys: a wrong key, with and without the scheme; the marker is the key.
    Hostile("/v1/embeddings", 401, {"input": TEXT}, headers={"Authorization": f"Bearer {MARKER}"}),
    Hostile("/embed", 401, {"inputs": TEXT}, headers={"Authorization": MARKER}, authorized=False),
    # Not JSON: cut short, stray bytes, invalid UTF-8, content after the document.
    Hostile("/v1/embeddings", 400, content=f'{{"input": "{MARKER}'.encode()),
    Hostile("/v1/embeddings", 400, content=f'{{"input": {MARKER}}}'.encode()),
    Hostile("/embed", 400, content=b'{"inputs": "\xff' + MARKER.encode() + b'"}'),
    Hostile("/tokenize", 400, content=f'{{"inputs": "a"}} {MARKER}'.encode()),
    Hostile(
        "/v1/embeddings",
        400,
        content=f'{{"input": "{MARKER}"}}'.encode(),
        headers={"Content-Encoding": "gzip"},
    ),
    # JSON of the wrong shape or type, the marker in values and in keys.
    Hostile("/v1/embeddings", 422, {"input": [MARKER, 5]}),
    Hostile("/v1/embeddings", 422, {"input": {MARKER: MARKER}}),
    Hostile("/v1/embeddings", 422, {"input": TEXT, "encoding_format": MARKER}),
    Hostile("/v1/embeddings", 422, {"input": TEXT, "dimensions": MARKER}),
    Hostile("/v1/embeddings", 422, {"input": [[1, MARKER]]}),
    Hostile("/embed", 422, {"inputs": TEXT, "truncation_direction": MARKER}),
    Hostile("/embed", 422, {"inputs": TEXT, "normalize": MARKER}),
    Hostile("/tokenize", 422, [MARKER]),
    # Valid JSON the service refuses: empty, too long without truncation, too many, too big,
    # token ids outside the vocabulary, a deadline that is not a number.
    Hostile("/v1/embeddings", 400, {"input": [TEXT, ""]}),
    Hostile("/v1/embeddings", 400, {"input": TEXT, "dimensions": 100000}),
    Hostile("/embed", 413, {"inputs": f"{TEXT} " * 200, "truncate": False}),
    Hostile("/v1/embeddings", 413, {"input": [TEXT] * 2049}),
    Hostile("/v1/embeddings", 413, {"input": TEXT + "x" * LIMIT}),
    Hostile("/v1/embeddings", 400, {"input": [[101, ID_MARKER, 102]]}),
    Hostile("/v1/embeddings", 400, {"input": [[101, -ID_MARKER, 102]]}),
    Hostile(
        "/v1/embeddings", 400, {"input": TEXT}, headers={"x-request-timeout-ms": f"{MARKER}ms"}
    ),
]
SECRETS = (MARKER, str(ID_MARKER), KEY)


def leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def exchange(client: httpx.Client, key: str) -> list[str]:
    """Send every hostile request; the ones whose status or answer is wrong, described."""
    wrong = []
    for request in HOSTILE:
        response = request.send(client, key)
        answer = f"{response.headers}\n{response.text}"
        if response.status_code != request.status or leaks(answer):
            wrong.append(f"{request}: {response.status_code} {leaks(answer)} {answer[:300]!r}")
    return wrong


def files_mentioning(folder: Path, needles: tuple[str, ...]) -> dict[str, list[str]]:
    """Which of ``needles`` each file under ``folder`` holds (bytes search; logs are big)."""
    found = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits = [n for n in needles if n.encode() in data]
            if hits:
                found[str(path.relative_to(folder))] = hits
    return found


def logged_through(client: httpx.Client, key: str, logs: Path, timeout_s: float = 60) -> None:
    """Send one more request, with a request id of its own, and wait until that id is in the
    logs: Ray writes the access lines of a process in order, so everything before it is too."""
    control = f"control-{uuid.uuid4().hex}"
    headers = {"Authorization": f"Bearer {key}", "x-request-id": control}
    assert client.post("/v1/embeddings", json={"input": "x"}, headers=headers).status_code == 200
    deadline = time.monotonic() + timeout_s
    while not files_mentioning(logs, (control,)):
        assert time.monotonic() < deadline, f"{control} never reached the logs under {logs}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def client(make_client: ClientFactory) -> httpx.Client:
    return make_client(**SETTINGS)


@pytest.fixture(scope="module")
def ray_client(deploy: Callable[..., str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=deploy(**SETTINGS), timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def ray_logs(ray_client: httpx.Client) -> Path:
    """The log folder of the session's Ray instance (tests/conftest.py ``serve_url``)."""
    import ray

    node = ray._private.worker._global_node
    assert node is not None, "Ray is not started"
    return Path(node.get_session_dir_path()) / "logs"


def test_no_request_content_comes_back_in_a_response(client: httpx.Client) -> None:
    assert exchange(client, KEY) == []


def test_no_request_content_or_key_reaches_the_apps_log(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        exchange(client, KEY)
    assert caplog.records, "the exchange logged nothing: the capture is not working"
    assert leaks(caplog.text) == []


def test_no_request_content_or_key_reaches_the_logs(
    ray_client: httpx.Client, ray_logs: Path
) -> None:
    exchange(ray_client, KEY)
    logged_through(ray_client, KEY, ray_logs)
    assert files_mentioning(ray_logs, SECRETS) == {}


def test_keys_are_not_in_info_or_the_api_description(client: httpx.Client) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    for path in ("/info", "/v1/models", "/openapi.json", "/health", "/metrics"):
        response = client.get(path, headers=auth)
        assert response.status_code == 200, (path, response.text)
        assert KEY not in response.text, path
