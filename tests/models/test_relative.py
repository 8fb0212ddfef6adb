import math

import pytest
import torch
from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

from models import EncoderConfig
from models.relative import (
    NoRelativeBias,
    RelativePositionBias,
    make_relative_bias,
    relative_bucket,
)


def _bucket(relative: int, n_buckets: int = 32, max_distance: int = 128) -> int:
    """T5's bucket of one distance (key - query), written out."""
    half = n_buckets // 2
    exact = half // 2
    base = half if relative > 0 else 0
    d = abs(relative)
    if d < exact:
        return base + d
    far = exact + int(math.log(d / exact) / math.log(max_distance / exact) * (half - exact))
    return base + min(far, half - 1)


@pytest.mark.parametrize(
    ("relative", "bucket"),
    # 32 buckets, max distance 128: 0-7 exact before/at the query, 16-23 after it; then
    # 8 + ⌊log(d / 8) / log(16) · 8⌋, capped at 15 (31 after).
    [(0, 0), (-1, 1), (1, 17), (-7, 7), (7, 23), (-8, 8), (-16, 10), (-40, 12), (40, 28)]
    + [(-127, 15), (-128, 15), (-1000, 15), (1000, 31)],
)
def test_hand_picked_distances(relative: int, bucket: int) -> None:
    assert _bucket(relative) == bucket
    assert relative_bucket(torch.tensor([relative]), 32, 128).item() == bucket


def test_equals_the_written_out_reference_and_hugging_face() -> None:
    relative = torch.arange(-300, 301)
    ours = relative_bucket(relative, 32, 128)
    assert ours.tolist() == [_bucket(r) for r in relative.tolist()]
    assert torch.equal(ours, MPNetEncoder.relative_position_bucket(relative, 32, 128))
    assert ours.tolist() != [_bucket(r, 16, 64) for r in relative.tolist()]
    assert relative_bucket(relative, 16, 64).tolist() == [_bucket(r, 16, 64) for r in relative]


def test_scores_read_the_table_by_bucket() -> None:
    torch.manual_seed(0)
    bias = RelativePositionBias(32, 3, 128)
    scores = bias.scores(20)
    assert scores.shape == (1, 3, 20, 20)
    for i, j in [(0, 0), (3, 1), (1, 3), (0, 19), (19, 0)]:
        expected = bias.table.weight[_bucket(j - i)]  # (H,)
        torch.testing.assert_close(scores[0, :, i, j], expected)
    padding = torch.zeros(2, 1, 1, 20)
    torch.testing.assert_close(bias(padding, 20), padding + scores)


def test_made_only_when_configured() -> None:
    assert isinstance(make_relative_bias(EncoderConfig()), NoRelativeBias)
    made = make_relative_bias(EncoderConfig(relative_buckets=32))
    assert isinstance(made, RelativePositionBias) and made.table.weight.shape == (32, 12)
    with pytest.raises(ValueError, match="even count"):
        EncoderConfig(relative_buckets=31)
