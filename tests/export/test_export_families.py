"""Every model family exports, passes the export's own parity grid, and serves the same vectors.

A tiny random checkpoint of each kind (``tests.tiny_models``: transformers weights, a tokenizer
trained on our texts) goes through the export pipeline in this process, then through the
service's real HTTP app (``in_process``): ONNX Runtime fp32 must give what ``load_pretrained``
gives, and the default backend (OpenVINO bf16 on this CPU) must stay close.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from common.arrays import cosine_rows, normalize_rows
from export import load_artifact
from export.bf16 import native_bf16_reason
from export.options import ExportOptions
from export.parity import embed_texts
from export.pipeline import export_model
from models import Tokenizer, load_pretrained
from service.backends import ACCURACY_FLOOR
from service.settings import ServiceSettings
from tests.helpers import embed
from tests.service.conftest import in_process
from tests.tiny_models import KINDS, tiny_checkpoint_cached

TEXTS = 240  # of common.texts.corpus(): sentences, then passages long enough to be truncated
EXACT = 0.99999  # fp32 graph against our PyTorch encoder
BF16_FLOOR = 0.99  # the default backend computes in bf16 on this CPU


@pytest.fixture(scope="module")
def texts(corpus: list[str]) -> list[str]:
    # Every third text, so the sample reaches the passages at the corpus's end.
    return corpus[::3][:TEXTS]


# Each kind costs one export (7-15 s on two shared cores). BERT's is left to the slow tier: the
# MiniLM, prompt and --model tests export BERT models in the default tier already.
DEFAULT_TIER = ("xlm-roberta", "mpnet", "modernbert", "qwen3")
PARAMS = [k if k in DEFAULT_TIER else pytest.param(k, marks=pytest.mark.slow) for k in KINDS]


@pytest.mark.parametrize("kind", PARAMS)
def test_family_exports_with_parity_and_serves_the_reference_vectors(
    kind: str, texts: list[str], tmp_path: Path
) -> None:
    folder = tiny_checkpoint_cached(kind)
    output = tmp_path / "artifact"
    manifest = export_model(ExportOptions(model=str(folder), output=output)).manifest

    parity = manifest["validation"]["parity"]
    assert parity["passed"], parity
    assert {c["padding"] for c in parity["cases"]} == {"left", "right"}
    artifact = load_artifact(output)
    config = artifact.config

    reference = load_pretrained(folder)
    expected = reference.encode(texts)  # (n, D) unit length
    assert artifact.tokenizer_path is not None
    session = ort.InferenceSession(str(artifact.model_path), providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer(artifact.tokenizer_path, config.max_seq_length)
    graph = normalize_rows(embed_texts(session, tokenizer, texts))
    assert cosine_rows(graph, expected).min() >= EXACT

    exact = ServiceSettings(artifact=output, backend="onnxruntime", precision="fp32")
    with in_process(exact) as client:
        served = embed(client, texts)
    assert cosine_rows(served, expected).min() >= EXACT

    measured = config.bf16_min_cosine
    if native_bf16_reason() is None:  # measured at export where the service could run bf16
        assert measured is not None and measured == manifest["extras"]["bf16"]["min_cosine_vs_fp32"]
    with in_process(ServiceSettings(artifact=output)) as client:
        backend = client.get("/info").json()["backend"]
        default = cosine_rows(embed(client, texts), expected).min()
    if measured is not None and measured < ACCURACY_FLOOR:
        assert backend["precision"] == "fp32", backend  # auto never serves it under the floor
    assert default >= BF16_FLOOR, (
        f"{kind}: the default backend ({backend['name']} {backend['precision']}) min cosine "
        f"{default:.6f} against the PyTorch encoder is under its floor {BF16_FLOOR}"
    )
    assert np.isfinite(served).all()
