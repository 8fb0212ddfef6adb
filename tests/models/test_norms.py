import pytest
import torch
from torch import nn

from models import EncoderConfig
from models.norms import RMSNorm, make_head_norm, make_norm


def test_rms_norm_is_the_formula() -> None:
    torch.manual_seed(0)
    norm = RMSNorm(6, eps=1e-6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 6) * 4 + 1  # a mean far from zero: RMSNorm must not subtract it
    x64, w64 = x.double(), norm.weight.double()
    expected = x64 / torch.sqrt((x64**2).mean(-1, keepdim=True) + 1e-6) * w64
    torch.testing.assert_close(norm(x).double(), expected, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(norm(x), nn.LayerNorm(6, eps=1e-6)(x) * norm.weight, atol=1e-2)


def test_rms_norm_has_only_a_weight_starting_at_one() -> None:
    norm = RMSNorm(4, eps=1e-6)
    assert list(norm.state_dict()) == ["weight"]
    assert torch.equal(norm.weight, torch.ones(4))


def test_rms_norm_keeps_the_input_dtype() -> None:
    x = torch.randn(2, 5, 8).to(torch.bfloat16)
    assert RMSNorm(8, eps=1e-6).to(torch.bfloat16)(x).dtype == torch.bfloat16


@pytest.mark.parametrize(("norm_type", "kind"), [("layer", nn.LayerNorm), ("rms", RMSNorm)])
def test_make_norm_follows_the_config(norm_type: str, kind: type) -> None:
    norm = make_norm(EncoderConfig(norm_type=norm_type, layer_norm_eps=1e-5))
    assert isinstance(norm, kind) and norm.eps == 1e-5


def test_layer_norm_without_bias_is_the_formula() -> None:
    """ModernBERT's norms: (x - mean) / std · weight, nothing added."""
    torch.manual_seed(0)
    norm = make_norm(EncoderConfig(norm_bias=False, layer_norm_eps=1e-5), features=6)
    assert list(norm.state_dict()) == ["weight"]
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 6) * 3 + 2
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + 1e-5) * norm.weight
    torch.testing.assert_close(norm(x), expected, rtol=1e-5, atol=1e-5)


def test_head_norm_only_when_asked() -> None:
    assert isinstance(make_head_norm(EncoderConfig()), nn.Identity)
    config = EncoderConfig(qk_norm=True, norm_type="rms", d_model=64, n_heads=4, head_dim=24)
    norm = make_head_norm(config)
    assert isinstance(norm, RMSNorm) and norm.weight.shape == (24,)
