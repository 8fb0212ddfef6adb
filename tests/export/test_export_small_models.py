"""Random-config encoders export, validate and run with any batch and sequence length."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export import ExportOptions, export_model, load_artifact
from export.artifact import INPUT_NAMES, MANIFEST_FILE, OUTPUT_NAMES, sha256_file
from export.bf16 import native_bf16_reason
from models import load_model

# Every value of every architecture switch appears at least once.
CONFIGS = {
    "learned-post-gelu-mean": {"positional": "learned", "norm": "post", "activation": "gelu"},
    "sinusoidal-pre-relu-max": {
        "positional": "sinusoidal",
        "norm": "pre",
        "activation": "relu",
        "pooling": "max",
    },
    "learned-pre-relu-cls": {"norm": "pre", "activation": "relu", "pooling": "cls"},
    "sinusoidal-post-gelu-cls": {"positional": "sinusoidal", "pooling": "cls"},
}


def check_against_torch(artifact_dir: Path, source: Path, batch: int, seq: int) -> None:
    """Run the graph at a shape outside the parity grid (dynamic axes) and compare."""
    model = load_model(source)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, model.config.vocab_size, size=(batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), dtype=np.int64)
    mask[1:, seq // 2 :] = 0
    session = ort.InferenceSession(str(artifact_dir / "model.onnx"))
    feed = dict(zip(INPUT_NAMES, (ids, mask), strict=True))
    tokens, pooled = session.run(list(OUTPUT_NAMES), feed)
    with torch.inference_mode():
        ref_tokens, ref_pooled = model(torch.from_numpy(ids), torch.from_numpy(mask))
    assert tokens.shape == (batch, seq, model.config.d_model)
    assert pooled.shape == (batch, model.config.d_model)
    real = mask.astype(bool)
    np.testing.assert_allclose(tokens[real], ref_tokens.numpy()[real], atol=1e-4)
    np.testing.assert_allclose(pooled, ref_pooled.numpy(), atol=1e-4)


def check_manifest(folder: Path) -> dict:
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    listed = set(manifest["files"])
    on_disk = {p.name for p in folder.iterdir()} - {MANIFEST_FILE}
    assert listed == on_disk
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256_file(folder / name)
        assert entry["bytes"] == (folder / name).stat().st_size
    for key in ("model", "graph", "opset", "inputs", "outputs", "versions", "exported_at"):
        assert key in manifest
    assert {"torch", "onnx", "onnxruntime"} <= set(manifest["versions"])
    assert [i["name"] for i in manifest["inputs"]] == list(INPUT_NAMES)
    assert all(i["dtype"] == "int64" and i["shape"] == ["batch", "seq"] for i in manifest["inputs"])
    assert [o["name"] for o in manifest["outputs"]] == list(OUTPUT_NAMES)
    assert manifest["graph"]["exporter"] == "dynamo" and manifest["graph"]["attention"] == "math"
    parity = manifest["validation"]["parity"]
    assert parity["passed"] and parity["max_abs_token_embeddings"] <= parity["atol"]
    assert parity["min_cosine_sentence_embedding"] > 0.9999
    shapes = {(c["batch"], c["seq"]) for c in parity["cases"]}
    assert {b for b, _ in shapes} == {1, 3, 17, 64}
    return manifest


@pytest.mark.parametrize("overrides", CONFIGS.values(), ids=CONFIGS.keys())
def test_random_config_exports_and_matches(
    overrides: dict, tiny_model: Callable[..., Path], tmp_path: Path
) -> None:
    source = tiny_model(**overrides)
    output = tmp_path / "artifact"
    export_model(ExportOptions(model=str(source), output=output))
    manifest = check_manifest(output)
    assert manifest["model"]["config"]["pooling"] == overrides.get("pooling", "mean")
    artifact = load_artifact(output)
    assert artifact.config.tokenizer is None and artifact.tokenizer_path is None
    assert artifact.config.dimension == 32 and artifact.config.max_seq_length == 48
    check_against_torch(output, source, batch=5, seq=11)
    check_against_torch(output, source, batch=2, seq=64)  # longer than max_seq_length


def test_cli_end_to_end_then_reexports(
    tiny_model: Callable[..., Path], tmp_path: Path, run_cli: Callable
) -> None:
    source = tiny_model(positional="sinusoidal", norm="pre", activation="relu", pooling="max")
    output = tmp_path / "artifact"
    done = run_cli("--model", str(source), "--output", str(output))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # the exporters' chatter is captured, not shown
    lines = done.stdout.splitlines()
    steps = 7 + (native_bf16_reason() is None)  # bf16 is measured where it could be served
    assert [line.split("]")[0] for line in lines[:steps]] == [
        f"[{i}/{steps}" for i in range(1, steps + 1)
    ]
    assert "model.onnx" in done.stdout and "min cosine" in done.stdout  # summary table
    first = check_manifest(output)
    assert first["idempotence"]["previous_export"] is None

    # A second export in another process (this one) must write byte-identical files.
    second = export_model(ExportOptions(model=str(source), output=output)).manifest
    previous = second["idempotence"]["previous_export"]
    assert previous["same_hashes"], previous
    assert {k: v["sha256"] for k, v in first["files"].items()} == {
        k: v["sha256"] for k, v in second["files"].items()
    }

    # Changed options change the bytes, and the manifest says which inputs changed.
    third = export_model(ExportOptions(model=str(source), output=output, opset=18)).manifest
    previous = third["idempotence"]["previous_export"]
    assert not previous["same_hashes"] and "model.onnx" in previous["changed_files"]
    assert previous["reason"] == "inputs changed: ['options']"
