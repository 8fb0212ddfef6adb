"""The HTTP API over a :class:`Registry`: OpenAI-, Cohere- and TEI-compatible routes, health,
metrics.

HTTP only: a handler parses the body, looks up the (model, task) pipeline (the body's ``model``
on OpenAI and Cohere routes; the ``x-model`` header, else the default model, on TEI's), calls it
and renders the answer in its dialect; checks, batching and stage metrics are behind the pipeline
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

import numpy as np
import orjson
from fastapi import FastAPI, Request
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.responses import Response

from .bodies import parse
from .chunking import LongInput
from .engine import Registry
from .errors import ApiError, dialect_for, render
from .ingress import active_ingress
from .model import Result
from .openapi import (
    BODY_ERRORS,
    METRICS_RESPONSE,
    complete_openapi,
    request_components,
    route_docs,
)
from .protocol import (
    DEADLINE_HEADER,
    MODEL_HEADER,
    CohereRerankRequest,
    CohereRerankResponse,
    HealthResponse,
    InfoResponse,
    ModelList,
    OpenAIEmbeddingRequest,
    OpenAIEmbeddingResponse,
    TeiEmbedAllRequest,
    TeiEmbedAllResponse,
    TeiEmbedRequest,
    TeiEmbedResponse,
    TeiPredictRequest,
    TeiPredictResponse,
    TeiRerankRequest,
    TeiRerankResponse,
    TokenizeRequest,
    TokenizeResponse,
    deadline_seconds,
)
from .tasks import Pair, Pipeline, Task, TaskRequest, token_details

log = logging.getLogger(__name__)
Answer = tuple[Any, dict[str, str]]  # the JSON body and extra headers of a 200
Handler = Callable[[Request], Awaitable[Answer]]
JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
TEI_ERRORS = (*BODY_ERRORS, 401, 404, 424, 429, 503, 504)
# The body and answer of TEI's POST / per artifact task: those of the model's own route.
ROOT_DOCS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "embedding": (TeiEmbedRequest, TeiEmbedResponse),
    "rerank": (TeiRerankRequest, TeiRerankResponse),
    "classify": (TeiPredictRequest, TeiPredictResponse),
}


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


def long_input(asked: LongInput | None, truncate: bool) -> tuple[bool, bool]:
    """(truncate, chunk) of a request: ``long_input`` when given, else the ``truncate`` switch
    (TEI's field, or the server's setting)."""
    if asked is None:
        return truncate, False
    return asked == "truncate", asked == "chunk"


def openai_embeddings_body(result: Result[Any], model: str, base64_bytes: bool) -> Any:
    vectors = result.outputs  # (n, D) float32, or int8/uint8 for a compact embedding_type
    if base64_bytes:
        little = vectors.astype(vectors.dtype.newbyteorder("<"), copy=False)
        items = [base64.b64encode(v.tobytes()).decode() for v in little]
    else:
        items = list(vectors)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(items)],
        "model": model,
        "usage": {"prompt_tokens": result.token_count, "total_tokens": result.token_count},
    }


def best_first(scores: np.ndarray) -> list[int]:
    """Indices of ``(n,)`` scores, highest first; ties keep the request's order."""
    return [int(i) for i in np.argsort(-scores, kind="stable")]


def ranked_labels(scores: np.ndarray, labels: list[str]) -> list[dict[str, Any]]:
    """One input's ``(L,)`` label scores as TEI's predictions, best first."""
    return [{"score": float(scores[i]), "label": labels[i]} for i in best_first(scores)]


def predict_input(value: str | list[str]) -> str | Pair:
    """One of TEI's predict inputs: a text, ``[text]``, or a pair ``[text, text]``."""
    if isinstance(value, str):
        return value
    return value[0] if len(value) == 1 else (value[0], value[1])


