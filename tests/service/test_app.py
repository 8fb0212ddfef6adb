"""The application builder, as ``serve run`` / ``serve deploy`` call it."""

from pathlib import Path

from ray.serve import Application
from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

from service.app import build_app
from service.settings import ServiceSettings


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


def test_several_models_reach_the_replicas_with_their_artifacts_resolved(
    tmp_path: Path, monkeypatch
) -> None:
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path)
    models = [{"artifact": "here", "name": "e"}, {"artifact": "/on/the/nodes"}]
    app = call_user_app_builder_with_args_if_necessary(build_app, {"models": models})
    settings = app._bound_deployment.init_args[0]
    assert settings["models"] == [
        {"artifact": str(tmp_path / "here"), "name": "e"},
        {"artifact": "/on/the/nodes", "name": None},
    ]
    assert "artifact" not in settings  # the replica's settings would refuse it beside models
    replica = ServiceSettings.model_validate(settings)  # what a replica's constructor does
    assert [m.artifact for m in replica.served_models] == [tmp_path / "here", Path("/on/the/nodes")]


def test_autoscaling_replaces_a_fixed_replica_count(minilm_artifact: Path) -> None:
    scaling = {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 4}
    args = {"artifact": str(minilm_artifact), "autoscaling": scaling}
    app = call_user_app_builder_with_args_if_necessary(build_app, args)
    config = app._bound_deployment._deployment_config.autoscaling_config
    assert (config.min_replicas, config.max_replicas) == (1, 3)
    assert config.target_ongoing_requests == 4


def test_batching_limits_change_without_restarting_replicas(
    serve_url: str, minilm_artifact: Path
) -> None:
    """A Serve config whose user_config changes is applied to the running replicas.

    This is the declarative path of ``serve deploy config.yaml`` (imperative ``serve.run``
    always replaces replicas). The app gets its own name and route prefix.
    """
    import httpx
    from ray import serve
    from ray.serve.schema import ServeDeploySchema

    def config(max_batch_size: int) -> ServeDeploySchema:
        app = {
            "name": "reconfigured",
            "route_prefix": "/reconfigured",
            "import_path": "service.app:build_app",
            "args": {"artifact": str(minilm_artifact), "app_name": "reconfigured"},
            "deployments": [
                {"name": "EmbeddingServer", "user_config": {"max_batch_size": max_batch_size}}
            ],
        }
        return ServeDeploySchema.model_validate({"applications": [app]})

    client = serve.context._get_global_client()
    try:
        client.deploy_apps(config(8), _blocking=True)
        with httpx.Client(base_url=f"{serve_url}/reconfigured", timeout=60) as http:
            before = http.get("/info").json()
            assert before["batching"]["max_batch_size"] == 8
            client.deploy_apps(config(3), _blocking=True)
            after = http.get("/info").json()
            assert after["batching"]["max_batch_size"] == 3
            assert after["process"] == before["process"], "the replica was replaced"
            assert http.post("/embed", json={"inputs": "still serving"}).status_code == 200
    finally:
        serve.delete("reconfigured")
