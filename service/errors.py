"""Client-facing errors: one exception type, rendered in the caller's API dialect.

OpenAI routes answer ``{"error": {"message", "type", "param", "code"}}``; the TEI-compatible
routes answer TEI's ``{"error": message, "error_type": kind}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
from starlette.responses import Response

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    422: "invalid_request_error",
    424: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable",
    504: "timeout_error",
}
_TEI_TYPES = {
    401: "Unauthorized",
    413: "Validation",
    # TEI's answer to a route its model cannot serve (an embedding model asked to rerank):
    # TextEmbeddingsError::Backend, 424 Failed Dependency (router/src/http/server.rs).
    424: "Backend",
    429: "Overloaded",
    500: "Backend",
    503: "Unhealthy",
    504: "Overloaded",
}


@dataclass
class ApiError(Exception):
    """``tei_status``: what the TEI-compatible routes answer instead of ``status``, for an error
    text-embeddings-inference classes differently from us (None: the same)."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    tei_status: int | None = None

    def __str__(self) -> str:
        return self.message


TEI_ROUTES = ("/embed", "/embed_all", "/tokenize", "/rerank", "/predict", "/")


def dialect_for(path: str) -> str:
    """The error shape a client of ``path`` expects."""
    return "tei" if (path.rstrip("/") or "/") in TEI_ROUTES else "openai"


def error_body(error: ApiError, dialect: str = "openai") -> bytes:
    body: dict[str, object]
    if dialect == "tei":
        status = error.status if error.tei_status is None else error.tei_status
        body = {"error": error.message, "error_type": _TEI_TYPES.get(status, "Validation")}
    else:
        body = {
            "error": {
                "message": error.message,
                "type": _TYPES.get(error.status, "invalid_request_error"),
                "param": error.param,
                "code": error.code,
            }
        }
    return orjson.dumps(body)


def render(error: ApiError, dialect: str = "openai") -> Response:
    tei_status = error.tei_status if dialect == "tei" else None
    return Response(
        error_body(error, dialect),
        status_code=error.status if tei_status is None else tei_status,
        media_type="application/json",
        headers=error.headers,
    )
