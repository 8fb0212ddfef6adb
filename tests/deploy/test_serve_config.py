"""The Serve configs in deploy/: valid for Ray's own schema (no key Ray would silently ignore),
exactly what the application builder produces from their args (as ``serve build`` would write
it), and embedded unchanged as ``serveConfigV2`` in the RayService manifests."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from ray.serve.schema import ServeDeploySchema

from deploy.serve_config import CONFIGS, DEPLOY_DIR, builder_deployments, dump, regenerate, sync
from service.settings import ServiceSettings

CONFIG_IDS = [c.path.name for c in CONFIGS]


def load(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def serve_configs() -> list[tuple[str, dict[str, Any]]]:
    """Every Serve config under deploy/: the YAML files and each RayService's serveConfigV2."""
    found = []
    for path in sorted(DEPLOY_DIR.rglob("*.y*ml")):
        for doc in load(path):
            if "applications" in doc:
                found.append((path.name, doc))
            elif doc.get("kind") == "RayService":
                embedded = yaml.safe_load(doc["spec"]["serveConfigV2"])
                found.append((f"{path.name}:serveConfigV2", embedded))
    return found


def unknown_keys(raw: Any, model: Any, where: str = "") -> list[str]:
    """Keys in ``raw`` that the validated ``model`` dropped (pydantic's default is to ignore)."""
    if isinstance(model, BaseModel):
        dumped = model.model_dump(exclude_unset=True, by_alias=True)
        fields = {**model.__class__.model_fields}
        aliases = {f.alias for f in fields.values() if f.alias}
        out = []
        if isinstance(raw, dict):
            for key, value in raw.items():
                if key not in fields and key not in aliases:
                    out.append(f"{where}{key}")
                elif key in fields and key in dumped:
                    out += unknown_keys(value, getattr(model, key), f"{where}{key}.")
        return out
    if isinstance(model, list) and isinstance(raw, list):
        return [k for r, m in zip(raw, model, strict=False) for k in unknown_keys(r, m, where)]
    return []


def strict_problems(config: dict[str, Any]) -> list[str]:
    """Everything Ray would accept yet not use: unknown keys anywhere, including the dicts the
    schema leaves free-form (autoscaling_config, user_config)."""
    from ray.serve.config import AutoscalingConfig

    from service.settings import BatchingConfig

    problems = unknown_keys(config, ServeDeploySchema.model_validate(config))
    for app in config["applications"]:
        for deployment in app.get("deployments", []):
            scaling = deployment.get("autoscaling_config") or {}
            problems += [
                f"autoscaling_config.{key}"
                for key in scaling
                if key not in AutoscalingConfig.model_fields
            ]
            try:
                BatchingConfig.model_validate(deployment.get("user_config") or {})
            except ValueError as exc:
                problems.append(f"user_config: {exc}")
    return problems


def test_every_yaml_in_deploy_is_a_known_kind() -> None:
    """New YAML files must be covered by some test: a Serve config, a RayService, Prometheus,
    the NetworkPolicy (test_manifests)."""
    for path in sorted(DEPLOY_DIR.rglob("*.y*ml")):
        for doc in load(path):
            assert (
                "applications" in doc
                or doc.get("kind") == "RayService"
                or ("scrape_configs" in doc)
                or doc.get("kind") == "NetworkPolicy"
            ), f"{path}: not a Serve config, RayService, Prometheus config or NetworkPolicy"


@pytest.mark.parametrize("name,config", serve_configs(), ids=[n for n, _ in serve_configs()])
def test_validates_against_rays_serve_schema(name: str, config: dict[str, Any]) -> None:
    schema = ServeDeploySchema.model_validate(config)
    assert strict_problems(config) == []
    (app,) = schema.applications
    assert app.import_path == "service.app:build_app"
    ServiceSettings.model_validate(app.args)  # the builder's own args model
    (deployment,) = app.deployments
    assert deployment.name == "EmbeddingServer"
    # What the issue asks the config to carry, all derived from the args.
    options = deployment.ray_actor_options
    assert options.num_cpus == app.args["num_cpus"] and options.num_gpus is not None
    autoscaling = deployment.autoscaling_config
    assert autoscaling["min_replicas"] <= autoscaling["max_replicas"]
    assert autoscaling["target_ongoing_requests"] > 0
    assert {"max_batch_size", "max_batch_tokens"} <= set(deployment.user_config)


def test_the_strict_check_catches_what_ray_would_ignore() -> None:
    config = copy.deepcopy(yaml.safe_load(CONFIGS[0].path.read_text()))
    deployment = config["applications"][0]["deployments"][0]
    deployment["max_replica_per_node"] = 1  # typo: Ray validates it and drops it silently
    deployment["autoscaling_config"]["min_replica"] = 1
    config["applications"][0]["route_prefx"] = "/"
    deployment["user_config"]["max_batch_sise"] = 8
    problems = strict_problems(config)
    assert sorted(problems[:3]) == [
        "applications.deployments.max_replica_per_node",
        "applications.route_prefx",
        "autoscaling_config.min_replica",
    ]
    assert len(problems) == 4 and "max_batch_sise" in problems[3]


@pytest.mark.parametrize("target", CONFIGS, ids=CONFIG_IDS)
def test_deployments_are_what_the_builder_makes_of_the_args(target) -> None:
    config = yaml.safe_load(target.path.read_text())
    assert config["applications"] == regenerate(config)["applications"]


def test_configs_and_rayservices_are_in_sync() -> None:
    """Byte for byte: `python -m deploy.serve_config` has nothing to change."""
    stale = sync(check=True)
    assert stale == [], f"run `python -m deploy.serve_config` to update {stale}"


@pytest.mark.parametrize("target", CONFIGS, ids=CONFIG_IDS)
def test_rayservices_embed_the_serve_config(target) -> None:
    config = yaml.safe_load(target.path.read_text())
    for manifest in target.manifests:
        (service,) = load(manifest)
        assert yaml.safe_load(service["spec"]["serveConfigV2"]) == config


def test_the_shells_embedserve_variables_stay_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """The builder reads EMBEDSERVE_*; generating a config must not capture them."""
    args = yaml.safe_load(CONFIGS[0].path.read_text())["applications"][0]["args"]
    clean = builder_deployments(args, "embedserve")
    monkeypatch.setenv("EMBEDSERVE_API_KEY", "leaked-secret")
    monkeypatch.setenv("EMBEDSERVE_MAX_ONGOING_REQUESTS", "7")
    assert builder_deployments(args, "embedserve") == clean
    assert "leaked-secret" not in dump({"d": clean})


def test_same_deployments_as_serve_build_writes(tmp_path: Path, monkeypatch) -> None:
    """`serve build` (which needs a built Application) agrees with our builder+args output."""
    config = yaml.safe_load(CONFIGS[0].path.read_text())
    (app,) = config["applications"]
    (tmp_path / "built_app.py").write_text(
        "from service.app import build_app\n"
        "from service.settings import ServiceSettings\n"
        f"app = build_app(ServiceSettings.model_validate({app['args']!r}))\n"
    )
    out = tmp_path / "built.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDSERVE_")}
    cmd = [sys.executable, "-m", "ray.serve.scripts", "build", "built_app:app", "-o", str(out)]
    done = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    built = yaml.safe_load(out.read_text())
    assert built["applications"][0]["deployments"] == app["deployments"]
