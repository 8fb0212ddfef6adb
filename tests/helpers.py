"""Small helpers shared by the tests that talk to a running service."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np

from common.arrays import cosine_rows as cosine
from service.ingress import free_port

__all__ = ["cosine", "embed", "free_port"]


def embed(client: httpx.Client, texts: list[str], **extra: Any) -> np.ndarray:
    response = client.post("/v1/embeddings", json={"input": texts, **extra})
    assert response.status_code == 200, response.text
    return np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float32)
