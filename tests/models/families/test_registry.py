import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from models import CheckpointError, load_encoder
from models.families import FAMILIES, family_for
from models.families.bert import FAMILY as BERT


def test_unknown_model_type_is_refused_naming_the_supported_ones(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama-9000"}))
    save_file({"x": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError) as caught:
        load_encoder(tmp_path)
    message = str(caught.value)
    assert "model_type 'llama-9000' is not supported" in message
    assert f"supported model types: {sorted(FAMILIES)}" in message and "'bert'" in message


def test_registry_finds_bert() -> None:
    assert family_for("bert", Path(".")) is BERT


def test_bert_names_map_to_ours_and_unknown_names_are_kept() -> None:
    t = torch.zeros(1)
    renamed = BERT.rename(
        {
            "bert.encoder.layer.3.attention.self.key.weight": t,
            "embeddings.LayerNorm.bias": t,
            "pooler.dense.weight": t,  # ignored: sentence embedding has no pooler
            "embeddings.position_ids": t,  # ignored: a buffer
            "encoder.layer.0.crossattention.x": t,  # unknown: kept, so loading fails on it
        }
    )
    assert set(renamed) == {
        "layers.3.attention.k_proj.weight",
        "embeddings.norm.bias",
        "encoder.layer.0.crossattention.x",
    }


def test_the_families_of_issue_16_are_registered() -> None:
    served = {"bert", "xlm-roberta", "roberta", "mpnet", "modernbert", "qwen3"}
    assert set(FAMILIES) == served
    assert all(family_for(kind, Path(".")).model_type == kind for kind in served)
