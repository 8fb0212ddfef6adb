"""The artifact folder as the service sees it: load_artifact, extras, external data, --force."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort
import pytest

from common import texts as corpus
from common.arrays import cosine_rows
from export import ArtifactError, ExportOptions, export_model, load_artifact
from export.artifact import SERVING_CONFIG_FILE, Variant
from export.parity import embed_texts
from models import Tokenizer


def test_extras_with_external_data_and_tokenizer(
    tiny_model: Callable[..., Path], tmp_path: Path
) -> None:
    output = tmp_path / "artifact"
    source = tiny_model(with_tokenizer=True)
    options = ExportOptions(
        model=str(source), output=output, optimize=True, quantize="int8", external_data="always"
    )
    manifest = export_model(options).manifest
    names = {p.name for p in output.iterdir()}
    assert {
        "model.onnx",
        "model.onnx.data",
        "model.optimized.onnx",
        "model.optimized.onnx.data",
        "model.int8.onnx",
        "model.int8.onnx.data",
        "tokenizer.json",
        "calibration.npy",
        "serving_config.json",
        "manifest.json",
    } == names
    assert manifest["graph"]["external_data"] is True
    assert names - {"manifest.json"} == set(manifest["files"])
    assert manifest["extras"]["calibration"]["dimension"] == 32

    optimized = manifest["extras"]["optimized"]
    assert optimized["parity"]["passed"] and optimized["fused_operators"]
    assert "SkipLayerNormalization" in optimized["fused_operators"]
    int8 = manifest["extras"]["int8"]
    assert int8["data"].startswith("common.texts") and int8["texts"] >= 300
    assert 0.9 < int8["min_cosine_vs_fp32"] <= int8["mean_cosine_vs_fp32"] <= 1.0

    artifact = load_artifact(output)
    assert artifact.tokenizer_path == output / "tokenizer.json"
    assert artifact.config.tokenizer == "tokenizer.json" and artifact.config.normalize is True
    assert artifact.variant("int8") == output / "model.int8.onnx"
    tokenizer = Tokenizer(artifact.tokenizer_path, artifact.config.max_seq_length)
    texts = corpus.sentences()[:40]
    base = embed_texts(ort.InferenceSession(str(artifact.variant())), tokenizer, texts, 7)
    floors: tuple[tuple[Variant, float], ...] = (("optimized", 0.99999), ("int8", 0.9))
    for variant, floor in floors:
        session = ort.InferenceSession(str(artifact.variant(variant)))
        other = embed_texts(session, tokenizer, texts, 7)
        assert cosine_rows(base, other).min() > floor, variant


def test_load_artifact_rejects_damaged_folders(
    tiny_model: Callable[..., Path], tmp_path: Path
) -> None:
    output = tmp_path / "artifact"
    export_model(ExportOptions(model=str(tiny_model()), output=output))
    artifact = load_artifact(output)
    assert artifact.optimized_path is None
    with pytest.raises(ArtifactError, match="has no optimized model"):
        artifact.variant("optimized")

    with pytest.raises(ArtifactError, match="does not exist"):
        load_artifact(tmp_path / "nowhere")
    with pytest.raises(ArtifactError, match="has no manifest.json"):
        load_artifact(tmp_path)

    config_path = output / SERVING_CONFIG_FILE
    good = config_path.read_text()
    config_path.write_text(json.dumps({**json.loads(good), "dimension": "wide"}))
    with pytest.raises(ArtifactError, match="sha256"):
        load_artifact(output)
    with pytest.raises(ArtifactError, match="dimension has the wrong type"):
        load_artifact(output, verify_hashes=False)
    config_path.write_text(good)

    model = output / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match its sha256"):
        load_artifact(output)
    model.unlink()
    with pytest.raises(ArtifactError, match="model.onnx is listed but missing"):
        load_artifact(output, verify_hashes=False)


def test_force_replaces_a_folder_that_is_not_an_artifact(
    tiny_model: Callable[..., Path], tmp_path: Path
) -> None:
    output = tmp_path / "artifact"
    output.mkdir()
    (output / "notes.txt").write_text("old")
    export_model(ExportOptions(model=str(tiny_model()), output=output, force=True))
    assert not (output / "notes.txt").exists()
    assert load_artifact(output).config.pooling == "mean"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".artifact")]  # no leftovers
