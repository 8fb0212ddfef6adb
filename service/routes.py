"""The HTTP API over an :class:`Embedder`: OpenAI- and TEI-compatible routes, health, metrics.

Handlers take the raw ``Request``: bodies are read by ``service.bodies`` (bounded, decoded, parsed
with orjson, validated with strict pydantic models) so every client mistake becomes a JSON error
with the right status in the route's dialect, never a crash or a 500. FastAPI therefore cannot see
the bodies; each route declares them for ``/openapi.json`` instead (``route_docs``), which costs
nothing per request.
"""

from __future__ import annotations

import base64
import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response

from . import metrics
from .bodies import parse
from .engine import Embedded, Embedder
from .errors import ApiError, dialect_for, render
from .ingress import active_ingress
from .protocol import (
    BODY_ERRORS,
    DEADLINE_HEADER,
    METRICS_RESPONSE,
    HealthResponse,
    InfoResponse,
    Limit,
    ModelList,
    OpenAIEmbeddingRequest,
    OpenAIEmbeddingResponse,
    TeiEmbedAllResponse,
    TeiEmbedRequest,
    TeiEmbedResponse,
    TokenizeRequest,
    TokenizeResponse,
    complete_openapi,
    deadline_seconds,
    request_components,
    route_docs,
)

log = logging.getLogger(__name__)
Handler = Callable[[Request], Awaitable[tuple[Any, dict[str, str]]]]
JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body, option=JSON_OPTIONS), status, headers, "application/json")


def deadline(request: Request, start: float, default_s: float | None) -> float | None:
    """When the request must be answered (``time.perf_counter()``): the sooner of the client's
    ``x-request-timeout-ms`` and the server's default; None when neither is set."""
    raw = request.headers.get(DEADLINE_HEADER)
    timeout_s = default_s
    if raw is not None:
        given = deadline_seconds(raw)
        if given is None:
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
    limits: dict[Limit, int] = {
        "vocabulary": engine.vocab_size - 1,
        "dimension": engine.dimension,
        "inputs": settings.max_inputs,
    }
    bodies, components = request_components(limits)
    secured = bool(keys)
    complete_openapi(api, components, secured)

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
            run.__doc__ = handler.__doc__  # the operation's description in /openapi.json
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

    @api.post(
        "/v1/embeddings",
        **route_docs("openai", OpenAIEmbeddingResponse, (*BODY_ERRORS, 401, 404, 429, 503, 504),
                     secured=secured, body=bodies[OpenAIEmbeddingRequest], deadline=True),
    )  # fmt: skip
    @endpoint("/v1/embeddings", "openai")
    async def openai_embeddings(request: Request) -> tuple[Any, dict[str, str]]:
        """Embeddings of texts or token ids, as OpenAI's API answers them (unit length)."""
        req = await parse(request, OpenAIEmbeddingRequest, settings.max_body_bytes)
        if req.model is not None and req.model not in served_names:
            raise ApiError(
                404, f"the requested model is not served here; use {engine.model_name!r}",
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

    tei_errors = (*BODY_ERRORS, 401, 429, 503, 504)

    @api.post(
        "/embed",
        **route_docs("tei", TeiEmbedResponse, tei_errors, secured=secured,
                     body=bodies[TeiEmbedRequest], deadline=True),
    )  # fmt: skip
    @endpoint("/embed", "tei")
    async def embed(request: Request) -> tuple[Any, dict[str, str]]:
        """One pooled vector per input, as text-embeddings-inference answers them."""
        return await tei_embed(request, per_token=False)

    @api.post(
        "/embed_all",
        **route_docs("tei", TeiEmbedAllResponse, tei_errors, secured=secured,
                     body=bodies[TeiEmbedRequest], deadline=True),
    )  # fmt: skip
    @endpoint("/embed_all", "tei")
    async def embed_all(request: Request) -> tuple[Any, dict[str, str]]:
        """Every token's vector (before pooling) for each input."""
        return await tei_embed(request, per_token=True)

    @api.post(
        "/tokenize",
        **route_docs("tei", TokenizeResponse, (*BODY_ERRORS, 401, 429, 503), secured=secured,
                     body=bodies[TokenizeRequest]),
    )  # fmt: skip
    @endpoint("/tokenize", "tei")
    async def tokenize(request: Request) -> tuple[Any, dict[str, str]]:
        """Each input's tokens with their text and character offsets."""
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

    @api.get("/health", **route_docs("openai", HealthResponse, (429, 503), secured=False))
    @endpoint("/health", "openai", public=True)
    async def health(request: Request) -> tuple[Any, dict[str, str]]:
        """200 when the model answers a probe (or is making progress); no key needed."""
        if not await engine.healthy():
            raise ApiError(503, "the model is not answering", headers={"Retry-After": "5"})
        return {"status": "ok"}, {}

    @api.get("/info", **route_docs("openai", InfoResponse, (401, 429, 503), secured=secured))
    @endpoint("/info", "openai")
    async def info(request: Request) -> tuple[Any, dict[str, str]]:
        """The served model, its backend, batching and limits."""
        return {**engine.info(), "ingress": active_ingress()}, {}

    @api.get("/v1/models", **route_docs("openai", ModelList, (401, 429, 503), secured=secured))
    @endpoint("/v1/models", "openai")
    async def list_models(request: Request) -> tuple[Any, dict[str, str]]:
        """The one model served here, as OpenAI's model list."""
        model = {"id": engine.model_name, "object": "model", "created": 0, "owned_by": "embedserve"}
        return {"object": "list", "data": [model]}, {}

    @api.get(
        "/metrics",
        response_class=Response,
        **route_docs("openai", METRICS_RESPONSE, (429, 503), secured=False),
    )
    async def prometheus(request: Request) -> Response:
        """Prometheus exposition of every replica on this node; no key needed."""
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @api.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        """Starlette's own 404/405 as JSON in the path's dialect, keeping its headers (Allow)."""
        message = "no such route" if exc.status_code == 404 else str(exc.detail)
        error = ApiError(exc.status_code, message, headers=dict(exc.headers or {}))
        return render(error, dialect_for(request.url.path))

    return api
