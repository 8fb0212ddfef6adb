"""The default deployment for service tests; modules that need other settings deploy their own."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest


@pytest.fixture(scope="module")
def client(deploy: Callable[..., str]) -> Iterator[httpx.Client]:
    """A client of embedserve deployed with default settings (modules may override)."""
    with httpx.Client(base_url=deploy(), timeout=60) as c:
        yield c
