from pathlib import Path

import pytest
import torch
from transformers import ModernBertConfig, ModernBertModel

from models import CheckpointError
from models.families import SentenceSettings
from models.families.modernbert import FAMILY as MODERNBERT
from models.families.modernbert import split_fused
from models.masks import SlidingWindow

from . import parity

PAD = 0
WINDOW = 16  # local layers see 8 tokens each side: much less than the 64-token inputs


@pytest.fixture(scope="module")
def hf() -> ModernBertModel:
    config = ModernBertConfig(
        **{**parity.TINY, "num_hidden_layers": 3},
        layer_types=["full_attention", "sliding_attention", "full_attention"],
        max_position_embeddings=128,
        local_attention=WINDOW,
        pad_token_id=PAD,
        bos_token_id=2,
        eos_token_id=3,
        cls_token_id=2,
        sep_token_id=3,
    )
    return parity.tiny_hf(lambda: ModernBertModel(config))


def test_matches_transformers(hf: ModernBertModel, tmp_path: Path) -> None:
    ours = parity.ours_from_hf(hf, tmp_path, "mean")
    config = ours.config
    assert (config.local_window, config.global_every) == (WINDOW, 2)
    assert (config.rope_theta, config.local_rope_theta) == (160000.0, 10000.0)
    assert [layer.span for layer in ours.layers] == ["global", "local", "global"]
    assert not (config.attention_bias or config.mlp_bias or config.norm_bias)
    assert isinstance(ours.layers[0].norm1, torch.nn.Identity)
    parity.assert_matches_hf(hf, ours, parity.padded_batches(PAD), ("mean", "cls"))


def test_the_window_matters(hf: ModernBertModel, tmp_path: Path) -> None:
    """Were local layers global, the outputs would differ: the test inputs are long enough."""
    ours = parity.ours_from_hf(hf, tmp_path, "mean")
    window = ours.biases.window
    assert isinstance(window, SlidingWindow)
    parity.assert_takes_part(ours, lambda: setattr(window, "window", 1000))


def test_fused_tensors_are_split_in_order() -> None:
    qkv = torch.arange(12.0)[:, None].expand(12, 2)  # rows 0-3: q, 4-7: k, 8-11: v
    wi = torch.arange(6.0)[:, None]  # rows 0-2: Wi's "input" (activated), 3-5: its "gate"
    out = split_fused({"layers.1.attention.qkv.weight": qkv, "layers.1.ffn.wi.bias": wi, "x": wi})
    assert sorted(out) == [
        "layers.1.attention.k_proj.weight",
        "layers.1.attention.q_proj.weight",
        "layers.1.attention.v_proj.weight",
        "layers.1.ffn.gate.bias",
        "layers.1.ffn.up.bias",
        "x",
    ]
    assert out["layers.1.attention.k_proj.weight"][:, 0].tolist() == [4.0, 5.0, 6.0, 7.0]
    assert out["layers.1.ffn.gate.bias"][:, 0].tolist() == [0.0, 1.0, 2.0]
    assert out["layers.1.ffn.up.bias"][:, 0].tolist() == [3.0, 4.0, 5.0]


def test_both_config_spellings_are_read(hf: ModernBertModel, tmp_path: Path) -> None:
    settings = SentenceSettings(None, "mean")
    v5 = hf.config.to_dict()
    v4 = {k: v for k, v in v5.items() if k not in ("layer_types", "rope_parameters")}
    v4 |= {"global_attn_every_n_layers": 3, "global_rope_theta": 8.0, "local_rope_theta": 2.0}
    config = MODERNBERT.read_config(v4, tmp_path, settings)
    assert (config.global_every, config.rope_theta, config.local_rope_theta) == (3, 8.0, 2.0)
    all_global = {**v5, "layer_types": ["full_attention"] * 3}
    assert MODERNBERT.read_config(all_global, tmp_path, settings).local_window is None
    odd = {**v5, "layer_types": ["full_attention", "sliding_attention", "sliding_attention"]}
    assert MODERNBERT.read_config(odd, tmp_path, settings).global_every == 3
    odd["layer_types"] = ["sliding_attention", "full_attention", "full_attention"]
    with pytest.raises(CheckpointError, match="not 'a global layer every n from layer 0'"):
        MODERNBERT.read_config(odd, tmp_path, settings)


def test_unmapped_tensor_is_refused(hf: ModernBertModel, tmp_path: Path) -> None:
    parity.assert_unmapped_tensor_is_refused(hf, tmp_path, "mean", "layers.0.attn.Wrel.weight")
    assert MODERNBERT.rename({"head.dense.weight": torch.zeros(1)}) == {}
