import pytest
import torch

from models import EncoderConfig, attention_bias
from models.masks import AttentionBiases, window_bias

NEG = torch.finfo(torch.float32).min


def _window_reference(length: int, window: int) -> torch.Tensor:
    """1 where query i may read key j: within window // 2 either side, inclusive."""
    allowed = torch.zeros(length, length, dtype=torch.bool)
    for i in range(length):
        for j in range(length):
            allowed[i, j] = abs(i - j) <= window // 2
    return allowed


@pytest.mark.parametrize(("length", "window"), [(10, 4), (7, 5), (3, 128)])
def test_sliding_window_mask(length: int, window: int) -> None:
    bias = window_bias(length, window, torch.float32, torch.device("cpu"))
    assert bias.shape == (1, 1, length, length)
    assert torch.equal(bias[0, 0] == 0, _window_reference(length, window))
    assert torch.equal(bias[0, 0] != 0, bias[0, 0] == NEG)


def test_bert_gets_the_padding_bias_alone() -> None:
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    biases = AttentionBiases(EncoderConfig())(mask, torch.float32)
    assert torch.equal(biases["global"], attention_bias(mask))
    assert biases["local"] is biases["global"]
    assert list(AttentionBiases(EncoderConfig()).state_dict()) == []


def test_local_bias_is_padding_and_window_without_overflow() -> None:
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0]])
    biases = AttentionBiases(EncoderConfig(local_window=4))(mask, torch.float32)
    local = biases["local"][0, 0]  # (T, T)
    allowed = _window_reference(8, 4) & mask.bool()[0][None, :]
    assert torch.equal(local == 0, allowed)
    assert torch.isfinite(local).all()  # padding + window: clamped, not -inf
    assert biases["global"].shape == (1, 1, 1, 8)


def test_causal_and_relative_parts() -> None:
    mask = torch.tensor([[1, 1, 1, 0]])
    config = EncoderConfig(causal=True, relative_buckets=8, relative_max_distance=16)
    biases = AttentionBiases(config)
    global_bias = biases(mask, torch.float32)["global"]  # (1, H, T, T)
    assert global_bias.shape == (1, 12, 4, 4)
    blocked = global_bias[0, 0] < -1e30
    expected = torch.ones(4, 4, dtype=torch.bool).triu(1) | ~mask.bool()[0][None, :]
    assert torch.equal(blocked, expected)
    relative = biases.relative.scores(4)  # (1, H, T, T)
    torch.testing.assert_close(
        global_bias[~blocked[None, None].expand_as(global_bias)],
        relative[~blocked[None, None].expand_as(relative)],
    )
