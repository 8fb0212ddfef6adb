from pathlib import Path

import pytest
from transformers import XLMRobertaConfig, XLMRobertaModel

from models import CheckpointError
from models.families import FAMILIES, SentenceSettings
from models.families.xlm_roberta import XLM_ROBERTA

from . import parity

PAD = 1


@pytest.fixture(scope="module")
def hf() -> XLMRobertaModel:
    config = XLMRobertaConfig(
        **parity.TINY,
        max_position_embeddings=66,  # 64 usable: positions start at pad + 1 = 2
        type_vocab_size=1,
        pad_token_id=PAD,
    )
    return parity.tiny_hf(lambda: XLMRobertaModel(config, add_pooling_layer=True))


def test_matches_transformers(hf: XLMRobertaModel, tmp_path: Path) -> None:
    ours = parity.ours_from_hf(hf, tmp_path, "mean")  # the pooler is ignored, not refused
    assert ours.config.position_offset == PAD + 1 and ours.config.max_seq_length == 64
    assert ours.config.type_vocab_size == 1
    parity.assert_matches_hf(hf, ours, parity.padded_batches(PAD), ("mean", "cls", "max"))


def test_max_length_leaves_room_for_the_offset(hf: XLMRobertaModel, tmp_path: Path) -> None:
    cfg = {**hf.config.to_dict(), "max_position_embeddings": 514}
    read = XLM_ROBERTA.read_config
    assert read(cfg, tmp_path, SentenceSettings(None, "mean")).max_seq_length == 512
    assert read(cfg, tmp_path, SentenceSettings(128, "mean")).max_seq_length == 128
    assert read(cfg, tmp_path, SentenceSettings(4096, "mean")).max_seq_length == 512


def test_roberta_is_the_same_family() -> None:
    roberta = FAMILIES["roberta"]
    assert (roberta.names, roberta.read_config) == (XLM_ROBERTA.names, XLM_ROBERTA.read_config)


def test_unmapped_tensor_is_refused(hf: XLMRobertaModel, tmp_path: Path) -> None:
    parity.assert_unmapped_tensor_is_refused(
        hf, tmp_path, "mean", "encoder.layer.0.crossattention.w"
    )
    with pytest.raises(CheckpointError, match="only absolute position embeddings"):
        cfg = {**hf.config.to_dict(), "position_embedding_type": "relative_key"}
        XLM_ROBERTA.read_config(cfg, tmp_path, SentenceSettings(None, "mean"))
