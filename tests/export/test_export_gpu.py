"""GPU export (--device cuda, --fp16): runs only where CUDA is available to torch and ORT."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from export import ExportOptions, export_model, load_artifact
from export.validate import cuda_available

pytestmark = pytest.mark.skipif(
    not cuda_available(), reason="needs CUDA in torch and onnxruntime-gpu's CUDAExecutionProvider"
)


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_cuda_export_passes_parity(
    fp16: bool, tiny_model: Callable[..., Path], tmp_path: Path
) -> None:
    output = tmp_path / "artifact"
    manifest = export_model(
        ExportOptions(model=str(tiny_model()), output=output, device="cuda", fp16=fp16)
    ).manifest
    assert manifest["validation"]["parity"]["provider"] == "CUDAExecutionProvider"
    assert load_artifact(output).config.precision == ("fp16" if fp16 else "fp32")
