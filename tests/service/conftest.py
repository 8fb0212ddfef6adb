"""A real Ray Serve instance on 127.0.0.1 for the whole session; modules deploy what they need."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .helpers import free_port


@pytest.fixture(scope="session")
def serve_url() -> Iterator[str]:
    import ray
    from ray import serve

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
        settings = ServiceSettings(artifact=minilm_artifact, **overrides)
        serve.run(build_app(settings), name="embedserve", route_prefix="/")
        return serve_url

    return _deploy


@pytest.fixture(scope="module")
def client(deploy: Callable[..., str]) -> Iterator[httpx.Client]:
    """A client of embedserve deployed with default settings (modules may override)."""
    with httpx.Client(base_url=deploy(), timeout=60) as c:
        yield c
