import math

import pytest
import torch
from torch import nn

from models import (
    EncoderConfig,
    MultiHeadAttention,
    attention_bias,
    attention_math,
    attention_sdpa,
)


def test_attention_matches_hand_computation() -> None:
    # One head, two tokens, d_k = 2: scores are 1/sqrt(2) on the diagonal, 0 elsewhere.
    q = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    v = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    a = 1 / math.sqrt(2)
    w_self = math.exp(a) / (math.exp(a) + 1)
    expected = torch.tensor(
        [
            [w_self * 1 + (1 - w_self) * 3, w_self * 2 + (1 - w_self) * 4],
            [(1 - w_self) * 1 + w_self * 3, (1 - w_self) * 2 + w_self * 4],
        ]
    )
    for impl in (attention_math, attention_sdpa):
        torch.testing.assert_close(impl(q, q, v)[0, 0], expected)


def test_padding_keys_get_no_weight() -> None:
    q = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    v = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    bias = attention_bias(torch.tensor([[1, 0]]))
    assert bias.shape == (1, 1, 1, 2)
    for impl in (attention_math, attention_sdpa):
        # Only key 0 is real, so every query reads exactly v[0].
        torch.testing.assert_close(impl(q, q, v, bias)[0, 0], torch.tensor([[1.0, 2.0]] * 2))


@pytest.mark.parametrize("causal", [False, True])
def test_reference_and_fast_path_agree(causal: bool) -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 4, 9, 8) for _ in range(3))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    bias = attention_bias(mask, causal=causal)
    torch.testing.assert_close(
        attention_math(q, k, v, bias), attention_sdpa(q, k, v, bias), atol=1e-6, rtol=1e-5
    )


def test_causal_mask_hides_the_future() -> None:
    bias = attention_bias(None, causal=True, query_len=4)
    assert bias.shape == (1, 1, 4, 4)
    blocked = bias[0, 0] < -1e30
    assert torch.equal(blocked, torch.ones(4, 4, dtype=torch.bool).triu(1))
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 4, 8) for _ in range(3))
    out = attention_math(q, k, v, bias)
    k2, v2 = k.clone(), v.clone()
    k2[..., 2:, :] += 5.0
    v2[..., 2:, :] -= 5.0
    changed = attention_math(q, k2, v2, bias)
    torch.testing.assert_close(out[..., :2, :], changed[..., :2, :])
    assert not torch.allclose(out[..., 2:, :], changed[..., 2:, :])


def test_causal_and_padding_combine() -> None:
    bias = attention_bias(torch.tensor([[1, 1, 0]]), causal=True)
    blocked = bias[0, 0] < -1e30
    expected = torch.tensor([[0, 1, 1], [0, 0, 1], [0, 0, 1]], dtype=torch.bool)
    assert torch.equal(blocked, expected)
    assert torch.isfinite(bias).all()


def test_cross_attention_shapes() -> None:
    mha = MultiHeadAttention(d_model=16, n_heads=4)
    query, memory = torch.randn(2, 5, 16), torch.randn(2, 9, 16)
    bias = attention_bias(torch.ones(2, 9, dtype=torch.long))
    assert mha(query, memory, bias).shape == (2, 5, 16)
    assert mha(memory).shape == (2, 9, 16)


def test_heads_must_divide_d_model() -> None:
    with pytest.raises(ValueError, match=r"d_model \(10\) must be divisible by n_heads \(3\)"):
        MultiHeadAttention(d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="divisible"):
        EncoderConfig(d_model=10, n_heads=3)


@pytest.mark.parametrize("impl", ["math", "sdpa"])
def test_equals_torch_multihead_attention(impl: str) -> None:
    torch.manual_seed(0)
    ours = MultiHeadAttention(d_model=24, n_heads=3, impl=impl).eval()
    theirs = nn.MultiheadAttention(24, 3, batch_first=True).eval()
    with torch.no_grad():
        theirs.in_proj_weight.copy_(
            torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight])
        )
        theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        theirs.out_proj.weight.copy_(ours.out_proj.weight)
        theirs.out_proj.bias.copy_(ours.out_proj.bias)
    query, memory = torch.randn(2, 5, 24), torch.randn(2, 7, 24)
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[0, 4:] = 0
    expected, _ = theirs(query, memory, memory, key_padding_mask=mask == 0)
    torch.testing.assert_close(ours(query, memory, attention_bias(mask)), expected)


