from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import DEFAULT_ARTIFACT, ModelEntry, ServiceSettings, load_settings


def test_defaults() -> None:
    settings = load_settings(environ={})
    assert settings == ServiceSettings()
    assert settings.host == "127.0.0.1" and settings.port == 8000
    assert settings.max_body_bytes == 8 * 1024 * 1024 and settings.max_inputs == 2048
    assert settings.max_ongoing_requests >= settings.batching.max_batch_size


def test_file_then_env_then_cli(tmp_path: Path) -> None:
    config = tmp_path / "embedserve.yaml"
    config.write_text("port: 9000\nnum_replicas: 3\nbatching:\n  max_batch_size: 16\n")
    env = {"EMBEDSERVE_NUM_REPLICAS": "2", "EMBEDSERVE_BATCHING__BATCH_WAIT_TIMEOUT_S": "0.01"}
    settings = load_settings(config, {"port": 9100, "host": None}, env)
    assert settings.port == 9100  # CLI beats the file
    assert settings.num_replicas == 2  # env beats the file
    assert settings.batching.max_batch_size == 16  # file beats defaults, nested merge
    assert settings.batching.batch_wait_timeout_s == 0.01
    assert settings.host == "127.0.0.1"  # an unset flag does not override


def test_cache_mb_is_on_by_default_and_set_like_every_setting(tmp_path: Path) -> None:
    assert load_settings(environ={}).cache_mb == 64
    config = tmp_path / "embedserve.yaml"
    config.write_text("cache_mb: 16\n")
    assert load_settings(config, environ={}).cache_mb == 16
    assert load_settings(config, environ={"EMBEDSERVE_CACHE_MB": "0"}).cache_mb == 0
    assert load_settings(config, {"cache_mb": 0.5}, {"EMBEDSERVE_CACHE_MB": "0"}).cache_mb == 0.5


def test_api_keys_from_env_are_secret() -> None:
    settings = load_settings(environ={"EMBEDSERVE_API_KEY": "k1, k2"})
    assert [k.get_secret_value() for k in settings.api_keys] == ["k1", "k2"]
    assert "k1" not in repr(settings)


@pytest.mark.parametrize(
    "bad",
    [
        {"port": 70000},
        {"num_replicas": 0},
        {"max_ongoing_requests": 1},
        {"colour": "blue"},
        {"batching": {"max_batch_size": 0}},
        {"cache_mb": -1},
        {"startup_timeout_s": float("inf")},
        {"batching": {"max_queue_wait_s": float("nan")}},
        {"autoscaling": {"look_back_period_s": float("inf")}},
        {"autoscaling": {"look_back_period_s": 0}},
    ],
)
def test_invalid_settings_are_rejected(bad: dict) -> None:
    with pytest.raises(ValidationError):
        load_settings(cli=bad, environ={})


def test_config_file_must_be_a_mapping(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        load_settings(config, environ={})


def secrets(settings: ServiceSettings) -> list[str]:
    return [key.get_secret_value() for key in settings.api_keys]


def test_api_key_file_adds_its_keys_one_a_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# rotated 2026-01\nfile-key-1\n\n   file-key-2  \n  # old: not-a-key\n")
    settings = load_settings(cli={"api_keys": ["flag-key"], "api_key_file": keys}, environ={})
    assert secrets(settings) == ["flag-key", "file-key-1", "file-key-2"]
    assert "file-key" not in repr(settings) and "file-key" not in str(settings.model_dump())
    # build_app loads the launcher's settings again: the file's keys are not listed twice.
    again = load_settings(cli=settings.model_dump(exclude_unset=True), environ={})
    assert secrets(again) == secrets(settings)


def test_api_key_file_follows_file_env_cli_order(tmp_path: Path) -> None:
    files = {}
    for name in ("yaml", "env", "cli"):
        files[name] = tmp_path / f"{name}.keys"
        files[name].write_text(f"{name}-key\n")
    config = tmp_path / "embedserve.yaml"
    config.write_text(f"api_key_file: {files['yaml']}\n")
    env = {"EMBEDSERVE_API_KEY_FILE": str(files["env"]), "EMBEDSERVE_API_KEY": "env-inline"}
    assert secrets(load_settings(config, environ={})) == ["yaml-key"]
    assert secrets(load_settings(config, environ=env)) == ["env-inline", "env-key"]
    cli = {"api_key_file": files["cli"]}
    assert secrets(load_settings(config, cli, environ=env)) == ["env-inline", "cli-key"]


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot be read"), ("\n# only a comment\n   \n", "holds no keys")],
)
def test_an_unusable_api_key_file_is_one_line_naming_the_file(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "keys"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=message) as raised:
        load_settings(cli={"api_key_file": path}, environ={})
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


def test_a_directory_is_not_a_key_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot be read"):
        load_settings(cli={"api_key_file": tmp_path}, environ={})


def test_broken_yaml_is_one_line_without_the_files_text(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("port: 9000\napi_keys: [sk-not-to-be-shown\n")
    with pytest.raises(ValueError, match="not valid YAML at line 3") as raised:
        load_settings(config, environ={})
    assert "sk-not-to-be-shown" not in str(raised.value) and "\n" not in str(raised.value)


def test_one_artifact_is_the_one_served_model_under_its_name() -> None:
    settings = load_settings(cli={"artifact": Path("a"), "model_name": "mine"}, environ={})
    assert settings.served_models == [ModelEntry(artifact=Path("a"), name="mine")]
    assert load_settings(environ={}).served_models == [ModelEntry(artifact=DEFAULT_ARTIFACT)]


def test_models_from_the_file_or_the_environment_in_their_order(tmp_path: Path) -> None:
    config = tmp_path / "embedserve.yaml"
    config.write_text("models:\n  - artifact: /a/embedder\n  - {artifact: /a/reranker, name: r}\n")
    expected = [ModelEntry(artifact=Path("/a/embedder")), ModelEntry(artifact=Path("/a/reranker"))]
    from_file = load_settings(config, environ={})
    assert from_file.served_models == [expected[0], expected[1].model_copy(update={"name": "r"})]
    from_env = load_settings(environ={"EMBEDSERVE_MODELS": "/a/embedder, /a/reranker"})
    assert from_env.served_models == expected


@pytest.mark.parametrize(
    ("cli", "message"),
    [
        ({"artifact": Path("a")}, "drop artifact"),
        ({"model_name": "x"}, "drop model_name"),
        ({"model": "all-MiniLM-L6-v2"}, "drop model"),
        ({"models": [{"artifact": "b", "name": "x"}, {"artifact": "c", "name": "x"}]}, "same name"),
        ({"models": [{"artifact": "b", "name": ""}]}, "at least 1 character"),
    ],
)
def test_models_leave_no_doubt_about_what_is_served(cli: dict, message: str) -> None:
    layers = {"models": [{"artifact": "b"}, {"artifact": "c"}], **cli}
    with pytest.raises(ValidationError, match=message):
        load_settings(cli=layers, environ={})
