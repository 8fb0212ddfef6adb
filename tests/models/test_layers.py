import pytest
import torch

from models import EncoderConfig
from models.embeddings import Embeddings
from models.layers import EncoderLayer

TINY = EncoderConfig(
    vocab_size=50, d_model=16, n_heads=4, n_layers=2, d_ff=32, max_position=32, max_seq_length=32
)


def test_token_type_embedding_is_optional() -> None:
    with_types = Embeddings(TINY).eval()
    without = Embeddings(TINY.replace(type_vocab_size=0)).eval()
    assert with_types.token_type is not None and without.token_type is None
    ids = torch.tensor([[1, 2, 3]])
    assert without(ids).shape == (1, 3, 16)
    # A single segment is type 0 throughout, as a pair's types are before its separator.
    paired = Embeddings(TINY.replace(segment_separator=49)).eval()
    paired.load_state_dict(with_types.state_dict())
    torch.testing.assert_close(with_types(ids), paired(ids))


def _layer(norm: str, activation: str = "gelu") -> EncoderLayer:
    torch.manual_seed(0)
    layer = EncoderLayer(TINY.replace(norm=norm, activation=activation)).eval()
    with torch.no_grad():  # non-trivial norms, so a wrong placement cannot pass by accident
        for norm_module in (layer.norm1, layer.norm2):
            norm_module.weight.uniform_(0.5, 1.5)
            norm_module.bias.uniform_(-0.5, 0.5)
    return layer


@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_post_norm_layer(activation: str) -> None:
    layer = _layer("post", activation)
    x = torch.randn(2, 5, 16)
    h = layer.norm1(x + layer.attention(x))
    expected = layer.norm2(h + layer.ffn(h))
    torch.testing.assert_close(layer(x), expected)


def test_pre_norm_layer() -> None:
    layer = _layer("pre")
    x = torch.randn(2, 5, 16)
    h = x + layer.attention(layer.norm1(x))
    expected = h + layer.ffn(layer.norm2(h))
    torch.testing.assert_close(layer(x), expected)
    assert not torch.allclose(layer(x), _layer("post")(x))


def test_activation_is_configurable() -> None:
    assert isinstance(_layer("post", "relu").ffn.act, torch.nn.ReLU)
    assert isinstance(_layer("post", "gelu").ffn.act, torch.nn.GELU)


def test_dropout_only_in_training() -> None:
    layer = EncoderLayer(TINY.replace(dropout=0.5, attention_dropout=0.5))
    x = torch.randn(2, 5, 16)
    layer.train()
    assert not torch.allclose(layer(x), layer(x))
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))