def _explicit_attention(
    mha: MultiHeadAttention, x: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """Projections, heads split by hand, each head's q and k normed, K/V heads copied with
    repeat_interleave, math attention."""
    b, t, _ = x.shape
    h, h_kv, dh = mha.n_heads, mha.n_kv_heads, mha.head_dim
    q = mha.q_norm(mha.q_proj(x).view(b, t, h, dh)).transpose(1, 2)  # (B, H, T, Dh)
    k = mha.k_norm(mha.k_proj(x).view(b, t, h_kv, dh)).transpose(1, 2)  # (B, Hkv, T, Dh)
    v = mha.v_proj(x).view(b, t, h_kv, dh).transpose(1, 2)  # (B, Hkv, T, Dh)
    q, k = mha.rotation(q, k)
    k = k.repeat_interleave(h // h_kv, dim=1)  # (B, H, T, Dh)
    v = v.repeat_interleave(h // h_kv, dim=1)  # (B, H, T, Dh)
    y = attention_math(q, k, v, bias).transpose(1, 2).reshape(b, t, h * dh)  # (B, T, H·Dh)
    return mha.out_proj(y)


@pytest.mark.parametrize("impl", ["math", "sdpa"])
@pytest.mark.parametrize("n_kv_heads", [1, 2, 6])
def test_grouped_query_attention_matches_repeated_heads(impl: str, n_kv_heads: int) -> None:
    torch.manual_seed(0)
    mha = MultiHeadAttention(24, 6, impl=impl, n_kv_heads=n_kv_heads).eval()
    assert mha.k_proj.weight.shape == mha.v_proj.weight.shape == (n_kv_heads * 4, 24)
    x = torch.randn(2, 7, 24)
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 4:] = 0
    bias = attention_bias(mask)
    torch.testing.assert_close(mha(x, bias=bias), _explicit_attention(mha, x, bias))


def test_as_many_kv_heads_as_heads_is_todays_attention() -> None:
    torch.manual_seed(0)
    today = MultiHeadAttention(24, 3).eval()
    explicit = MultiHeadAttention(24, 3, n_kv_heads=3).eval()
    explicit.load_state_dict(today.state_dict())
    assert list(explicit.state_dict()) == list(today.state_dict())
    x = torch.randn(2, 5, 24)
    assert torch.equal(explicit(x), today(x))


def test_rotary_attention_rotates_q_and_k() -> None:
    from models.positions import Rotary

    torch.manual_seed(0)
    plain = MultiHeadAttention(16, 4, n_kv_heads=2).eval()
    rotary = MultiHeadAttention(16, 4, n_kv_heads=2, rotation=Rotary(32, 4, 10000.0)).eval()
    rotary.load_state_dict(plain.state_dict())  # the tables are not saved
    x = torch.randn(1, 6, 16)
    torch.testing.assert_close(rotary(x), _explicit_attention(rotary, x, None))
    assert not torch.allclose(rotary(x), plain(x), atol=1e-4)


def test_kv_heads_must_divide_heads() -> None:
    with pytest.raises(ValueError, match=r"n_kv_heads \(4\) must divide n_heads \(6\)"):
        MultiHeadAttention(d_model=24, n_heads=6, n_kv_heads=4)


def _rms_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def test_qwen3_style_heads_wider_than_the_stream_normed_before_rotation() -> None:
    """Qwen3: 4 heads × 24 features over a 64-wide stream, RMSNorm per head of q and k, no
    biases; the norm comes before the rotation (rotating first would give other scores)."""
    from models.norms import RMSNorm
    from models.positions import Rotary

    torch.manual_seed(0)
    mha = MultiHeadAttention(
        64,
        4,
        impl="math",
        n_kv_heads=2,
        head_dim=24,
        rotation=Rotary(32, 24, 10000.0),
        head_norm=lambda: RMSNorm(24, eps=1e-6),
        bias=False,
    ).eval()
    with torch.no_grad():
        mha.q_norm.weight.uniform_(0.5, 1.5)
        mha.k_norm.weight.uniform_(0.5, 1.5)
    assert (mha.q_proj.weight.shape, mha.k_proj.weight.shape) == ((96, 64), (48, 64))
    assert mha.out_proj.weight.shape == (64, 96)
    assert sorted(mha.state_dict()) == [
        "k_norm.weight",
        "k_proj.weight",
        "out_proj.weight",
        "q_norm.weight",
        "q_proj.weight",
        "v_proj.weight",
    ]
    x = torch.randn(2, 7, 64)
    torch.testing.assert_close(mha(x), _explicit_attention(mha, x, None))
    # The norm by hand: each head's 24 features on their own.
    q = mha.q_proj(x).view(2, 7, 4, 24)  # (B, T, H, Dh)
    torch.testing.assert_close(
        mha.q_norm(q), _rms_reference(q, mha.q_norm.weight, 1e-6), rtol=1e-5, atol=1e-5
    )
    unnormed = MultiHeadAttention(64, 4, impl="math", n_kv_heads=2, head_dim=24, bias=False)
    unnormed.load_state_dict(mha.state_dict(), strict=False)
    unnormed.rotation = mha.rotation
    assert not torch.allclose(unnormed.eval()(x), mha(x), atol=1e-3)


def test_head_dim_lifts_the_divisibility_rule() -> None:
    assert MultiHeadAttention(10, 3, head_dim=4)(torch.randn(1, 2, 10)).shape == (1, 2, 10)
    with pytest.raises(ValueError, match="or set head_dim"):
        EncoderConfig(d_model=10, n_heads=3)
    assert EncoderConfig(d_model=10, n_heads=3, head_dim=4).head_size == 4
