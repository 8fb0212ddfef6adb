from pathlib import Path

import pytest
import torch
from transformers import MPNetConfig, MPNetModel

from models import CheckpointError
from models.families import SentenceSettings
from models.families.mpnet import FAMILY as MPNET
from models.relative import RelativePositionBias

from . import parity

PAD = 1  # MPNet's padding index, fixed by Hugging Face whatever the config says


@pytest.fixture(scope="module")
def hf() -> MPNetModel:
    config = MPNetConfig(
        **parity.TINY, max_position_embeddings=66, relative_attention_num_buckets=32
    )
    model = parity.tiny_hf(lambda: MPNetModel(config, add_pooling_layer=True))
    with torch.no_grad():  # scores large enough that a misplaced bucket changes the output
        model.encoder.relative_attention_bias.weight.normal_(0.0, 1.0)
    return model


def test_matches_transformers(hf: MPNetModel, tmp_path: Path) -> None:
    ours = parity.ours_from_hf(hf, tmp_path, "mean")
    config = ours.config
    assert (config.position_offset, config.type_vocab_size, config.relative_buckets) == (2, 0, 32)
    assert config.max_seq_length == 64
    parity.assert_matches_hf(hf, ours, parity.padded_batches(PAD), ("mean", "cls"))


def test_the_relative_bias_takes_part(hf: MPNetModel, tmp_path: Path) -> None:
    ours = parity.ours_from_hf(hf, tmp_path, "mean")
    relative = ours.biases.relative
    assert isinstance(relative, RelativePositionBias)
    parity.assert_takes_part(ours, relative.table.weight.data.zero_)


def test_unmapped_tensor_is_refused(hf: MPNetModel, tmp_path: Path) -> None:
    parity.assert_unmapped_tensor_is_refused(
        hf, tmp_path, "mean", "encoder.layer.1.attention.attn.r.w"
    )
    cfg = {**hf.config.to_dict(), "relative_attention_num_buckets": 64}
    with pytest.raises(CheckpointError, match="only 32 is supported"):
        MPNET.read_config(cfg, tmp_path, SentenceSettings(None, "mean"))
