"""The HTTP API over a :class:`Registry`: OpenAI- and TEI-compatible routes, health, metrics.

HTTP only: a handler parses the body, looks up the (model, task) pipeline, calls it and renders
the answer in its dialect; checks, batching and stage metrics are behind the pipeline
(``service.tasks``). ``endpoint`` wraps every handler once: auth, request id, deadline, errors
in the route's dialect, the per-request metrics.

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
from typing import Any, cast

import orjson
from fastapi import FastAPI, Request
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.responses import Response

from .bodies import parse
from .engine import Registry
from .errors import ApiError, dialect_for, render
from .ingress import active_ingress
from .model import Result
from .protocol import (
    BODY_ERRORS,
    DEADLINE_HEADER,
    METRICS_RESPONSE,
    HealthResponse,
    InfoResponse,
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
from .tasks import Task, TaskRequest, token_details

log = logging.getLogger(__name__)
Answer = tuple[Any, dict[str, str]]  # the JSON body and extra headers of a 200
Handler = Callable[[Request], Awaitable[Answer]]
JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
TEI_ERRORS = (*BODY_ERRORS, 401, 429, 503, 504)


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


def timing_headers(result: Result[Any]) -> dict[str, str]:
    return {
        "x-queue-time-ms": f"{result.queue_s * 1000:.3f}",
        "x-inference-time-ms": f"{result.inference_s * 1000:.3f}",
        "x-total-tokens": str(result.token_count),
    }


def batch_of(value: str | list[str] | list[int] | list[list[int]]) -> list[str] | list[list[int]]:
    """OpenAI's ``input`` as a list of inputs: one text or one token list is a batch of one."""
    if isinstance(value, str):
        return [value]
    if value and isinstance(value[0], int):
        return [cast("list[int]", value)]
    return cast("list[str] | list[list[int]]", value)


def openai_embeddings_body(result: Result[Any], model: str, base64_floats: bool) -> Any:
    vectors = result.outputs  # (n, D) float32
    if base64_floats:
        items = [base64.b64encode(v.astype("<f4").tobytes()).decode() for v in vectors]
    else:
        items = list(vectors)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(items)],
        "model": model,
        "usage": {"prompt_tokens": result.token_count, "total_tokens": result.token_count},
    }


class Api:
    """The handlers over one registry; ``endpoint`` turns each into a route."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.settings = registry.settings
        self.keys = [k.get_secret_value().encode() for k in self.settings.api_keys]

    def authorized(self, request: Request) -> bool:
        if not self.keys:
            return True
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = token.strip().encode() if scheme.lower() == "bearer" else b""
        # Compare against every key, so timing does not tell which (or whether one) matched.
        matches = [hmac.compare_digest(given, key) for key in self.keys]
        return any(matches)

    def endpoint(
        self, route: str, dialect: str, handler: Handler, public: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` with auth, request id, deadline, errors in the route's dialect, metrics."""
        observe = self.registry.metrics.observe_request
        timeout_s = self.settings.request_timeout_s

        async def run(request: Request) -> Response:
            start = time.perf_counter()
            # Ray's proxy sets x-request-id on the request and echoes it in the response; only
            # a request that arrives without one gets an id (and the header) from us.
            upstream_id = request.headers.get("x-request-id")
            request_id = upstream_id or uuid.uuid4().hex
            try:
                if not public and not self.authorized(request):
                    raise ApiError(
                        401,
                        "missing or invalid API key (Authorization: Bearer <key>)",
                        code="invalid_api_key",
                        headers={"WWW-Authenticate": "Bearer"},
                    )
                request.state.deadline = deadline(request, start, timeout_s)
                body, headers = await handler(request)
                response = json_response(body, headers=headers)
            except ApiError as error:
                response = render(error, dialect)
            except Exception:
                log.exception("request %s failed", request_id)
                response = render(ApiError(500, "internal error; see the server log"), dialect)
            if upstream_id is None:
                response.headers["x-request-id"] = request_id
            observe(route, response.status_code, time.perf_counter() - start)
            return response

        run.__name__ = handler.__name__
        run.__doc__ = handler.__doc__  # the operation's description in /openapi.json
        return run

    async def openai_embeddings(self, request: Request) -> Answer:
        """Embeddings of texts or token ids, as OpenAI's API answers them (unit length)."""
        req = await parse(request, OpenAIEmbeddingRequest, self.settings.max_body_bytes)
        pipeline = self.registry.lookup(req.model, "embed")
        task = TaskRequest(
            batch_of(req.input),
            self.settings.truncate,
            dimensions=req.dimensions,
            deadline=request.state.deadline,
            prompt_name=req.prompt_name,
        )
        result = await pipeline(task)
        body = openai_embeddings_body(result, pipeline.model.name, req.encoding_format == "base64")
        return body, timing_headers(result)

    async def tei_embed(self, request: Request, task: Task) -> Answer:
        req = await parse(request, TeiEmbedRequest, self.settings.max_body_bytes)
        texts = [req.inputs] if isinstance(req.inputs, str) else req.inputs
        truncate = self.settings.truncate if req.truncate is None else req.truncate
        pipeline = self.registry.lookup(None, task)
        result = await pipeline(
            TaskRequest(
                texts,
                truncate,
                req.truncation_direction,
                req.normalize,
                deadline=request.state.deadline,
                prompt_name=req.prompt_name,
            )  # fmt: skip
        )
        return result.outputs, timing_headers(result)

    async def embed(self, request: Request) -> Answer:
        """One pooled vector per input, as text-embeddings-inference answers them."""
        return await self.tei_embed(request, "embed")

    async def embed_all(self, request: Request) -> Answer:
        """Every token's vector (before pooling) for each input."""
        return await self.tei_embed(request, "embed_tokens")

    async def tokenize(self, request: Request) -> Answer:
        """Each input's tokens with their text and character offsets."""
        req = await parse(request, TokenizeRequest, self.settings.max_body_bytes)
        texts = [req.inputs] if isinstance(req.inputs, str) else req.inputs
        details = await token_details(self.registry.model(None), texts, req.add_special_tokens)
        body = [
            [
                {"id": t.id, "text": t.text, "special": t.special, "start": t.start, "stop": t.stop}
                for t in seq
            ]
            for seq in details
        ]
        return body, {}

    async def health(self, request: Request) -> Answer:
        """200 when the model answers a probe (or is making progress); no key needed."""
        if not await self.registry.healthy():
            raise ApiError(503, "the model is not answering", headers={"Retry-After": "5"})
        return {"status": "ok"}, {}

    async def info(self, request: Request) -> Answer:
        """The served model, its backend, batching and limits."""
        return {**self.registry.default.info(), "ingress": active_ingress()}, {}

    async def list_models(self, request: Request) -> Answer:
        """The models served here, as OpenAI's model list."""
        return {"object": "list", "data": [m.card() for m in self.registry.models]}, {}

    async def prometheus(self, request: Request) -> Response:
        """Prometheus exposition of every replica on this node; no key needed."""
        body, content_type = self.registry.metrics.exposition()
        return Response(body, media_type=content_type)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 as JSON in the path's dialect, keeping its headers (Allow)."""
    assert isinstance(exc, HTTPException)
    message = "no such route" if exc.status_code == 404 else str(exc.detail)
    error = ApiError(exc.status_code, message, headers=dict(exc.headers or {}))
    return render(error, dialect_for(request.url.path))


