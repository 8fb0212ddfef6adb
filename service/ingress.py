"""How HTTP reaches the replicas: the environment a local Ray instance starts with.

``haproxy`` (the launcher's default) is Ray 2.60's HAProxy ingress: HAProxy forwards each request
straight to an HTTP server inside the replica, so the Python proxy actor and one actor call drop
off the hot path (docs/benchmarks.md measures what that buys). ``proxy`` is Ray's Python HTTP
proxy. Both load ``service.proxy`` so that the errors Ray produces are JSON; what differs is
listed in the README. On an existing cluster the cluster's own environment decides.
"""

from __future__ import annotations

import math
import os
import random
import socket
import tempfile
from collections.abc import Mapping
from pathlib import Path

from . import haproxy
from .proxy import CALLBACK, CALLBACK_ENV, DEADLINE_GRACE_S
from .settings import Ingress, ServiceSettings

HAPROXY_ENV = "RAY_SERVE_ENABLE_HA_PROXY"
HAPROXY_TIMEOUT_ENV = "RAY_SERVE_HAPROXY_TIMEOUT_SERVER_S"  # whole seconds
# Ports free_port picks from: above the usual fixed service ports, outside the ephemeral range
# (/proc's, else Linux's default); how many random ones it tries before the kernel's choice.
FIRST_PICKED_PORT = 20000
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LINUX_EPHEMERAL = (32768, 60999)
PICK_TRIES = 64
# HAProxy's side ports (stats, metrics) and Ray's fallback proxy, which answers while no replica
# is up; fixed defaults would make two instances on one machine fail to start.
SIDE_PORTS = (
    "RAY_SERVE_HAPROXY_STATS_PORT",
    "RAY_SERVE_HAPROXY_METRICS_PORT",
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
)
# Ray puts why a replica is not up yet (the resources no node has, a slow constructor) in the
# deployment's status only after a replica has waited this long (30 s by default), and then
# every as long: a shorter startup timeout must still see the reason it gives up on.
SLOW_STARTUP_ENVS = ("RAY_SERVE_SLOW_STARTUP_WARNING_S", "RAY_SERVE_SLOW_STARTUP_WARNING_PERIOD_S")
SLOW_STARTUP_DEFAULT_S = 30


def active_ingress(environ: Mapping[str, str] = os.environ) -> Ingress:
    """The ingress this process's Ray instance was started with (replicas inherit it)."""
    return "haproxy" if environ.get(HAPROXY_ENV) == "1" else "proxy"


def ephemeral_ports(path: Path = EPHEMERAL_RANGE_FILE) -> range:
    """The ports the kernel gives to every ``connect()`` and ``bind(port 0)`` on the machine."""
    try:
        low, high = map(int, path.read_text().split())
    except (OSError, ValueError):
        low, high = LINUX_EPHEMERAL
    return range(low, high + 1)


def free_port() -> int:
    """A port free on 127.0.0.1 right now, picked at random outside the kernel's ephemeral
    range. A port from that range (what ``bind(0)`` gives) was taken between the pick and the
    bind: HAProxy binds the service's port only after Ray has started, and the hundreds of
    sockets a Ray start opens, another service's included, draw from that range meanwhile.
    Outside it, only another caller picking ports on purpose could take it."""
    ephemeral = ephemeral_ports()
    ports = [port for port in range(FIRST_PICKED_PORT, 65536) if port not in ephemeral]
    for port in random.SystemRandom().sample(ports, min(PICK_TRIES, len(ports))):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # every try taken: the kernel's choice
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ingress_timeout_s(settings: ServiceSettings) -> float | None:
    """How long the ingress waits for a replica's answer before it answers 504 itself: the
    server's deadline plus the grace in which the replica answers its own 504 first. This is
    what bounds a request held by a replica that died without a word (a partition, a stopped
    process): Ray notices a crash at once, not silence. None: no bound."""
    if settings.request_timeout_s is None:
        return None
    return settings.request_timeout_s + DEADLINE_GRACE_S


def ray_environment(settings: ServiceSettings, environ: Mapping[str, str]) -> dict[str, str]:
    """Variables to set before ``ray.init``. The ingress switch follows the setting; for the
    tuning knobs (the slow start-up report's delay among them), values already in ``environ``
    win, so an operator can still override them. With HAProxy, also writes the script Ray runs
    as HAProxy (``service.haproxy``) into a new temporary folder, unless ``environ`` names a
    binary of its own."""
    env = {CALLBACK_ENV: CALLBACK}
    slow_s = min(SLOW_STARTUP_DEFAULT_S, max(1, int(settings.startup_timeout_s / 3)))
    env |= {name: str(slow_s) for name in SLOW_STARTUP_ENVS}
    ingress = settings.ingress
    if ingress == "haproxy":
        env |= {
            # One node, no outer load balancer to drain from: stop in seconds, not 30.
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0",
            # One HAProxy thread keeps up with a replica; more only compete with inference.
            "RAY_SERVE_HAPROXY_NBTHREAD": "1",
            # Embedding is idempotent: a request whose replica died is sent again, not lost.
            "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response",
            "RAY_SERVE_HAPROXY_RETRIES": "3",
            # Ray's bundle for the direct path: our code on the replica's own event loop (one
            # thread hop less per request; nothing of ours blocks it), buffered access logs,
            # gc.freeze() after start-up. W1's p50 fell by about 0.35 ms; W2 unchanged.
            "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        }
        env |= {name: str(free_port()) for name in SIDE_PORTS}
        if (timeout_s := ingress_timeout_s(settings)) is not None:
            env[HAPROXY_TIMEOUT_ENV] = str(math.ceil(timeout_s))
        if haproxy.BINARY_ENV not in environ:
            from ray.serve._private.haproxy import get_haproxy_binary

            folder = Path(tempfile.mkdtemp(prefix="embedserve-haproxy-"))
            env[haproxy.BINARY_ENV] = str(haproxy.install(folder, get_haproxy_binary()))
    env = {name: value for name, value in env.items() if name not in environ}
    return env | {HAPROXY_ENV: "1" if ingress == "haproxy" else "0"}
