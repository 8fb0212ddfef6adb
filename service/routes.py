"""The HTTP API over an :class:`Embedder`: OpenAI- and TEI-compatible routes, health, metrics.

Bodies are read here (bounded, parsed with orjson, validated with strict pydantic models) so every
client mistake becomes a JSON error with the right status, never a crash or a 500.
"""

from __future__ import annotations

import base64
import hmac
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from . import metrics
from .engine import Embedded, Embedder
from .errors import ApiError, render
from .ingress import active_ingress
from .protocol import OpenAIEmbeddingRequest, TeiEmbedRequest, TokenizeRequest

log = logging.getLogger(__name__)
Handler = Callable[[Request], Awaitable[tuple[Any, dict[str, str]]]]
JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body, option=JSON_OPTIONS), status, headers, "application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` (the rest is never buffered)."""
    too_big = ApiError(413, f"request body exceeds {limit} bytes", code="body_too_large")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_big
    return bytes(body)


async def parse(request: Request, model: type[BaseModel], limit: int) -> Any:
    raw = await read_body(request, limit)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON body: {exc}", code="invalid_json") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        message = f"{path}: {first['msg']}" if path else first["msg"]
        # The field, not pydantic's union member ("input", not "input.str").
        param = str(first["loc"][0]) if first["loc"] else None
        raise ApiError(422, message, param, "invalid_value") from None


DEADLINE_HEADER = "x-request-timeout-ms"


def deadline(request: Request, start: float, default_s: float | None) -> float | None:
    """When the request must be answered (``time.perf_counter()``): the sooner of the client's
    ``x-request-timeout-ms`` and the server's default; None when neither is set."""
    raw = request.headers.get(DEADLINE_HEADER)
    timeout_s = default_s
    if raw is not None:
        try:
            given = float(raw) / 1000
        except ValueError:
            given = math.nan
        if not (given > 0 and math.isfinite(given)):
            raise ApiError(
                400, f"{DEADLINE_HEADER} must be a positive number of milliseconds",
                DEADLINE_HEADER, "invalid_timeout",
            )  # fmt: skip
        timeout_s = given if default_s is None else min(given, default_s)
    return None if timeout_s is None else start + timeout_s


def check_inputs(count: int, max_inputs: int) -> None:
    if count == 0:
        raise ApiError(400, "input must not be empty", "input", "empty_input")
    if count > max_inputs:
        raise ApiError(
            413, f"{count} inputs; at most {max_inputs} per request", "input", "too_many_inputs"
        )


def check_texts(texts: list[str]) -> None:
    for index, text in enumerate(texts):
        if not text:
            raise ApiError(400, f"input[{index}] is an empty string", "input", "empty_input")


def check_dimensions(dimensions: int | None, dim: int) -> None:
    """Refuse a ``dimensions`` the model cannot give before any inference is spent on it."""
    if dimensions is not None and dimensions > dim:
        raise ApiError(
            400, f"dimensions must be between 1 and {dim}", "dimensions", "invalid_dimensions"
        )


def finish(vectors: np.ndarray, normalize: bool, dimensions: int | None) -> np.ndarray:
    """``(n, D)`` pooled vectors → optionally cut to ``dimensions``, then unit length."""
    if dimensions is not None:
        vectors = vectors[:, :dimensions]
    if normalize:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def timing_headers(result: Embedded) -> dict[str, str]:
    return {
        "x-queue-time-ms": f"{result.queue_s * 1000:.3f}",
        "x-inference-time-ms": f"{result.inference_s * 1000:.3f}",
        "x-total-tokens": str(result.tokens),
    }