def build_api(registry: Registry) -> FastAPI:
    """The FastAPI app of a replica (or of a test's process) over ``registry``."""
    api = FastAPI(title="embedserve", version="0.1.0", docs_url="/docs", redoc_url=None)
    handlers = Api(registry)
    secured = bool(handlers.keys)
    bodies, components = request_components(registry.default.limits)
    complete_openapi(api, components, secured)

    def post(
        path: str,
        dialect: str,
        handler: Handler,
        ok: type[BaseModel],
        errors: tuple[int, ...],
        body: type[BaseModel],
        deadline: bool = True,
    ) -> None:
        docs = route_docs(
            dialect, ok, errors, secured=secured, body=bodies[body], deadline=deadline
        )
        api.add_api_route(path, handlers.endpoint(path, dialect, handler), methods=["POST"], **docs)

    def get(path: str, handler: Handler, ok: type[BaseModel], public: bool = False) -> None:
        errors = (429, 503) if public else (401, 429, 503)
        docs = route_docs("openai", ok, errors, secured=secured and not public)
        endpoint = handlers.endpoint(path, "openai", handler, public=public)
        api.add_api_route(path, endpoint, methods=["GET"], **docs)

    post("/v1/embeddings", "openai", handlers.openai_embeddings, OpenAIEmbeddingResponse,
         (*BODY_ERRORS, 401, 404, 429, 503, 504), OpenAIEmbeddingRequest)  # fmt: skip
    post("/embed", "tei", handlers.embed, TeiEmbedResponse, TEI_ERRORS, TeiEmbedRequest)
    post("/embed_all", "tei", handlers.embed_all, TeiEmbedAllResponse, TEI_ERRORS, TeiEmbedRequest)
    post("/tokenize", "tei", handlers.tokenize, TokenizeResponse, (*BODY_ERRORS, 401, 429, 503),
         TokenizeRequest, deadline=False)  # fmt: skip
    get("/health", handlers.health, HealthResponse, public=True)
    get("/info", handlers.info, InfoResponse)
    get("/v1/models", handlers.list_models, ModelList)
    api.add_api_route(
        "/metrics",
        handlers.prometheus,
        methods=["GET"],
        response_class=Response,
        **route_docs("openai", METRICS_RESPONSE, (429, 503), secured=False),
    )
    api.add_exception_handler(HTTPException, http_error)
    return api
