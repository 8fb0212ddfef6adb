from pathlib import Path

import pytest
import torch
from transformers import Qwen3Config, Qwen3Model

from models import CheckpointError
from models.families import SentenceSettings
from models.families.qwen3 import FAMILY as QWEN3

from . import parity

PAD = 0


@pytest.fixture(scope="module")
def hf() -> Qwen3Model:
    config = Qwen3Config(
        **parity.TINY,
        num_key_value_heads=2,
        head_dim=24,  # 4 × 24 = 96 ≠ 64: projections between d_model and heads × head_dim
        max_position_embeddings=128,
        rope_parameters={"rope_type": "default", "rope_theta": 5000.0},
        pad_token_id=PAD,
    )
    return parity.tiny_hf(lambda: Qwen3Model(config))


def test_matches_transformers(hf: Qwen3Model, tmp_path: Path) -> None:
    ours = parity.ours_from_hf(hf, tmp_path, "last")
    config = ours.config
    assert (config.head_size, config.n_kv_heads, config.rope_theta) == (24, 2, 5000.0)
    assert config.causal and config.qk_norm and not config.embedding_norm
    parity.assert_matches_hf(hf, ours, parity.padded_batches(PAD), ("last", "mean"))


def _left_padded(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same inputs with their padding moved to the front, as Hugging Face pads decoders."""
    lengths = mask.sum(1)
    shift = mask.shape[1] - lengths  # (B,)
    index = (torch.arange(mask.shape[1])[None, :] - shift[:, None]) % mask.shape[1]  # (B, T)
    return ids.gather(1, index), mask.gather(1, index)


@torch.no_grad()
def test_left_and_right_padding_give_the_same_last_token(hf: Qwen3Model, tmp_path: Path) -> None:
    """Causal attention never reads the padding after a token, and rotary scores depend only
    on distances, so right padding (ours) gives the vectors left padding (Hugging Face) does."""
    ours = parity.ours_from_hf(hf, tmp_path, "last")
    for ids, mask in parity.padded_batches(PAD, rows=64):
        left_ids, left_mask = _left_padded(ids, mask)
        assert (left_mask[:, -1] == 1).all() and (left_mask != mask).any()
        right = ours(ids, mask)[1]
        theirs = hf(input_ids=left_ids, attention_mask=left_mask).last_hidden_state[:, -1]
        torch.testing.assert_close(ours(left_ids, left_mask)[1], right, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(theirs, right, atol=2e-5, rtol=1e-4)


def test_both_rope_spellings_are_read(hf: Qwen3Model, tmp_path: Path) -> None:
    settings = SentenceSettings(None, "last")
    v5 = {**hf.config.to_dict(), "rope_parameters": {"rope_type": "default", "rope_theta": 7.0}}
    v4 = {k: v for k, v in hf.config.to_dict().items() if k != "rope_parameters"}
    v4 |= {"rope_theta": 9.0, "rope_scaling": None}
    assert QWEN3.read_config(v5, tmp_path, settings).rope_theta == 7.0
    assert QWEN3.read_config(v4, tmp_path, settings).rope_theta == 9.0
    with pytest.raises(CheckpointError, match="rotary scaling 'yarn' is not supported"):
        QWEN3.read_config({**v4, "rope_scaling": {"type": "yarn"}}, tmp_path, settings)
    with pytest.raises(CheckpointError, match="sliding-window layers are not supported"):
        QWEN3.read_config({**v5, "use_sliding_window": True}, tmp_path, settings)


def test_unmapped_tensor_is_refused(hf: Qwen3Model, tmp_path: Path) -> None:
    parity.assert_unmapped_tensor_is_refused(hf, tmp_path, "last", "layers.0.self_attn.sinks")
    renamed = QWEN3.rename(
        {"model.lm_head.weight": torch.zeros(1), "lm_head.weight": torch.zeros(1)}
    )
    assert renamed == {}
