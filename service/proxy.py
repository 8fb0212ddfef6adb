"""JSON bodies for the errors Ray Serve's HTTP proxy answers by itself.

The proxy answers some failures without reaching a replica: 503 when no replica is available,
429 when its queue is full (backpressure), 408 on timeouts, and a bare 500 when the replica
handling a request dies mid-request (a node lost, say). Those come as ``text/plain`` or as
uvicorn's default page. This middleware, installed on every proxy through
``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=service.proxy:middlewares``, rewrites them into the
same JSON error shapes the replicas use, and turns a request that got no response at all into a
503 with ``Retry-After``: the client's retry will reach a live replica.

It also makes the client's deadline (``x-request-timeout-ms``) Ray's per-request timeout, a
grace second later: the replica answers its own 504 at the deadline, so the proxy's timeout fires
only for a replica that died or hangs without Ray noticing, and the client still gets a JSON 504
in time instead of nothing. Ray's own per-request overrides are stripped from client requests: a
client must not switch off the server's timeout or the cancellation of abandoned work.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, dialect_for, error_body
from .protocol import DEADLINE_HEADER, deadline_seconds

CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CALLBACK = "service.proxy:middlewares"
RETRY_AFTER_S = "1"
# Ray's per-request overrides of its proxy's timeout and of cancelling on client disconnect.
RAY_TIMEOUT_HEADER = b"x-request-timeout-seconds"
RAY_OVERRIDES = (RAY_TIMEOUT_HEADER, b"x-request-disconnect-disabled")
DEADLINE_GRACE_S = 1.0
_DEADLINE = DEADLINE_HEADER.encode()
DEADLINE_PASSED = "the request's deadline passed with no answer from its replica; retry"


def with_ray_deadline(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The request's headers for Ray's proxy: the client's deadline (plus the grace) as Ray's
    timeout, and no client-sent Ray overrides."""
    kept = [(k, v) for k, v in headers if k.lower() not in RAY_OVERRIDES]
    given = next((v for k, v in headers if k.lower() == _DEADLINE), None)
    seconds = None if given is None else deadline_seconds(given.decode("latin-1"))
    if seconds is not None:
        kept.append((RAY_TIMEOUT_HEADER, f"{seconds + DEADLINE_GRACE_S:.3f}".encode()))
    return kept


def _json_response(status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> list[Message]:
    kept = [(k, v) for k, v in headers if k.lower() not in (b"content-type", b"content-length")]
    kept += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status in (429, 503, 504) and not any(k.lower() == b"retry-after" for k, _ in kept):
        kept.append((b"retry-after", RETRY_AFTER_S.encode()))
    return [
        {"type": "http.response.start", "status": status, "headers": kept},
        {"type": "http.response.body", "body": body},
    ]


class JsonProxyErrors:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Ray's own routes (/-/healthz, /-/routes) keep their plain answers.
        if scope["type"] != "http" or scope["path"].startswith("/-/"):
            await self.app(scope, receive, send)
            return
        scope = {**scope, "headers": with_ray_deadline(list(scope.get("headers") or []))}
        dialect = dialect_for(scope["path"])
        started = False
        held: Message | None = None  # a plain-text error's start, waiting for its body
        text = b""

        async def rewrite(message: Message) -> None:
            nonlocal started, held, text
            if message["type"] == "http.response.start":
                started = True
                headers = dict(message.get("headers") or [])
                plain = headers.get(b"content-type", b"").startswith(b"text/plain")
                if message["status"] >= 400 and plain:
                    held = message
                    return
            elif held is not None and message["type"] == "http.response.body":
                text += message.get("body", b"")
                if message.get("more_body"):
                    return
                error = ApiError(held["status"], text.decode(errors="replace").strip())
                if error.status == 408:  # Ray's timeout: the deadline passed, no answer came
                    error = ApiError(504, DEADLINE_PASSED, code="deadline_exceeded")
                body = error_body(error, dialect)
                for part in _json_response(error.status, body, list(held.get("headers") or [])):
                    await send(part)
                held = None
                return
            await send(message)

        try:
            await self.app(scope, receive, rewrite)
        except Exception:
            if started:
                raise
        if not started:
            error = ApiError(503, "the replica serving this request went away; retry")
            for part in _json_response(503, error_body(error, dialect), []):
                await send(part)


def middlewares() -> list[Middleware]:
    return [Middleware(JsonProxyErrors)]
