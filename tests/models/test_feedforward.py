import pytest
import torch
import torch.nn.functional as F

from models import EncoderConfig
from models.feedforward import FeedForward, GatedFeedForward, make_feed_forward

TINY = EncoderConfig(d_model=8, n_heads=2, d_ff=12)


def _randomise(module: torch.nn.Module) -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()


@pytest.mark.parametrize("activation", ["silu", "gelu", "relu"])
def test_gated_feed_forward_is_the_formula(activation: str) -> None:
    ffn = make_feed_forward(TINY.replace(feed_forward="gated", activation=activation))
    assert isinstance(ffn, GatedFeedForward)
    _randomise(ffn)
    act = {"silu": F.silu, "gelu": F.gelu, "relu": F.relu}[activation]
    x = torch.randn(2, 5, 8)
    gate = x @ ffn.gate.weight.T + ffn.gate.bias  # (B, T, F)
    up = x @ ffn.up.weight.T + ffn.up.bias  # (B, T, F)
    expected = (act(gate) * up) @ ffn.down.weight.T + ffn.down.bias  # (B, T, D)
    torch.testing.assert_close(ffn(x), expected, rtol=1e-5, atol=1e-5)


def test_plain_feed_forward_is_the_formula() -> None:
    ffn = make_feed_forward(TINY)
    assert type(ffn) is FeedForward
    _randomise(ffn)
    x = torch.randn(2, 5, 8)
    expected = F.gelu(x @ ffn.up.weight.T + ffn.up.bias) @ ffn.down.weight.T + ffn.down.bias
    torch.testing.assert_close(ffn(x), expected, rtol=1e-5, atol=1e-5)


def test_state_dict_names() -> None:
    assert sorted(make_feed_forward(TINY).state_dict()) == [
        "down.bias",
        "down.weight",
        "up.bias",
        "up.weight",
    ]
    gated = make_feed_forward(TINY.replace(feed_forward="gated"))
    assert {k.split(".")[0] for k in gated.state_dict()} == {"gate", "up", "down"}


def test_feed_forward_without_biases() -> None:
    """ModernBERT and Qwen3: every projection bias-free, the formula otherwise unchanged."""
    ffn = make_feed_forward(TINY.replace(feed_forward="gated", mlp_bias=False))
    assert sorted(ffn.state_dict()) == ["down.weight", "gate.weight", "up.weight"]
    _randomise(ffn)
    x = torch.randn(2, 5, 8)
    expected = (F.gelu(x @ ffn.gate.weight.T) * (x @ ffn.up.weight.T)) @ ffn.down.weight.T
    torch.testing.assert_close(ffn(x), expected, rtol=1e-5, atol=1e-5)
