"""The Ray Serve application: one deployment whose replicas do the whole hot path.

Each replica parses, authenticates, tokenizes, batches and runs inference itself: a second
deployment hop would add milliseconds per request for nothing on one machine. Several models
(``ServiceSettings.models``) share each replica, each with its own tokenizer thread, backends
and batcher (``service.engine``): one deployment, one ingress route, and a request routed to its
model inside the replica rather than by a second hop.
``build_app`` follows Ray's builder convention (``serve run service.app:build_app key=value``).
"""

import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve import Application

from . import metrics
from .settings import BatchingConfig, ServiceSettings, load_settings


@serve.deployment(name="EmbeddingServer")
@serve.ingress()
class EmbeddingServer:
    def __init__(self, settings: dict[str, Any]) -> None:
        from .engine import Registry  # in the replica only: the builder needs no runtime

        self.settings = ServiceSettings.model_validate(settings)
        self.metrics = metrics.init(metrics_folder(self.settings))
        self.registry = Registry.from_settings(self.settings, self.metrics)

    def __serve_build_asgi_app__(self) -> FastAPI:
        from .routes import build_api

        return build_api(self.registry)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        self.registry.reconfigure(BatchingConfig.model_validate(user_config))

    async def check_health(self) -> None:
        # The probe must give up before Ray's check does, so that a slow probe fails the check
        # as itself rather than as a timeout.
        if not await self.registry.healthy(self.settings.health_check_timeout_s / 2):
            raise RuntimeError("a model did not answer a one-token probe")

    def __del__(self) -> None:
        if hasattr(self, "metrics"):  # not when the constructor failed before it
            self.metrics.mark_process_dead()


ONEDNN_CACHED_PRIMITIVES = 256


def default_metrics_dir(app_name: str) -> Path:
    return Path(tempfile.gettempdir()) / f"embedserve-metrics-{app_name}"


def metrics_folder(settings: ServiceSettings) -> Path:
    """The prometheus multiprocess folder the replicas of a node share."""
    return settings.metrics_dir or default_metrics_dir(settings.app_name)


def replica_env(settings: ServiceSettings) -> dict[str, str]:
    """Thread budgets and the shared metrics folder, set before a replica imports anything."""
    threads = str(settings.intra_op_threads)
    return {
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        # Tokenizing runs on its own thread; rayon's pool would fight inference for the cores.
        "TOKENIZERS_PARALLELISM": "false",
        "RAYON_NUM_THREADS": "1",
        # oneDNN (under OpenVINO's CPU plugin and torch) keeps its own cache of kernels per
        # shape, 1024 by default: with OpenVINO's capped (backends/openvino.py), 300 new
        # shapes still added 44 MiB; with 256, 12 MiB, and the same speed.
        "ONEDNN_PRIMITIVE_CACHE_CAPACITY": str(ONEDNN_CACHED_PRIMITIVES),
        # prometheus_client reads it at its import, before metrics.init runs (service.metrics).
        metrics.MULTIPROC_ENV: str(metrics_folder(settings)),
    }


def deployment_args(settings: ServiceSettings) -> dict[str, Any]:
    """Settings as plain data for the replicas (secrets in clear: they are the point)."""
    # Batching limits travel as user_config only: a change then reconfigures running replicas
    # instead of replacing them.
    # With models, artifact stays unset: the replica's settings would refuse it.
    single = {"artifact"} if settings.models else set()
    payload = settings.model_dump(mode="json", exclude={"batching", *single})
    payload["api_keys"] = [key.get_secret_value() for key in settings.api_keys]
    if settings.models:
        payload["models"] = [
            {"artifact": resolved(entry.artifact), "name": entry.name} for entry in settings.models
        ]
    else:
        payload["artifact"] = resolved(settings.artifact)
    return payload


def resolved(artifact: Path) -> str:
    """An artifact's absolute path where it exists (a replica's working directory differs);
    as given otherwise (on a cluster, a path on the replicas' nodes)."""
    return str(artifact.resolve() if artifact.exists() else artifact)


# No `from __future__ import annotations` here: Ray reads the builder's annotation as a class
# to validate `serve run` / Serve config args into ServiceSettings.
def build_app(args: ServiceSettings) -> Application:
    """The embedserve application for ``serve.run`` / ``serve run`` / ``serve deploy``.

    Settings the args leave unset still come from ``EMBEDSERVE_*`` variables (API keys, say).
    """
    args = load_settings(cli=args.model_dump(exclude_unset=True))
    env = replica_env(args)
    scaling: dict[str, Any] = (
        {"num_replicas": "auto", "autoscaling_config": args.autoscaling.model_dump()}
        if args.autoscaling is not None
        else {"num_replicas": args.num_replicas}
    )
    # Ray's decorator returns a Deployment; its stubs say it returns the class.
    deployment = EmbeddingServer.options(  # type: ignore[attr-defined]
        **scaling,
        max_ongoing_requests=args.max_ongoing_requests,
        health_check_period_s=args.health_check_period_s,
        health_check_timeout_s=args.health_check_timeout_s,
        graceful_shutdown_timeout_s=args.graceful_shutdown_timeout_s,
        max_queued_requests=args.max_queued_requests,
        # Ray's router refuses requests past max_queued_requests: say "busy, retry", not "down".
        backpressure_config={"status_code": 429, "retry_after_s": 1},
        user_config=args.batching.model_dump(),
        ray_actor_options={
            "num_cpus": args.num_cpus,
            "num_gpus": args.num_gpus,
            "runtime_env": {"env_vars": env},
        },
    )
    return deployment.bind(deployment_args(args))
