"""``python -m service``: start a local Ray instance, deploy embedserve, serve until a signal.

Whatever stops it from starting (settings, the artifact, a replica's constructor, a replica no
resource can hold) ends it with one line on stderr, ``error: <cause>``, and exit status 1; a
plan no replica could run (a backend and precision this machine or artifact cannot serve, more
streams than threads) ends it the same way before Ray starts, with exit status 2 (``USAGE``),
as a command line that asks for the impossible does.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, NoReturn, get_args

from pydantic import ValidationError

from .settings import (
    DEFAULT_ARTIFACT,
    DEFAULT_ARTIFACT_CACHE,
    BackendName,
    Device,
    Ingress,
    Precision,
    ServiceSettings,
    load_settings,
)

log = logging.getLogger("embedserve")
# How often the launcher asks the Serve controller whether the application is up (Ray's own
# serve.run polls every 0.1 s; start-up takes tens of seconds, so 0.5 s is well below noise).
STATUS_POLL_S = 0.5
# Ray picks the node's address with this switch (ray._private.services.get_node_ip_address):
# off, the node is 127.0.0.1, and GCS, raylet, object manager, workers, dashboard agent and
# metrics exporter bind to loopback only. ray.init(_node_ip_address="127.0.0.1") does not do
# it: Ray turns a loopback address given there into the machine's reachable one.
LOOPBACK_NODE_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# Exit status of a plan no replica could run (argparse's for a command line it refuses).
USAGE = 2


class StartupError(Exception):
    """The application did not start; ``str()`` is the one line the operator sees."""


def parse_args(argv: list[str] | None = None) -> tuple[Path | None, dict[str, Any]]:
    p = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    p.add_argument("--config", type=Path, help="YAML settings file (overridden by env and flags)")
    p.add_argument(
        "--artifact",
        type=Path,
        action="append",
        help=f"exported model folder (default {DEFAULT_ARTIFACT}); repeat it to serve several "
        "models, the first the default (a YAML models: list names them)",
    )
    p.add_argument(
        "--model",
        metavar="NAME_OR_PATH",
        help="a known model or a checkpoint folder, exported on first use (not with --artifact)",
    )
    p.add_argument(
        "--artifact-cache",
        type=Path,
        help=f"where --model's artifacts go ({DEFAULT_ARTIFACT_CACHE})",
    )
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--ingress", choices=get_args(Ingress), help="HAProxy (default) or Ray's proxy")
    p.add_argument("--backend", choices=get_args(BackendName))
    p.add_argument("--precision", choices=get_args(Precision))
    p.add_argument("--device", choices=get_args(Device))
    p.add_argument("--num-replicas", type=int)
    p.add_argument("--num-cpus", type=float, help="CPU budget per replica (its runtime threads)")
    p.add_argument("--num-gpus", type=float)
    p.add_argument("--streams", type=int, help="inference streams per replica (0: auto)")
    p.add_argument("--cache-mb", type=float, help="MiB of each replica's cache per model (0: off)")
    p.add_argument("--max-ongoing-requests", type=int)
    p.add_argument("--max-queued-requests", type=int)
    p.add_argument("--api-key", action="append", dest="api_keys", help="repeat for several keys")
    p.add_argument(
        "--api-key-file", type=Path, help="more keys, one a line (# comments); keeps them off argv"
    )
    p.add_argument("--no-truncate", dest="truncate", action="store_false", default=None)
    p.add_argument("--chunk-overlap", type=int, help="tokens windows share (long_input chunk)")
    p.add_argument("--max-windows", type=int, help="windows per long_input chunk request")
    p.add_argument("--request-timeout-s", type=float, help="default request deadline (off)")
    p.add_argument(
        "--startup-timeout-s", type=float, help="give up if the replicas are not up by then (600)"
    )
    p.add_argument("--max-batch-size", type=int)
    p.add_argument("--max-batch-tokens", type=int)
    p.add_argument("--batch-wait-timeout-s", type=float)
    p.add_argument("--max-queue-wait-s", type=float, help="admission: longest expected wait")
    args = vars(p.parse_args(argv))
    config = args.pop("config")
    artifacts: list[Path] = args.pop("artifact") or []
    if len(artifacts) == 1:
        args["artifact"] = artifacts[0]
    elif artifacts:
        args["models"] = [{"artifact": path} for path in artifacts]
    batching = {
        k: args.pop(k)
        for k in ("max_batch_size", "max_batch_tokens", "batch_wait_timeout_s", "max_queue_wait_s")
    }
    if any(v is not None for v in batching.values()):
        args["batching"] = {k: v for k, v in batching.items() if v is not None}
    return config, args


def one_line(exc: Exception) -> str:
    """A settings error as one line: pydantic's report spans several (field, message, URL)."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
    return " ".join(str(exc).split())


