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
    assert (config.head_dim, config.position_offset, config.relative_buckets) == (None, 0, 0)
    assert not (config.causal or config.qk_norm) and config.local_window is None
    assert config.attention_bias and config.mlp_bias and config.norm_bias
    assert config.embedding_norm and config.first_attention_norm
    assert config.head_size == 32 and all(config.is_global(i) for i in range(6))


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
    issue_15 = EncoderConfig().to_dict()  # a folder saved before the families of issue 16
    for new_field in ("head_dim", "position_offset", "relative_buckets", "causal", "qk_norm"):
        del issue_15[new_field]
    for new_field in ("attention_bias", "mlp_bias", "norm_bias", "local_window", "global_every"):
        del issue_15[new_field]
    assert EncoderConfig.from_dict(issue_15) == EncoderConfig()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"position_offset": 2}, r"1..max_position \(512\) - position_offset \(2\); raise"),
        ({"position_offset": -1}, "position_offset must be >= 0"),
        ({"head_dim": 0}, "head_dim must be positive"),
        ({"relative_buckets": 7}, "relative_buckets must be 0 .* or an even count"),
        ({"relative_buckets": 32, "relative_max_distance": 8}, "must exceed the exact buckets"),
        ({"local_window": 1}, "local_window must be at least 2"),
        ({"global_every": 0}, "global_every must be >= 1"),
        ({"local_rope_theta": -1.0}, "local_rope_theta must be positive"),
        ({"positional": "rotary", "head_dim": 5}, r"even head_dim \(head_dim = 5\)"),
    ],
)
def test_new_fields_say_what_to_change(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EncoderConfig(max_seq_length=512, **changes)


def test_global_layers_every_n_from_layer_0() -> None:
    config = EncoderConfig(local_window=8, global_every=3, n_layers=7)
    assert [config.is_global(i) for i in range(7)] == [1, 0, 0, 1, 0, 0, 1]
    assert all(EncoderConfig(global_every=3).is_global(i) for i in range(6))  # no window


def test_the_task_follows_the_label_count() -> None:
    assert [EncoderConfig(num_labels=n).task for n in (0, 1, 3)] == [
        "embedding",
        "rerank",
        "classify",
    ]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_labels": -1}, "num_labels must be 0 .an embedder."),
        ({"segment_separator": 3, "type_vocab_size": 1}, r"two token types \(type_vocab_size"),
        ({"segment_separator": 40000}, "inside the vocabulary"),
    ],
)
def test_head_fields_say_what_to_change(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EncoderConfig(**changes)
