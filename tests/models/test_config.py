import pytest

from models import EncoderConfig


def test_defaults_describe_all_minilm_l6_v2() -> None:
    config = EncoderConfig()
    assert (config.positional, config.norm_type, config.feed_forward) == (
        "learned",
        "layer",
        "plain",
    )
    assert config.n_kv_heads is None and config.activation == "gelu"


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("positional", "alibi", "('learned', 'sinusoidal', 'rotary')"),
        ("norm_type", "batch", "('layer', 'rms')"),
        ("feed_forward", "moe", "('plain', 'gated')"),
        ("activation", "tanh", "('gelu', 'relu', 'silu')"),
        ("attention", "flash", "('sdpa', 'math')"),
    ],
)
def test_unknown_choices_list_the_allowed_ones(field: str, value: str, allowed: str) -> None:
    with pytest.raises(ValueError) as caught:
        EncoderConfig(**{field: value})
    assert str(caught.value) == f"{field} must be one of {allowed}, got {value!r}"


def test_n_kv_heads_must_divide_n_heads() -> None:
    with pytest.raises(ValueError) as caught:
        EncoderConfig(n_kv_heads=5)
    message = str(caught.value)
    assert "n_kv_heads (5) must divide n_heads (12)" in message
    assert "set n_kv_heads to one of [1, 2, 3, 4, 6, 12], or None" in message
    with pytest.raises(ValueError, match="n_kv_heads"):
        EncoderConfig(n_kv_heads=0)
    assert EncoderConfig(n_kv_heads=4).n_kv_heads == 4


def test_rotary_needs_an_even_head_dim() -> None:
    with pytest.raises(ValueError) as caught:
        EncoderConfig(d_model=60, n_heads=4, positional="rotary")
    assert "even head_dim (d_model / n_heads = 60 / 4 = 15); change d_model or n_heads" in str(
        caught.value
    )
    EncoderConfig(d_model=60, n_heads=4)  # learned positions do not care


def test_rope_theta_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rope_theta must be positive"):
        EncoderConfig(positional="rotary", rope_theta=0.0)


def test_old_config_files_load_with_todays_behaviour() -> None:
    old = EncoderConfig().to_dict()
    for new_field in ("n_kv_heads", "norm_type", "feed_forward", "rope_theta"):
        del old[new_field]
    assert EncoderConfig.from_dict(old) == EncoderConfig()
