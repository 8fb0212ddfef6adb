"""HAProxy as embedserve runs it: Ray's generated configuration, three things changed.

Ray 2.60 writes HAProxy's configuration from a fixed template with no hook for what we need:

- its stats page and Prometheus listener bind every interface (``bind *:PORT``, ``bind :PORT``)
  while the API binds the service's host; here they bind that same host (127.0.0.1 by default);
- a request whose replica dies mid-request gets HAProxy's 502, which Ray's error file turns into
  a plain-text ``500 Internal Server Error``; here 502 and 503 are a JSON 503 with
  ``Retry-After: 1`` (the client's retry reaches a live replica) and 504 a JSON 504, the same
  shapes ``service.proxy`` gives behind Ray's Python proxy;
- no ``timeout http-request``: a client may take an hour (``timeout client``) to send its
  headers; here it gets ``HTTP_REQUEST_TIMEOUT_S``, then HAProxy's 408.

Ray runs whatever ``RAY_SERVE_HAPROXY_BINARY_PATH`` names. :func:`install` writes a two-line
script there that runs :func:`main`: it rewrites the generated file in place, then execs the real
HAProxy with Ray's arguments unchanged (Ray recognises its HAProxy processes by the config path
in their command line, so the path must stay the same).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

from .errors import ApiError, error_body

BINARY_ENV = "RAY_SERVE_HAPROXY_BINARY_PATH"
HTTP_REQUEST_TIMEOUT_S = 30
RETRY_AFTER_S = 1
# What HAProxy answers by itself, and why: 502 the replica closed the connection or answered
# garbage (after the retries); 503 no replica to send to; 504 the replica timed out.
ERRORS = {
    502: ApiError(503, "the replica serving this request went away; retry", None, "replica_lost"),
    503: ApiError(503, "no replica is available; retry", None, "no_replica"),
    504: ApiError(504, "the replica did not answer in time", None, "replica_timeout"),
}
_REASONS = {503: "Service Unavailable", 504: "Gateway Timeout"}

_FRONTEND_BIND = re.compile(r"^frontend http_frontend\n\s*bind (\S+):\d+", re.MULTILINE)
_ANY_HOST_BIND = re.compile(r"^(\s*bind )\*?(:\d+)", re.MULTILINE)
_ERRORFILE = re.compile(r"^(\s*errorfile )(50[234]) \S+", re.MULTILINE)
_DEFAULTS = re.compile(r"^defaults\n", re.MULTILINE)


def error_response(error: ApiError) -> bytes:
    """A whole HTTP response, as HAProxy's ``errorfile`` wants it."""
    body = error_body(error)
    head = [
        f"HTTP/1.1 {error.status} {_REASONS[error.status]}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-cache",
        "Connection: close",
    ]
    if error.status == 503:
        head.append(f"Retry-After: {RETRY_AFTER_S}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def rewrite(config: str, error_files: dict[int, Path]) -> str:
    """Ray's generated HAProxy configuration with our binds, error files and request timeout."""
    frontend = _FRONTEND_BIND.search(config)
    if frontend is None:
        raise ValueError("no `frontend http_frontend` bind in Ray's HAProxy configuration")
    host = frontend.group(1)
    config = _ANY_HOST_BIND.sub(lambda m: f"{m.group(1)}{host}{m.group(2)}", config)
    config = _ERRORFILE.sub(lambda m: f"{m.group(1)}{m.group(2)} {error_files[int(m[2])]}", config)
    if "timeout http-request" not in config:
        timeout = f"    timeout http-request {HTTP_REQUEST_TIMEOUT_S}s\n"
        config = _DEFAULTS.sub(lambda m: m.group(0) + timeout, config)
    return config


def install(folder: Path, real_binary: str) -> Path:
    """Write the error files and the script Ray runs as HAProxy into ``folder``; its path."""
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for code, error in ERRORS.items():
        path = folder / f"{code}.http"
        path.write_bytes(error_response(error))
        errors += ["--error", f"{code}={path}"]
    script = folder / "haproxy"
    command = [sys.executable, "-m", "service.haproxy", "--real", real_binary, *errors]
    script.write_text(f'#!/bin/sh\nexec {shlex.join(command)} -- "$@"\n')
    script.chmod(0o755)
    return script


def main(argv: list[str]) -> None:
    """``--real BIN --error CODE=FILE ... -- HAPROXY_ARGS``: rewrite ``-f`` FILE, exec BIN."""
    split = argv.index("--")
    ours, haproxy_args = argv[:split], argv[split + 1 :]
    real = ours[ours.index("--real") + 1]
    error_files = {
        int(code): Path(path)
        for flag, value in zip(ours, ours[1:], strict=False)
        if flag == "--error"
        for code, path in [value.split("=", 1)]
    }
    if "-f" in haproxy_args:
        config = Path(haproxy_args[haproxy_args.index("-f") + 1])
        config.write_text(rewrite(config.read_text(), error_files))
    os.execv(real, [real, *haproxy_args])


if __name__ == "__main__":
    main(sys.argv[1:])
