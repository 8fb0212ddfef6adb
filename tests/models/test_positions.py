import math

import pytest
import torch

from models import EncoderConfig
from models.embeddings import Embeddings
from models.positions import (
    LearnedPositions,
    Rotary,
    apply_rotary,
    make_positions,
    make_rotation,
    rotary_tables,
    sinusoidal_table,
)

TINY = EncoderConfig(
    vocab_size=50, d_model=16, n_heads=4, n_layers=2, d_ff=32, max_position=32, max_seq_length=32
)


def test_sinusoidal_values() -> None:
    table = sinusoidal_table(50, 8)
    assert table.shape == (50, 8)
    torch.testing.assert_close(table[0], torch.tensor([0.0, 1.0] * 4))
    for pos, i in [(1, 0), (7, 1), (49, 3)]:
        angle = pos / 10000 ** (2 * i / 8)
        assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
        assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_positions_are_fixed_and_not_saved() -> None:
    emb = Embeddings(TINY.replace(positional="sinusoidal"))
    assert not any("sinusoid" in name or "table" in name for name in emb.state_dict())
    assert not any(p.shape == (32, 16) for p in emb.parameters())


def test_rotary_adds_nothing_to_the_embeddings() -> None:
    rotary = TINY.replace(positional="rotary")
    assert make_positions(rotary)(x := torch.randn(2, 5, 16)) is x
    assert not any(name.startswith("position") for name in Embeddings(rotary).state_dict())


def _complex_reference(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Feature pair (i, i + Dh/2) as the complex number a + ib, times e^(i·pos·θ_i)."""
    *_, t, dh = x.shape
    half = dh // 2
    z = torch.complex(x[..., :half].double(), x[..., half:].double())  # (..., T, Dh/2)
    freq = theta ** (-torch.arange(half, dtype=torch.float64) * 2 / dh)  # (Dh/2,)
    angle = torch.arange(t, dtype=torch.float64)[:, None] * freq  # (T, Dh/2)
    z = z * torch.polar(torch.ones_like(angle), angle)
    return torch.cat((z.real, z.imag), dim=-1)  # (..., T, Dh)


@pytest.mark.parametrize("theta", [10000.0, 500.0])
def test_rotary_is_complex_multiplication(theta: float) -> None:
    torch.manual_seed(0)
    q, k = torch.randn(2, 4, 9, 8), torch.randn(2, 2, 7, 8)  # fewer K heads, shorter keys
    cos, sin = rotary_tables(16, 8, theta)
    rq, rk = apply_rotary(q, k, cos, sin)
    torch.testing.assert_close(rq.double(), _complex_reference(q, theta), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rk.double(), _complex_reference(k, theta), rtol=1e-5, atol=1e-5)


def test_rotary_scores_depend_only_on_relative_position() -> None:
    torch.manual_seed(0)
    rotary = Rotary(64, 8, 10000.0)
    q, k = torch.randn(1, 2, 10, 8), torch.randn(1, 2, 10, 8)
    rq, rk = rotary(q, k)
    scores = rq @ rk.transpose(-2, -1)  # (1, 2, 10, 10)
    shift = 17  # the same tokens, 17 positions later
    pad = torch.zeros(1, 2, shift, 8)
    sq, sk = rotary(torch.cat((pad, q), dim=2), torch.cat((pad, k), dim=2))
    shifted = sq[:, :, shift:] @ sk[:, :, shift:].transpose(-2, -1)
    torch.testing.assert_close(shifted, scores, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(scores, q @ k.transpose(-2, -1), atol=1e-3), "must rotate"
    torch.testing.assert_close(rq.norm(dim=-1), q.norm(dim=-1))  # a rotation keeps lengths


def test_rotary_needs_an_even_head_dim() -> None:
    with pytest.raises(ValueError, match="even head_dim"):
        Rotary(16, 7, 10000.0)


def test_learned_positions_start_at_the_offset() -> None:
    """RoBERTa/MPNet: token i reads row offset + i (fairseq numbers from pad_token_id + 1)."""
    table = make_positions(TINY.replace(position_offset=2, max_seq_length=30))
    assert isinstance(table, LearnedPositions) and table.offset == 2
    x = torch.zeros(1, 5, 16)
    torch.testing.assert_close(table(x)[0], table.weight[2:7])
    bert = make_positions(TINY)
    torch.testing.assert_close(bert(x)[0], bert.weight[:5])


def test_local_layers_rotate_by_their_own_base() -> None:
    config = TINY.replace(positional="rotary", rope_theta=160000.0, local_rope_theta=10000.0)
    global_rotation, local_rotation = make_rotation(config), make_rotation(config, local=True)
    torch.testing.assert_close(local_rotation.cos, rotary_tables(32, 4, 10000.0)[0])
    torch.testing.assert_close(global_rotation.cos, rotary_tables(32, 4, 160000.0)[0])
    same = make_rotation(config.replace(local_rope_theta=None), local=True)
    torch.testing.assert_close(same.cos, global_rotation.cos)
