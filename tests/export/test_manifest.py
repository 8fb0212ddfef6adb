"""The manifest's account of why a re-export's files differ from the export it replaced."""

from __future__ import annotations

from typing import Any

import pytest

from export.manifest import idempotence

FILES = {"model.onnx": {"sha256": "a"}, "tokenizer.json": {"sha256": "b"}}
INPUTS = {"model": "m", "opset": 20}


def previous(files: dict[str, Any], inputs: dict[str, Any] = INPUTS) -> dict[str, Any]:
    return {"exported_at": "then", "files": files, "determinants": inputs}


@pytest.mark.parametrize(
    ("now", "inputs", "reason"),
    [
        ({**FILES, "model.onnx": {"sha256": "c"}}, {**INPUTS, "opset": 21}, "inputs changed"),
        ({**FILES, "calibration.npy": {"sha256": "d"}}, INPUTS, "another exporter version"),
        ({"model.onnx": {"sha256": "a"}}, INPUTS, "another exporter version"),
        ({**FILES, "model.onnx": {"sha256": "c"}}, INPUTS, "not deterministic"),
    ],
)
def test_the_reason_a_re_export_differs(
    now: dict[str, Any], inputs: dict[str, Any], reason: str
) -> None:
    report = idempotence(now, inputs, previous(FILES))["previous_export"]
    assert not report["same_hashes"] and reason in report["reason"]


def test_the_same_files_give_the_same_hashes() -> None:
    report = idempotence(FILES, INPUTS, previous(FILES))["previous_export"]
    assert report["same_hashes"] and "reason" not in report
