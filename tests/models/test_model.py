from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from models import (
    CheckpointError,
    EncoderConfig,
    SentenceEncoder,
    build_model,
    load_model,
    save_model,
)

TINY = EncoderConfig(
    vocab_size=100, d_model=32, n_heads=4, n_layers=2, d_ff=64, max_position=64, max_seq_length=64
)
VARIANTS = [
    TINY,
    TINY.replace(positional="sinusoidal", norm="pre", activation="relu", pooling="cls"),
    TINY.replace(pooling="max", type_vocab_size=0, attention="math"),
]
# Each new option at least once, alone and in the combination a Qwen3/Llama-style model uses.
NEW_OPTIONS = {
    "rotary": TINY.replace(positional="rotary", rope_theta=500.0),
    "rms": TINY.replace(norm_type="rms", layer_norm_eps=1e-6),
    "gated-silu": TINY.replace(feed_forward="gated", activation="silu"),
    "gqa": TINY.replace(n_kv_heads=2, attention="math"),
    "llama-like": TINY.replace(positional="rotary", norm="pre", norm_type="rms").replace(
        feed_forward="gated", activation="silu", n_kv_heads=1, type_vocab_size=0
    ),
    # The families of issue 16, each with the options that make it.
    "roberta-like": TINY.replace(position_offset=2, max_seq_length=62, type_vocab_size=1),
    "mpnet-like": TINY.replace(position_offset=2, max_seq_length=62, type_vocab_size=0).replace(
        relative_buckets=32
    ),
    "qwen3-like": TINY.replace(positional="rotary", norm="pre", norm_type="rms")
    .replace(feed_forward="gated", activation="silu", n_kv_heads=2, type_vocab_size=0, head_dim=12)
    .replace(
        causal=True,
        qk_norm=True,
        attention_bias=False,
        mlp_bias=False,
        embedding_norm=False,
        pooling="last",
    ),
    "modernbert-like": TINY.replace(positional="rotary", norm="pre", feed_forward="gated")
    .replace(type_vocab_size=0, attention_bias=False, mlp_bias=False, norm_bias=False)
    .replace(
        first_attention_norm=False,
        local_window=4,
        global_every=2,
        n_layers=3,
        local_rope_theta=500.0,
        rope_theta=16000.0,
    ),
}


def test_forward_shapes() -> None:
    model = build_model(TINY)
    ids = torch.randint(1, 100, (3, 10))
    tokens, sentence = model(ids, torch.ones_like(ids))
    assert tokens.shape == (3, 10, 32)
    assert sentence.shape == (3, 32)
    assert not torch.allclose(sentence.norm(dim=-1), torch.ones(3)), "must not be normalised"


def _assert_padding_does_not_leak(model: SentenceEncoder) -> None:
    short = torch.randint(1, 100, (1, 6))
    alone_tokens, alone = model(short, torch.ones_like(short))
    batch = torch.randint(1, 100, (4, 40))  # longer neighbours force padding on `short`
    mask = torch.ones_like(batch)
    batch[2, :6], batch[2, 6:], mask[2, 6:] = short[0], 0, 0
    tokens, pooled = model(batch, mask)
    assert (pooled[2] - alone[0]).abs().max() <= 1e-5
    assert (tokens[2, :6] - alone_tokens[0]).abs().max() <= 1e-5


@pytest.mark.parametrize("pooling", ["mean", "cls", "max", "last"])
@pytest.mark.parametrize("attention", ["sdpa", "math"])
def test_padding_does_not_leak(pooling: str, attention: str) -> None:
    torch.manual_seed(0)
    _assert_padding_does_not_leak(build_model(TINY.replace(pooling=pooling, attention=attention)))


@pytest.mark.parametrize("config", NEW_OPTIONS.values(), ids=NEW_OPTIONS.keys())
def test_new_options_run_with_padding(config: EncoderConfig) -> None:
    torch.manual_seed(0)
    model = build_model(config)
    _assert_padding_does_not_leak(model)
    ids = torch.randint(1, 100, (2, 9))
    before = model(ids, torch.ones_like(ids))[1]
    with torch.no_grad():  # every part takes part: perturbing any weight moves the output
        for name, param in model.named_parameters():
            if name.endswith("k_proj.bias") and config.positional != "rotary":
                continue  # q·(k + b) shifts every score of a query alike: softmax ignores it
            saved = param.clone()
            param.add_(torch.randn_like(param))
            assert not torch.allclose(model(ids, torch.ones_like(ids))[1], before), name
            param.copy_(saved)