def ensure_default_artifact(artifact: Path) -> None:
    """Export all-MiniLM-L6-v2 on first run; any other missing artifact is an error."""
    if (artifact / "manifest.json").is_file():
        return
    if artifact.resolve() != DEFAULT_ARTIFACT.resolve():
        sys.exit(f"error: no artifact at {artifact}; create one with python -m export")
    log.info("exporting all-MiniLM-L6-v2 to %s (first run only)", artifact)
    cmd = [sys.executable, "-m", "export", "--model", "all-MiniLM-L6-v2", "--output", str(artifact)]
    if subprocess.run(cmd, check=False).returncode != 0:
        sys.exit("error: exporting the default model failed")


def model_artifact(settings: ServiceSettings) -> ServiceSettings:
    """With ``model`` set: the settings serving its cached artifact (exported first if need
    be); any failure ends the launcher with one line."""
    from .artifact_cache import CacheError, ensure_model_artifact

    assert settings.model is not None
    if "artifact" in settings.model_fields_set:
        sys.exit("error: give a model (--model) or an artifact (--artifact), not both")
    try:
        artifact = ensure_model_artifact(settings.model, settings.artifact_cache)
    except CacheError as exc:
        sys.exit(f"error: {exc}")
    return settings.model_copy(update={"artifact": artifact})


