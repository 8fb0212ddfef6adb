"""The two wire dialects: how to ask for embeddings, and how to read (and check) the answer.

Responses are parsed, not just counted as 200s: a server that answers quickly with the wrong
number of vectors is failing, and a load test must say so.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from .config import LoadConfig


class BadResponse(ValueError):
    """A 2xx answer that is not the embeddings that were asked for."""


@dataclass(frozen=True, slots=True)
class Parsed:
    vectors: int
    tokens: int | None  # from the server (header or usage), when it says


def request_body(config: LoadConfig, texts: list[str]) -> bytes:
    if config.api == "tei":
        return orjson.dumps({"inputs": texts})
    body: dict[str, Any] = {"input": texts, "encoding_format": config.encoding_format}
    if config.model is not None:
        body["model"] = config.model
    return orjson.dumps(body)


def request_headers(config: LoadConfig) -> dict[str, str]:
    headers = {"content-type": "application/json", "accept": "application/json"}
    if config.api_key is not None:
        headers["authorization"] = f"Bearer {config.api_key.get_secret_value()}"
    return headers


def _items(config: LoadConfig, body: bytes) -> tuple[list[Any], int | None]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadResponse(f"not JSON: {exc}") from None
    if config.api == "tei":
        if not isinstance(data, list):
            raise BadResponse("TEI answer is not a list of vectors")
        return data, None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise BadResponse("OpenAI answer has no 'data' list")
    usage = data.get("usage") or {}
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    items = [item.get("embedding") if isinstance(item, dict) else None for item in data["data"]]
    return items, tokens if isinstance(tokens, int) else None


def parse_response(
    config: LoadConfig, headers: Mapping[str, str], body: bytes, expected: int
) -> Parsed:
    """Check a 2xx body holds ``expected`` vectors; tokens from x-total-tokens, else usage."""
    items, tokens = _items(config, body)
    if len(items) != expected:
        raise BadResponse(f"{len(items)} vectors for {expected} inputs")
    if any(not isinstance(item, list | str) or not item for item in items):
        raise BadResponse("an embedding is empty or malformed")
    header = headers.get("x-total-tokens")
    if header is not None and header.isdigit():
        tokens = int(header)
    return Parsed(len(items), tokens)


def vectors(config: LoadConfig, body: bytes) -> np.ndarray:
    """The embeddings of a 2xx body as ``(n, D)`` float32 (for accuracy checks)."""
    items, _ = _items(config, body)
    if items and isinstance(items[0], str):
        return np.stack([np.frombuffer(base64.b64decode(s), dtype="<f4") for s in items])
    return np.asarray(items, dtype=np.float32)