@pytest.mark.parametrize("name", ["mpnet-like", "qwen3-like", "modernbert-like"])
def test_new_families_sdpa_and_math_agree(name: str) -> None:
    torch.manual_seed(0)
    a = build_model(NEW_OPTIONS[name])
    b = build_model(NEW_OPTIONS[name].replace(attention="math"))
    b.load_state_dict(a.state_dict())
    ids = torch.randint(1, 100, (3, 20))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 1:] = 0
    torch.testing.assert_close(a(ids, mask), b(ids, mask), atol=1e-5, rtol=1e-5)


def test_last_token_pooling_left_or_right_padded() -> None:
    from models.pooling import pool

    tokens = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)  # (B, T, D)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])
    torch.testing.assert_close(pool(tokens, right, "last"), tokens[[0, 1], [1, 3]])
    torch.testing.assert_close(pool(tokens, left, "last"), tokens[[0, 1], [3, 3]])


def test_sdpa_and_math_models_agree() -> None:
    torch.manual_seed(0)
    a = build_model(TINY)
    b = build_model(TINY.replace(attention="math"))
    b.load_state_dict(a.state_dict())
    ids = torch.randint(1, 100, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    torch.testing.assert_close(a(ids, mask), b(ids, mask), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "config",
    [*VARIANTS, *NEW_OPTIONS.values()],
    ids=["bert", "sinusoidal-pre-relu-cls", "max-math", *NEW_OPTIONS],
)
def test_save_load_round_trip(config: EncoderConfig, tmp_path: Path) -> None:
    model = build_model(config)
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.config == config
    ids = torch.randint(1, 100, (2, 9))
    torch.testing.assert_close(loaded(ids, torch.ones_like(ids)), model(ids, torch.ones_like(ids)))


def test_state_dict_names_of_the_default_path() -> None:
    """Folders from save_model and the BERT mapping rely on these names."""
    names = set(build_model(TINY.replace(n_layers=1)).state_dict())
    expected = {"embeddings.norm.weight", "embeddings.norm.bias"}
    expected |= {f"embeddings.{e}.weight" for e in ("token", "position", "token_type")}
    for part in ("attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.out_proj"):
        expected |= {f"layers.0.{part}.weight", f"layers.0.{part}.bias"}
    for part in ("norm1", "norm2", "ffn.up", "ffn.down"):
        expected |= {f"layers.0.{part}.weight", f"layers.0.{part}.bias"}
    assert names == expected
    pre = set(build_model(TINY.replace(n_layers=1, norm="pre")).state_dict())
    assert pre - names == {"final_norm.weight", "final_norm.bias"}
    gated = set(build_model(TINY.replace(n_layers=1, feed_forward="gated")).state_dict())
    assert gated - names == {"layers.0.ffn.gate.weight", "layers.0.ffn.gate.bias"}


def test_load_rejects_missing_unexpected_and_misshaped_weights(tmp_path: Path) -> None:
    folder = save_model(build_model(TINY), tmp_path / "m")
    weights = folder / "encoder.safetensors"
    good = load_file(str(weights))

    del_one = {k: v for k, v in good.items() if k != "layers.1.ffn.up.bias"}
    save_file(del_one, str(weights))
    with pytest.raises(CheckpointError, match=r"missing \['layers.1.ffn.up.bias'\]"):
        load_model(folder)

    save_file({**good, "layers.9.extra": torch.zeros(1)}, str(weights))
    with pytest.raises(CheckpointError, match="unexpected"):
        load_model(folder)

    save_file({**good, "layers.0.ffn.up.bias": torch.zeros(65)}, str(weights))
    with pytest.raises(CheckpointError, match=r"wrong shapes.*layers.0.ffn.up.bias"):
        load_model(folder)

    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model(folder)


def test_config_validation_says_what_to_change() -> None:
    with pytest.raises(ValueError, match="pooling must be one of"):
        TINY.replace(pooling="sum")
    with pytest.raises(ValueError, match="raise max_position"):
        TINY.replace(max_seq_length=65)
    with pytest.raises(ValueError, match="unknown encoder config keys"):
        EncoderConfig.from_dict({**TINY.to_dict(), "colour": "blue"})