def default_cpu_budget(settings: ServiceSettings, cores: int) -> ServiceSettings:
    """Unless a CPU budget was given, share this machine's cores among the replicas: a local
    server should not leave half the machine idle (``build_app`` keeps the explicit default)."""
    if "num_cpus" in settings.model_fields_set or settings.device != "cpu":
        return settings
    replicas = settings.autoscaling.max_replicas if settings.autoscaling else settings.num_replicas
    return settings.model_copy(update={"num_cpus": float(max(1, cores // replicas))})


def check_backend_plan(settings: ServiceSettings) -> list[str]:
    """Refuse what a replica would refuse (backend × precision, streams, a chunk overlap no
    window holds, a missing or corrupt file, two models served under one name) before Ray
    starts: seconds instead of a replica's retries. Returns each model's served name, the
    default first."""
    from export.artifact import load_artifact
    from export.errors import ExportError
    from models.tokenizer import Tokenizer

    from .backends import choose, resolve_streams
    from .chunking import Chunker, Framing

    names: list[str] = []
    for entry in settings.served_models:
        try:
            artifact = load_artifact(entry.artifact)
        except ExportError as exc:
            sys.exit(f"error: {one_line(exc)}")
        length, path = artifact.config.max_seq_length, artifact.tokenizer_path
        chunker = Chunker(length, settings.chunk_overlap, settings.max_windows)
        try:
            resolve_streams(settings, choose(settings, artifact))
            chunker.check(Framing.around(Tokenizer(path, length) if path else None))
        except ValueError as exc:
            refuse(one_line(exc))
        name = entry.name or artifact.config.model_name
        if name in names:
            sys.exit(
                f"error: two models would be served as {name!r}; name them (models: with "
                "artifact and name in the YAML config)"
            )
        names.append(name)
    return names


def refuse(message: str) -> NoReturn:
    """End the launcher with ``error: message`` on stderr and exit status ``USAGE``."""
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    sys.exit(USAGE)


def serving_line(settings: ServiceSettings, names: list[str], url: str) -> str:
    """What the operator reads once the service is up: every model it serves."""
    entries = settings.served_models
    if len(entries) == 1:
        return f"embedserve is serving {entries[0].artifact} on {url}"
    served = ", ".join(f"{e.artifact} as {n!r}" for e, n in zip(entries, names, strict=True))
    return f"embedserve is serving {served} on {url} (the first is the default)"


ANSI_CODE = re.compile(r"\x1b\[[0-9;]*m")
MODULE_PATH = re.compile(r"^(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_]\w*:)")
LONGEST_LINE = 1000


def failure_line(message: str) -> str:
    """Ray's status message reduced to one line: the exception that ended a traceback in it.

    For a constructor that raised, Ray's message is a header and the replica's traceback, whose
    indented frames end with the exception, sometimes over several lines (OpenVINO's do):
    ``onnxruntime...InvalidProtobuf: [ONNXRuntimeError] ... model.onnx failed`` becomes
    ``InvalidProtobuf: [ONNXRuntimeError] ... model.onnx failed``. A message without a traceback
    (a replica no node can hold) is kept whole, on one line.
    """
    lines = [line.rstrip() for line in ANSI_CODE.sub("", message).splitlines() if line.strip()]
    indented = [i for i, line in enumerate(lines) if line[:1].isspace()]
    tail = lines[indented[-1] + 1 :] if indented else lines
    text = MODULE_PATH.sub("", " ".join(line.strip() for line in tail)) or "Ray gave no reason"
    return text if len(text) <= LONGEST_LINE else text[: LONGEST_LINE - 1] + "…"


def wait_until_running(app_name: str, timeout_s: float, stop: threading.Event) -> None:
    """Wait for the application to run; a failed deployment or ``timeout_s`` raise
    :class:`StartupError` with the cause. Returns early, quietly, when ``stop`` is set.

    ``serve.run`` would wait without a bound: for a replica no node can hold, forever; and its
    error is "Failed to update the deployments", the cause left in the deployment's status.
    Ray retries a failing constructor 3 times per replica (ray.serve's
    MAX_PER_REPLICA_RETRY_COUNT) before it marks the deployment DEPLOY_FAILED.
    """
    from ray import serve
    from ray.serve.schema import ApplicationStatus

    deadline = time.monotonic() + timeout_s
    reason = "no replica is up yet"
    while not stop.is_set():
        app = serve.status().applications.get(app_name)
        if app is not None:
            if app.status == ApplicationStatus.RUNNING:
                return
            # The deployment's message has the cause; the application's only names the
            # deployment ("Failed to update the deployments ['EmbeddingServer']").
            messages = [d.message for d in app.deployments.values() if d.message]
            messages += [app.message] if app.message else []
            reason = failure_line(messages[0]) if messages else reason
            if app.status == ApplicationStatus.DEPLOY_FAILED:
                raise StartupError(f"the replica failed to start: {reason}")
        if time.monotonic() > deadline:
            raise StartupError(f"the replicas did not start within {timeout_s:g} s: {reason}")
        stop.wait(STATUS_POLL_S)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config, cli = parse_args(argv)
    try:
        settings = load_settings(config, cli)
    except (ValueError, OSError) as exc:
        sys.exit(f"error: {one_line(exc)}")
    settings = default_cpu_budget(settings, os.cpu_count() or 1)
    if settings.model is not None:
        settings = model_artifact(settings)
    for entry in settings.served_models:
        ensure_default_artifact(entry.artifact)
    names = check_backend_plan(settings)

    from .ingress import ingress_timeout_s, ray_environment

    # Before anything imports Ray (ray_environment may): Ray reads the switch at import.
    os.environ.update({k: v for k, v in LOOPBACK_NODE_ENV.items() if k not in os.environ})
    os.environ.update(ray_environment(settings, os.environ))

    import ray
    from ray import serve

    from .app import build_app

    cpus = max(os.cpu_count() or 1, int(settings.num_replicas * settings.num_cpus + 0.999))
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    failure: StartupError | None = None
    try:
        http = {"host": settings.host, "port": settings.port}
        serve.start(http_options=http | {"request_timeout_s": ingress_timeout_s(settings)})
        target = serve.RunTarget(
            build_app(settings), name=settings.app_name, route_prefix=settings.route_prefix
        )
        serve.run_many([target], wait_for_applications_running=False)
        wait_until_running(settings.app_name, settings.startup_timeout_s, stop)
        if not stop.is_set():
            url = f"http://{settings.host}:{settings.port}"
            sys.stdout.write(serving_line(settings, names, url) + "\n")
            sys.stdout.flush()
        stop.wait()
    except StartupError as exc:
        failure = exc
    finally:
        log.info("shutting down")
        serve.shutdown()
        ray.shutdown()
    if failure is not None:
        # After the shutdown, so that this is the last line the operator sees.
        sys.exit(f"error: {failure}")


if __name__ == "__main__":
    main()
