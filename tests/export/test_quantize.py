"""``--quantize int8``: static int8 calibrated on real text, its recorded accuracy, and the
service serving it (``--precision int8``) at that accuracy.

A tiny random BERT (``tests.tiny_models``) keeps the default tier cheap; all-MiniLM-L6-v2's
floor needs its own int8 export (calibration and measurement take minutes on two shared cores),
so it is ``slow``. Both are skipped where the CPU has no int8 dot products: there int8 runs
without them and its speed says nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from common import texts as corpus
from common.arrays import encode_batches, normalize_rows
from export import load_artifact
from export.options import ExportOptions
from export.parity import embed_texts
from export.pipeline import export_model
from export.quantize import int8_accuracy, int8_dot_product_reason, matmul_roles
from models import Tokenizer
from service.backends import choose, create_backend
from service.settings import ServiceSettings
from tests.tiny_models import tiny_checkpoint_cached

NO_INT8 = int8_dot_product_reason()
pytestmark = pytest.mark.skipif(NO_INT8 is not None, reason=str(NO_INT8))

# all-MiniLM-L6-v2 as served in int8 against fp32 PyTorch on every text of common.texts
# (measured: min cosine 0.9882, top-10 agreement 0.951, the 0.95 bar; docs/export.md):
# floors a little below, so a change of runtime version does not fail the suite, a broken
# recipe does (ONNX Runtime's min-max QDQ: 0.83 and 0.73).
MINILM_MIN_COSINE = 0.98
MINILM_TOP10 = 0.94
# The tiny random BERT: its random vectors crowd together, so neighbours swap more easily than
# a trained model's (measured: min cosine 0.9976, top-10 agreement 0.916); a broken graph or
# calibration falls far below these.
TINY_MIN_COSINE = 0.99
TINY_TOP10 = 0.85


def _served(artifact_dir: Path, texts: list[str]) -> tuple[np.ndarray, str]:
    """Vectors of ``texts`` from the service's int8 backend, as ``--precision int8`` runs it."""
    artifact = load_artifact(artifact_dir)
    assert artifact.tokenizer_path is not None
    settings = ServiceSettings(artifact=artifact_dir, precision="int8", num_cpus=2)
    backend, choice = create_backend(settings, artifact)
    tokenizer = Tokenizer(artifact.tokenizer_path, artifact.config.max_seq_length)
    ids = tokenizer.tokenize(texts)
    vectors = encode_batches(ids, backend.run, artifact.config.pad_token_id)
    return normalize_rows(vectors), choice.reason


@pytest.fixture(scope="module")
def tiny_int8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("quantize") / "tiny-int8"
    source = tiny_checkpoint_cached("bert")
    export_model(ExportOptions(model=str(source), output=output, quantize="int8"))
    return output


def test_the_int8_graph_quantizes_weight_matmuls_and_keeps_attention_in_float(
    tiny_int8: Path,
) -> None:
    graph = onnx.load(str(tiny_int8 / "model.int8.onnx")).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 0
    roles = matmul_roles(tiny_int8 / "model.onnx")
    producer = {out: node.op_type for node in graph.node for out in node.output}
    for node in graph.node:
        if node.op_type == "MatMul" and node.name in roles["attention"]:
            assert "DequantizeLinear" not in {producer.get(i) for i in node.input}, node.name


def test_the_export_records_int8_accuracy_and_the_service_serves_it(tiny_int8: Path) -> None:
    artifact = load_artifact(tiny_int8)
    recorded = artifact.manifest["extras"]["int8"]
    assert recorded["recipe"]["method"] == "nncf" and recorded["texts"] == len(corpus.corpus())
    config = artifact.config
    assert config.int8_min_cosine == recorded["min_cosine_vs_fp32"]
    assert config.int8_top10_agreement == recorded["top10_agreement"]
    assert config.int8_min_cosine is not None and config.int8_min_cosine >= TINY_MIN_COSINE
    assert config.int8_top10_agreement is not None and config.int8_top10_agreement >= TINY_TOP10

    texts = corpus.corpus()[::4]
    assert artifact.tokenizer_path is not None
    tokenizer = Tokenizer(artifact.tokenizer_path, config.max_seq_length)
    fp32 = ort.InferenceSession(str(artifact.model_path), providers=["CPUExecutionProvider"])
    served, reason = _served(tiny_int8, texts)
    found = int8_accuracy(embed_texts(fp32, tokenizer, texts), served)
    assert found["min_cosine_vs_fp32"] >= TINY_MIN_COSINE, found
    assert f"min cosine {config.int8_min_cosine:.4f}" in reason


def test_auto_never_serves_int8(tiny_int8: Path) -> None:
    artifact = load_artifact(tiny_int8)
    auto = choose(ServiceSettings(artifact=tiny_int8), artifact)
    assert auto.precision != "int8"
    asked = choose(ServiceSettings(artifact=tiny_int8, precision="int8"), artifact)
    assert (asked.backend, asked.precision) == ("openvino", "int8")


@pytest.fixture(scope="module")
def minilm_int8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2 exported with ``--quantize int8`` through the real CLI."""
    out = tmp_path_factory.mktemp("quantize") / "minilm-int8"
    cmd = [sys.executable, "-m", "export", "--model", "all-MiniLM-L6-v2", "--output", str(out)]
    done = subprocess.run([*cmd, "--quantize", "int8"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.mark.slow
def test_minilm_int8_keeps_the_accuracy_floor_on_real_text(
    minilm_int8: Path, minilm, corpus: list[str]
) -> None:
    """Served int8 against fp32 PyTorch on every text: min cosine and top-10 agreement."""
    recorded = load_artifact(minilm_int8).config
    assert recorded.int8_min_cosine is not None and recorded.int8_min_cosine >= MINILM_MIN_COSINE
    assert recorded.int8_top10_agreement is not None
    assert recorded.int8_top10_agreement >= MINILM_TOP10
    served, _ = _served(minilm_int8, corpus)
    found = int8_accuracy(minilm.encode(corpus), served)
    assert found["min_cosine_vs_fp32"] >= MINILM_MIN_COSINE, found
    assert found["top10_agreement"] >= MINILM_TOP10, found
