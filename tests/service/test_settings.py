from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import ServiceSettings, load_settings


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
