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
from tests.tiny_models import tiny_checkpoint_cached


def _compare(ours: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    return float(cosine_rows(ours, reference).min()), float(np.abs(ours - reference).max())


def test_matches_sentence_transformers_on_real_text(minilm, reference_vectors, corpus) -> None:
    assert len(corpus) >= 340
    ours = minilm.encode(corpus, batch_size=29)
    theirs = reference_vectors
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


TEXTS = ["a short one", "The weather changed quickly and the match was called off at noon."]


@pytest.fixture(scope="module")
def tiny_bert() -> Path:
    return tiny_checkpoint_cached("bert")


def _without_weights(folder: Path, target: Path) -> Path:
    shutil.copytree(folder, target)
    (target / "model.safetensors").unlink()
    return target


def test_folder_saved_by_sentence_transformers_6_loads(tiny_bert: Path, tmp_path: Path) -> None:
    """The issue's regression: 6.x writes ``{"pooling_mode": "mean"}``, once refused."""
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(tiny_bert), device="cpu")
    reference.save(str(tmp_path / "saved"))
    pooling = json.loads((tmp_path / "saved" / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode"] == "mean"
    ours = load_pretrained(tmp_path / "saved")
    min_cos, _ = _compare(ours.encode(TEXTS), reference.encode(TEXTS))
    assert min_cos >= 0.99999


def test_sharded_and_pickled_weights_load_the_same(tiny_bert: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    expected = load_pretrained(tiny_bert).encode(TEXTS)
    tensors = load_file(str(tiny_bert / "model.safetensors"))
    names = sorted(tensors)
    sharded = _without_weights(tiny_bert, tmp_path / "sharded")
    weight_map: dict[str, str] = {}
    for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :])):
        shard = f"model-0000{i + 1}-of-00002.safetensors"
        save_file({n: tensors[n] for n in part}, str(sharded / shard))
        weight_map |= dict.fromkeys(part, shard)
    index = {"metadata": {}, "weight_map": weight_map}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    np.testing.assert_array_equal(load_pretrained(sharded).encode(TEXTS), expected)

    pickled = _without_weights(tiny_bert, tmp_path / "pickled")
    torch.save(tensors, pickled / "pytorch_model.bin")
    np.testing.assert_array_equal(load_pretrained(pickled).encode(TEXTS), expected)

    index["weight_map"] = {**weight_map, "extra.weight": "model-00001-of-00002.safetensors"}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=r"shards do not hold: \['extra.weight'\]"):
        load_pretrained(sharded)


def test_missing_or_corrupt_weights_are_named(tiny_bert: Path, tmp_path: Path) -> None:
    folder = _without_weights(tiny_bert, tmp_path / "none")
    with pytest.raises(CheckpointError, match="has no weights: none of model.safetensors, "):
        load_pretrained(folder)
    (folder / "pytorch_model.bin").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="cannot read .*pytorch_model.bin"):
        load_pretrained(folder)
    torch.save([torch.zeros(2)], folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="holds a list, not tensors"):
        load_pretrained(folder)


def test_prompts_travel_with_the_loaded_encoder(tmp_path: Path) -> None:
    prompts = {"query": "query: ", "passage": "passage: "}
    folder = tiny_checkpoint_cached("bert", prompts=prompts, default_prompt_name="passage")
    loaded = load_encoder(folder)
    assert (loaded.prompts, loaded.default_prompt_name) == (prompts, "passage")
    model = load_pretrained(folder)
    np.testing.assert_array_equal(model.encode(TEXTS), model.encode(TEXTS, prompt_name="passage"))
    plain = load_encoder(tiny_checkpoint_cached("bert"))
    assert (plain.prompts, plain.default_prompt_name) == ({}, None)


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