def build_api(engine: Embedder) -> FastAPI:
    settings = engine.settings
    keys = [k.get_secret_value().encode() for k in settings.api_keys]
    served_names = {engine.model_name, engine.artifact.config.model_name}
    api = FastAPI(title="embedserve", version="0.1.0", docs_url="/docs", redoc_url=None)

    def authorized(request: Request) -> bool:
        if not keys:
            return True
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = token.strip().encode() if scheme.lower() == "bearer" else b""
        # Compare against every key, so timing does not tell which (or whether one) matched.
        matches = [hmac.compare_digest(given, key) for key in keys]
        return any(matches)

    def endpoint(route: str, dialect: str, *, public: bool = False):
        """Wrap a handler: auth, request id, errors in the route's dialect, metrics, headers."""

        def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
            async def run(request: Request) -> Response:
                start = time.perf_counter()
                # Ray's proxy sets x-request-id on the request and echoes it in the response;
                # only a request that arrives without one gets an id (and the header) from us.
                upstream_id = request.headers.get("x-request-id")
                request_id = upstream_id or uuid.uuid4().hex
                try:
                    if not public and not authorized(request):
                        raise ApiError(
                            401,
                            "missing or invalid API key (Authorization: Bearer <key>)",
                            code="invalid_api_key",
                            headers={"WWW-Authenticate": "Bearer"},
                        )
                    request.state.deadline = deadline(request, start, settings.request_timeout_s)
                    body, headers = await handler(request)
                    response = json_response(body, headers=headers)
                except ApiError as error:
                    response = render(error, dialect)
                except Exception:
                    log.exception("request %s failed", request_id)
                    response = render(ApiError(500, "internal error; see the server log"), dialect)
                if upstream_id is None:
                    response.headers["x-request-id"] = request_id
                metrics.observe_request(route, response.status_code, time.perf_counter() - start)
                return response

            run.__name__ = handler.__name__
            return run

        return wrap

    async def embed_texts_or_ids(
        request: Request,
        inputs: list[str] | list[list[int]],
        truncate: bool,
        side: str,
        per_token: bool,
    ) -> Embedded:
        check_inputs(len(inputs), settings.max_inputs)
        t0 = time.perf_counter()
        if isinstance(inputs[0], str):
            check_texts(inputs)  # type: ignore[arg-type]
            sequences = await engine.tokenize(inputs, truncate, side)  # type: ignore[arg-type]
        else:
            sequences = engine.token_ids(inputs, truncate, side)  # type: ignore[arg-type]
        metrics.TOKENIZE_DURATION.observe(time.perf_counter() - t0)
        metrics.REQUEST_INPUTS.observe(len(sequences))
        result = await engine.embed(sequences, per_token, request.state.deadline)
        metrics.QUEUE_DURATION.observe(result.queue_s)
        metrics.INFERENCE_DURATION.observe(result.inference_s)
        metrics.INPUT_TOKENS.inc(result.tokens)
        return result

    @api.post("/v1/embeddings")
    @endpoint("/v1/embeddings", "openai")
    async def openai_embeddings(request: Request) -> tuple[Any, dict[str, str]]:
        req = await parse(request, OpenAIEmbeddingRequest, settings.max_body_bytes)
        if req.model is not None and req.model not in served_names:
            raise ApiError(
                404, f"model {req.model!r} is not served here; use {engine.model_name!r}",
                "model", "model_not_found",
            )  # fmt: skip
        check_dimensions(req.dimensions, engine.dimension)
        inputs = req.input
        if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        result = await embed_texts_or_ids(
            request, inputs, settings.truncate, "right", per_token=False
        )
        vectors = finish(np.stack(result.vectors), True, req.dimensions)
        if req.encoding_format == "base64":
            items = [base64.b64encode(v.astype("<f4").tobytes()).decode() for v in vectors]
        else:
            items = list(vectors)
        body = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(items)
            ],
            "model": engine.model_name,
            "usage": {"prompt_tokens": result.tokens, "total_tokens": result.tokens},
        }
        return body, timing_headers(result)

    async def tei_embed(request: Request, per_token: bool) -> tuple[Any, dict[str, str]]:
        req = await parse(request, TeiEmbedRequest, settings.max_body_bytes)
        texts = [req.inputs] if isinstance(req.inputs, str) else req.inputs
        truncate = settings.truncate if req.truncate is None else req.truncate
        result = await embed_texts_or_ids(
            request, texts, truncate, req.truncation_direction, per_token
        )
        if per_token:
            body: Any = result.vectors
        else:
            body = finish(np.stack(result.vectors), req.normalize, None)
        return body, timing_headers(result)

    @api.post("/embed")
    @endpoint("/embed", "tei")
    async def embed(request: Request) -> tuple[Any, dict[str, str]]:
        return await tei_embed(request, per_token=False)

    @api.post("/embed_all")
    @endpoint("/embed_all", "tei")
    async def embed_all(request: Request) -> tuple[Any, dict[str, str]]:
        return await tei_embed(request, per_token=True)

    @api.post("/tokenize")
    @endpoint("/tokenize", "tei")
    async def tokenize(request: Request) -> tuple[Any, dict[str, str]]:
        req = await parse(request, TokenizeRequest, settings.max_body_bytes)
        texts = [req.inputs] if isinstance(req.inputs, str) else req.inputs
        check_inputs(len(texts), settings.max_inputs)
        tokens = await engine.tokens(texts, req.add_special_tokens)
        body = [
            [
                {"id": t.id, "text": t.text, "special": t.special, "start": t.start, "stop": t.stop}
                for t in seq
            ]
            for seq in tokens
        ]
        return body, {}

    @api.get("/health")
    @endpoint("/health", "openai", public=True)
    async def health(request: Request) -> tuple[Any, dict[str, str]]:
        if not await engine.healthy():
            raise ApiError(503, "the model is not answering", headers={"Retry-After": "5"})
        return {"status": "ok"}, {}

    @api.get("/info")
    @endpoint("/info", "openai")
    async def info(request: Request) -> tuple[Any, dict[str, str]]:
        return {**engine.info(), "ingress": active_ingress()}, {}

    @api.get("/v1/models")
    @endpoint("/v1/models", "openai")
    async def list_models(request: Request) -> tuple[Any, dict[str, str]]:
        model = {"id": engine.model_name, "object": "model", "created": 0, "owned_by": "embedserve"}
        return {"object": "list", "data": [model]}, {}

    @api.get("/metrics")
    async def prometheus(request: Request) -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @api.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        message = "no such route" if exc.status_code == 404 else str(exc.detail)
        return render(ApiError(exc.status_code, message), "openai")

    return api
