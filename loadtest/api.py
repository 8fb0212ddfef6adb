"""The wire dialects: how to ask for embeddings (OpenAI, TEI) or a rerank (TEI's ``/rerank``),
and how to read (and check) the answer.

Responses are parsed, not just counted as 200s: a server that answers quickly with the wrong
number of vectors (or of scores) is failing, and a load test must say so.
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
    """The body for ``texts``; for a rerank, the query and then its documents."""
    if config.api == "tei":
        return orjson.dumps({"inputs": texts})
    if config.api == "rerank":
        return orjson.dumps({"query": texts[0], "texts": texts[1:]})
    body: dict[str, Any] = {"input": texts, "encoding_format": config.encoding_format}
    if config.model is not None:
        body["model"] = config.model
    return orjson.dumps(body)


def request_headers(config: LoadConfig) -> dict[str, str]:
    headers = {"content-type": "application/json", "accept": "application/json"}
    if config.api != "openai" and config.model is not None:  # TEI routes name it in a header
        headers["x-model"] = config.model
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
    if config.api == "rerank":
        return _ranks(data), None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise BadResponse("OpenAI answer has no 'data' list")
    usage = data.get("usage") or {}
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    items = [item.get("embedding") if isinstance(item, dict) else None for item in data["data"]]
    return items, tokens if isinstance(tokens, int) else None


def _ranks(data: object) -> list[Any]:
    """A rerank answer's scores in input order, each as a one-element vector (so
    :func:`vectors` reads them as ``(n, 1)``), checked: one per document, each index once."""
    if not isinstance(data, list) or not all(
        isinstance(r, dict) and isinstance(r.get("index"), int) for r in data
    ):
        raise BadResponse("rerank answer is not a list of {index, score}")
    by_index = {r["index"]: r.get("score") for r in data}
    if sorted(by_index) != list(range(len(data))):
        raise BadResponse("rerank answer does not rank each document once")
    scores = [by_index[i] for i in range(len(data))]
    return [[score] if isinstance(score, float | int) else None for score in scores]


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
