import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from common.arrays import cosine_rows
from models import (
    CheckpointError,
    ModelLocation,
    get_model_path,
    load_encoder,
    load_pretrained,
    locate_model,
    save_model,
)


def _compare(ours: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    return float(cosine_rows(ours, reference).min()), float(np.abs(ours - reference).max())


def test_matches_sentence_transformers_on_real_text(minilm, reference, corpus) -> None:
    assert len(corpus) >= 340
    ours = minilm.encode(corpus, batch_size=29)
    theirs = reference.encode(corpus, batch_size=29, normalize_embeddings=True)
    assert ours.dtype == np.float32 and ours.shape == (len(corpus), 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    min_cos, max_abs = _compare(ours, theirs)
    assert min_cos >= 0.99999, min_cos
    assert max_abs <= 1e-4, max_abs


def test_default_model_settings(minilm) -> None:
    config = minilm.config
    assert (config.d_model, config.n_layers, config.n_heads) == (384, 6, 12)
    assert config.max_seq_length == 256 and config.pooling == "mean"
    assert minilm.tokenizer.max_length == 256


def test_sentence_alone_equals_sentence_in_padded_batch(minilm, corpus) -> None:
    short = "The train was late again this morning."
    long_texts = [t for t in corpus if len(t) > 600][:5]
    alone = minilm.encode([short])[0]
    in_batch = minilm.encode([*long_texts[:2], short, *long_texts[2:]], batch_size=6)[2]
    assert np.abs(alone - in_batch).max() <= 1e-5


def test_unknown_name_fails_clearly() -> None:
    with pytest.raises(CheckpointError, match="unknown model 'no-such-model'"):
        load_pretrained("no-such-model")


def _tiny_bert_folder(folder: Path, pooling: str) -> Path:
    """A BERT-family sentence-transformers folder of another size, made with transformers."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=128,
    )
    BertModel(config).eval().save_pretrained(folder, safe_serialization=True)
    source = get_model_path()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(source / name, folder / name)
    (folder / "sentence_bert_config.json").write_text('{"max_seq_length": 64}')
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 48, f"pooling_mode_{pooling}": True})
    )
    st = "sentence_transformers.models."
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": st + "Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": st + "Pooling"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    return folder


@pytest.mark.parametrize("pooling", ["cls_token", "max_tokens"])
def test_other_bert_family_folder_loads(pooling: str, tmp_path: Path, corpus) -> None:
    from sentence_transformers import SentenceTransformer

    folder = _tiny_bert_folder(tmp_path / "bert", pooling)
    ours = load_pretrained(folder)
    assert ours.config.d_model == 48 and ours.config.max_seq_length == 64
    assert ours.config.pooling == pooling.split("_")[0]
    texts = corpus[:40]
    theirs = SentenceTransformer(str(folder), device="cpu").encode(
        texts, batch_size=13, normalize_embeddings=True
    )
    min_cos, max_abs = _compare(ours.encode(texts, batch_size=13), theirs)
    assert min_cos >= 0.99999 and max_abs <= 1e-4


def test_weight_mapping_fails_loudly(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(get_model_path(), tmp_path / "broken")
    weights = folder / "model.safetensors"
    tensors = load_file(str(weights))
    del tensors["encoder.layer.3.attention.self.key.weight"]
    save_file(tensors, str(weights))
    with pytest.raises(CheckpointError, match=r"missing \['layers.3.attention.k_proj.weight'\]"):
        load_pretrained(folder)

    tensors["encoder.layer.3.attention.self.key.weight"] = torch.zeros(384, 383)
    save_file(tensors, str(weights))
    with pytest.raises(CheckpointError, match="wrong shapes"):
        load_pretrained(folder)

    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_pretrained(folder)


def test_saved_folder_loads_as_pretrained(minilm, tmp_path: Path) -> None:
    folder = save_model(minilm.encoder, tmp_path / "saved", get_model_path() / "tokenizer.json")
    again = load_pretrained(folder)
    texts = ["a saved model", "loads back with its tokenizer"]
    np.testing.assert_array_equal(again.encode(texts), minilm.encode(texts))


def test_saved_folder_without_tokenizer_is_rejected(minilm, tmp_path: Path) -> None:
    folder = save_model(minilm.encoder, tmp_path / "bare")
    with pytest.raises(CheckpointError, match="no tokenizer.json"):
        load_pretrained(folder)


def test_load_encoder_says_where_the_model_came_from(minilm, tmp_path: Path) -> None:
    shipped_tokenizer = get_model_path() / "tokenizer.json"
    known = load_encoder("sentence-transformers/all-MiniLM-L6-v2")
    assert known.location == ModelLocation("all-MiniLM-L6-v2", get_model_path(), "known-name")
    assert known.normalize_module and known.tokenizer is not None
    assert known.tokenizer.path == shipped_tokenizer
    assert locate_model(get_model_path()).kind == "pretrained-folder"

    bare = save_model(minilm.encoder, tmp_path / "bare")
    loaded = load_encoder(bare)
    assert loaded.location == ModelLocation("bare", bare.resolve(), "checkpoint")
    assert loaded.tokenizer is None and not loaded.normalize_module
    given = load_encoder(bare, shipped_tokenizer)
    assert given.tokenizer is not None and given.tokenizer.path == shipped_tokenizer
    assert load_pretrained(bare, shipped_tokenizer).tokenizer.vocab_size == 30522


def test_load_failures_name_the_model_and_the_reason(tmp_path: Path) -> None:
    folder = shutil.copytree(get_model_path(), tmp_path / "no-size")
    config = json.loads((folder / "config.json").read_text())
    del config["hidden_size"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"cannot load model '.*no-size': missing key"):
        load_pretrained(folder)
    with pytest.raises(CheckpointError, match="cannot read tokenizer /no/such.json"):
        load_encoder(get_model_path(), "/no/such.json")
