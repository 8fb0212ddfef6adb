"""``python -m service``: start a local Ray instance, deploy embedserve, serve until a signal."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from .settings import DEFAULT_ARTIFACT, ServiceSettings, load_settings

log = logging.getLogger("embedserve")


def parse_args(argv: list[str] | None = None) -> tuple[Path | None, dict[str, Any]]:
    p = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    p.add_argument("--config", type=Path, help="YAML settings file (overridden by env and flags)")
    p.add_argument(
        "--artifact", type=Path, help=f"exported model folder (default {DEFAULT_ARTIFACT})"
    )
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument(
        "--ingress", choices=["haproxy", "proxy"], help="HAProxy (default) or Ray's proxy"
    )
    p.add_argument("--backend", choices=["auto", "onnxruntime", "openvino", "torch"])
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16", "int8"])
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--num-replicas", type=int)
    p.add_argument("--num-cpus", type=float, help="CPU budget per replica (its runtime threads)")
    p.add_argument("--num-gpus", type=float)
    p.add_argument("--streams", type=int, help="inference streams per replica (0: auto)")
    p.add_argument("--max-ongoing-requests", type=int)
    p.add_argument("--max-queued-requests", type=int)
    p.add_argument("--api-key", action="append", dest="api_keys", help="repeat for several keys")
    p.add_argument("--no-truncate", dest="truncate", action="store_false", default=None)
    p.add_argument("--request-timeout-s", type=float, help="default request deadline (off)")
    p.add_argument("--max-batch-size", type=int)
    p.add_argument("--max-batch-tokens", type=int)
    p.add_argument("--batch-wait-timeout-s", type=float)
    p.add_argument("--max-queue-wait-s", type=float, help="admission: longest expected wait")
    args = vars(p.parse_args(argv))
    config = args.pop("config")
    batching = {
        k: args.pop(k)
        for k in ("max_batch_size", "max_batch_tokens", "batch_wait_timeout_s", "max_queue_wait_s")
    }
    if any(v is not None for v in batching.values()):
        args["batching"] = {k: v for k, v in batching.items() if v is not None}
    return config, args


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


def default_cpu_budget(settings: ServiceSettings, cores: int) -> ServiceSettings:
    """Unless a CPU budget was given, share this machine's cores among the replicas: a local
    server should not leave half the machine idle (``build_app`` keeps the explicit default)."""
    if "num_cpus" in settings.model_fields_set or settings.device != "cpu":
        return settings
    replicas = settings.autoscaling.max_replicas if settings.autoscaling else settings.num_replicas
    return settings.model_copy(update={"num_cpus": float(max(1, cores // replicas))})


def check_backend_plan(settings: ServiceSettings) -> None:
    """Refuse what a replica would refuse (backend × precision, streams) before Ray starts,
    with one line instead of a failed deployment's traceback."""
    from export.artifact import load_artifact
    from export.errors import ExportError

    from .backends import choose, resolve_streams

    try:
        resolve_streams(settings, choose(settings, load_artifact(settings.artifact)))
    except (ValueError, ExportError) as exc:
        sys.exit(f"error: {exc}")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config, cli = parse_args(argv)
    try:
        settings = load_settings(config, cli)
    except (ValueError, OSError) as exc:
        sys.exit(f"error: {exc}")
    settings = default_cpu_budget(settings, os.cpu_count() or 1)
    ensure_default_artifact(settings.artifact)
    check_backend_plan(settings)

    import ray
    from ray import serve

    from .app import build_app
    from .ingress import ray_environment

    os.environ.update(ray_environment(settings.ingress, os.environ))
    cpus = max(os.cpu_count() or 1, int(settings.num_replicas * settings.num_cpus + 0.999))
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": settings.host, "port": settings.port})
        serve.run(build_app(settings), name=settings.app_name, route_prefix=settings.route_prefix)
        url = f"http://{settings.host}:{settings.port}"
        sys.stdout.write(f"embedserve is serving {settings.artifact} on {url}\n")
        sys.stdout.flush()
        stop.wait()
    finally:
        log.info("shutting down")
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