def require(items: list[Any], name: str) -> None:
    """TEI answers an empty list to rank with 400 before anything else (server.rs, rerank)."""
    if not items:
        raise ApiError(400, f"{name} must not be empty", name, "empty_input")


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
            request.state.model = ""  # the model that answers, once a handler looks it up
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
            observe(route, request.state.model, response.status_code, time.perf_counter() - start)
            return response

        run.__name__ = handler.__name__
        run.__doc__ = handler.__doc__  # the operation's description in /openapi.json
        return run

    def lookup(self, request: Request, model: str | None, task: Task) -> Pipeline:
        """The pipeline of ``task`` on the model called ``model`` (None: the default), noted on
        the request for its metrics, also when it refuses a task it does not serve."""
        served = self.registry.model(model)
        request.state.model = served.name
        return self.registry.lookup(served.name, task)

    async def openai_embeddings(self, request: Request) -> Answer:
        """Embeddings of texts or token ids, as OpenAI's API answers them (unit length)."""
        req = await parse(request, OpenAIEmbeddingRequest, self.settings.max_body_bytes)
        pipeline = self.lookup(request, req.model, "embed")
        truncate, chunk = long_input(req.long_input, self.settings.truncate)
        task = TaskRequest(
            batch_of(req.input),
            truncate,
            dimensions=req.dimensions,
            deadline=request.state.deadline,
            prompt_name=req.prompt_name,
            chunk=chunk,
            embedding_type=req.embedding_type,
        )
        result = await pipeline(task)
        body = openai_embeddings_body(result, pipeline.model.name, req.encoding_format == "base64")
        return body, timing_headers(result)

    async def tei_embed(self, request: Request, task: Task) -> Answer:
        body = TeiEmbedRequest if task == "embed" else TeiEmbedAllRequest
        req = await parse(request, body, self.settings.max_body_bytes)
        texts = [req.inputs] if isinstance(req.inputs, str) else req.inputs
        truncate = self.settings.truncate if req.truncate is None else req.truncate
        truncate, chunk = long_input(req.long_input, truncate)
        pipeline = self.lookup(request, request.headers.get(MODEL_HEADER), task)
        result = await pipeline(
            TaskRequest(
                texts,
                truncate,
                req.truncation_direction,
                req.normalize,
                deadline=request.state.deadline,
                prompt_name=req.prompt_name,
                chunk=chunk,
                embedding_type=req.embedding_type,
            )  # fmt: skip
        )
        return result.outputs, timing_headers(result)

    async def embed(self, request: Request) -> Answer:
        """One pooled vector per input, as text-embeddings-inference answers them."""
        return await self.tei_embed(request, "embed")

    async def embed_all(self, request: Request) -> Answer:
        """Every token's vector (before pooling) for each input."""
        return await self.tei_embed(request, "embed_tokens")

    async def rerank(self, request: Request) -> Answer:
        """``query`` scored against each text by a cross-encoder, best first, as
        text-embeddings-inference answers it: the sigmoid of the logit unless ``raw_scores``."""
        req = await parse(request, TeiRerankRequest, self.settings.max_body_bytes)
        require(req.texts, "texts")
        pipeline = self.lookup(request, request.headers.get(MODEL_HEADER), "rerank")
        truncate = self.settings.truncate if req.truncate is None else req.truncate
        result = await pipeline(
            TaskRequest(
                [(req.query, text) for text in req.texts],
                truncate,
                req.truncation_direction,
                deadline=request.state.deadline,
                raw_scores=req.raw_scores,
            )
        )
        scores = cast("np.ndarray", result.outputs)  # (n,)
        ranks = [
            {
                "index": i,
                "score": float(scores[i]),
                **({"text": req.texts[i]} if req.return_text else {}),
            }
            for i in best_first(scores)
        ]
        return ranks, timing_headers(result)

    async def cohere_rerank(self, request: Request) -> Answer:
        """``query`` scored against each document, best first and cut to ``top_n``, as Cohere's
        and Jina's rerank APIs answer it (``relevance_score`` is the sigmoid of the logit)."""
        req = await parse(request, CohereRerankRequest, self.settings.max_body_bytes)
        require(req.documents, "documents")
        texts = [d if isinstance(d, str) else d.text for d in req.documents]
        pipeline = self.lookup(request, req.model, "rerank")
        result = await pipeline(
            TaskRequest(
                [(req.query, text) for text in texts],
                self.settings.truncate,
                deadline=request.state.deadline,
            )
        )
        scores = cast("np.ndarray", result.outputs)  # (n,)
        results = [
            {
                "index": i,
                "relevance_score": float(scores[i]),
                **({"document": {"text": texts[i]}} if req.return_documents else {}),
            }
            for i in best_first(scores)[: req.top_n]
        ]
        usage = {"total_tokens": result.token_count}
        body = {"results": results, "model": pipeline.model.name, "usage": usage}
        return body, timing_headers(result)

    async def predict(self, request: Request) -> Answer:
        """Every label's score for a text or a pair of texts (or a batch of them), best first,
        as text-embeddings-inference answers it: softmax over the labels (a sigmoid for one)
        unless ``raw_scores``."""
        req = await parse(request, TeiPredictRequest, self.settings.max_body_bytes)
        inputs = req.inputs
        batch = isinstance(inputs, list) and isinstance(inputs[0], list)
        items = cast("list[str | list[str]]", inputs if batch else [inputs])
        pipeline = self.lookup(request, request.headers.get(MODEL_HEADER), "predict")
        truncate = self.settings.truncate if req.truncate is None else req.truncate
        result = await pipeline(
            TaskRequest(
                [predict_input(item) for item in items],
                truncate,
                req.truncation_direction,
                deadline=request.state.deadline,
                raw_scores=req.raw_scores,
            )
        )
        labels = pipeline.model.labels
        predictions = [ranked_labels(row, labels) for row in result.outputs]  # (n, L) rows
        return (predictions if batch else predictions[0]), timing_headers(result)

    async def root(self, request: Request) -> Answer:
        """The addressed model's own route, as text-embeddings-inference's ``POST /`` (what
        Hugging Face's InferenceClient calls): /embed for an embedding model, /rerank for a
        reranker, /predict for a classifier."""
        model = self.registry.model(request.headers.get(MODEL_HEADER))
        handler = {"embedding": self.embed, "rerank": self.rerank, "classify": self.predict}
        return await handler[model.task](request)

    async def tokenize(self, request: Request) -> Answer:
        """Each input's tokens with their text and character offsets."""
        req = await parse(request, TokenizeRequest, self.settings.max_body_bytes)
        texts = [req.inputs] if isinstance(req.inputs, str) else req.inputs
        model = self.registry.model(request.headers.get(MODEL_HEADER))
        request.state.model = model.name
        details = await token_details(model, texts, req.add_special_tokens)
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
        """The default model, its backend, batching and limits; under ``models`` each served
        model's own."""
        registry = self.registry
        models = [model.info() for model in registry.models]
        return {**registry.default.info(), "models": models, "ingress": active_ingress()}, {}

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
    post("/embed_all", "tei", handlers.embed_all, TeiEmbedAllResponse, TEI_ERRORS,
         TeiEmbedAllRequest)  # fmt: skip
    post("/tokenize", "tei", handlers.tokenize, TokenizeResponse,
         (*BODY_ERRORS, 401, 404, 429, 503), TokenizeRequest, deadline=False)  # fmt: skip
    post("/rerank", "tei", handlers.rerank, TeiRerankResponse, TEI_ERRORS, TeiRerankRequest)
    post("/predict", "tei", handlers.predict, TeiPredictResponse, TEI_ERRORS, TeiPredictRequest)
    # POST / takes what the default model's own route takes (another model's, by x-model).
    root_body, root_answer = ROOT_DOCS[registry.default.task]
    post("/", "tei", handlers.root, root_answer, TEI_ERRORS, root_body)
    post("/v1/rerank", "openai", handlers.cohere_rerank, CohereRerankResponse,
         (*BODY_ERRORS, 401, 404, 429, 503, 504), CohereRerankRequest)  # fmt: skip
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
