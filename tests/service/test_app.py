"""The application builder, as ``serve run service.app:build_app key=value`` calls it."""

from pathlib import Path

from ray.serve import Application
from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

from service.app import build_app


def test_serve_run_args_are_validated_into_settings(minilm_artifact: Path, monkeypatch) -> None:
    monkeypatch.setenv("EMBEDSERVE_API_KEY", "from-env")
    args = {"artifact": str(minilm_artifact), "num_replicas": "2", "num_cpus": "0.5"}
    app = call_user_app_builder_with_args_if_necessary(build_app, args)
    assert isinstance(app, Application)
    deployment = app._bound_deployment
    assert deployment.num_replicas == 2
    assert deployment.ray_actor_options["num_cpus"] == 0.5
    assert deployment.ray_actor_options["runtime_env"]["env_vars"]["OMP_NUM_THREADS"] == "1"
    settings = deployment.init_args[0]
    assert settings["artifact"] == str(minilm_artifact.resolve())
    assert settings["api_keys"] == ["from-env"]  # env fills what the args leave unset
    assert deployment._deployment_config.max_ongoing_requests == 256
    assert deployment._deployment_config.user_config["max_batch_size"] == 64


def test_autoscaling_replaces_a_fixed_replica_count(minilm_artifact: Path) -> None:
    scaling = {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 4}
    args = {"artifact": str(minilm_artifact), "autoscaling": scaling}
    app = call_user_app_builder_with_args_if_necessary(build_app, args)
    config = app._bound_deployment._deployment_config.autoscaling_config
    assert (config.min_replicas, config.max_replicas) == (1, 3)
    assert config.target_ongoing_requests == 4
