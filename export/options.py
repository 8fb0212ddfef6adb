"""The typed options of one export, and the checks that can be made before any work starts."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from .errors import ExportError

Device = Literal["cpu", "cuda"]
Exporter = Literal["dynamo", "torchscript"]
AttentionForm = Literal["math", "sdpa"]
ExternalData = Literal["auto", "always", "never"]
Quantization = Literal["int8"]

# Opset 20 is the default because it has a native Gelu op: the dynamo exporter emits it instead
# of an Erf-based subgraph, and ONNX Runtime fuses it with the bias (BiasGelu). See docs/export.md.
DEFAULT_OPSET = 20
# The dynamo exporter implements opsets 18..25 (17 by down-conversion; above 25 it silently
# writes a model ONNX Runtime rejects). The TorchScript exporter stops at 20 in practice.
SUPPORTED_OPSETS: dict[Exporter, range] = {"dynamo": range(17, 26), "torchscript": range(17, 21)}
# fp32: two fp32 computations of all-mpnet-base-v2 (12 layers, 768 wide) differ by up to
# 3.1e-4 on the grid's left-padded random ids (PyTorch 8.9e-5 and ONNX Runtime 6.8e-5 from a
# float64 run); MiniLM's differ by 7e-6. A masking or graph bug moves outputs by 1e-1 and more.
DEFAULT_ATOL = {"fp32": 1e-3, "fp16": 5e-2}


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    """One export request; the CLI builds it from argv, tests and scripts build it directly."""

    model: str
    output: Path
    opset: int = DEFAULT_OPSET
    max_seq_length: int | None = None  # None: the model config's own
    device: Device = "cpu"
    fp16: bool = False
    optimize: bool = False
    quantize: Quantization | None = None
    atol: float | None = None  # None: DEFAULT_ATOL for the precision
    force: bool = False
    tokenizer: Path | None = None  # overrides (or supplies) the source folder's tokenizer.json
    normalize: bool = True
    attention: AttentionForm = "math"
    exporter: Exporter = "dynamo"
    external_data: ExternalData = "auto"
    seed: int = 0
    verbose: bool = False

    @property
    def precision(self) -> str:
        return "fp16" if self.fp16 else "fp32"

    @property
    def tolerance(self) -> float:
        return self.atol if self.atol is not None else DEFAULT_ATOL[self.precision]

    def validate(self) -> None:
        """Reject impossible combinations before loading anything (cheap, clear errors)."""
        _check_choice("exporter", self.exporter, Exporter)
        _check_choice("attention form", self.attention, AttentionForm)
        _check_choice("device", self.device, Device)
        _check_choice("external data setting", self.external_data, ExternalData)
        if self.quantize is not None:
            _check_choice("quantization", self.quantize, Quantization)
        supported = SUPPORTED_OPSETS[self.exporter]
        if self.opset not in supported:
            raise ExportError(
                f"unsupported opset {self.opset} for the {self.exporter} exporter; "
                f"use {supported.start}..{supported.stop - 1} (default {DEFAULT_OPSET})"
            )
        if self.fp16 and self.device != "cuda":
            raise ExportError("--fp16 is for GPU inference; add --device cuda")
        if self.atol is not None and not self.atol > 0:
            raise ExportError(f"--atol must be positive, got {self.atol}")
        if self.max_seq_length is not None and self.max_seq_length < 1:
            raise ExportError(f"--max-seq-length must be positive, got {self.max_seq_length}")
        if self.tokenizer is not None and not Path(self.tokenizer).is_file():
            raise ExportError(f"tokenizer file {self.tokenizer} does not exist")

    def check_source(self, task: str, has_tokenizer: bool) -> None:
        """Refuse what the loaded model cannot have, before exporting anything.

        ``--optimize`` runs ONNX Runtime's BERT fusions and checks them with embedding outputs,
        and ``--quantize int8`` is judged by embedding cosine: neither has been built or
        measured for a classifier's logits, so a cross-encoder exports fp32 only. int8 is
        calibrated on real text, so it needs the model's tokenizer.
        """
        chosen = [
            flag
            for flag, on in (("--optimize", self.optimize), ("--quantize", self.quantize))
            if on
        ]
        if task != "embedding" and chosen:
            raise ExportError(
                f"{' and '.join(chosen)} are for embedding models; this is a {task} model "
                "(a *ForSequenceClassification checkpoint): export it without them"
            )
        if self.quantize is not None and not has_tokenizer:
            raise ExportError(
                "--quantize int8 is calibrated on real text, and this model has no tokenizer: "
                "give one with --tokenizer"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for the manifest; paths as given (the output path is the artifact)."""
        data = asdict(self)
        data["output"] = str(self.output)
        data["tokenizer"] = None if self.tokenizer is None else str(self.tokenizer)
        data["atol"] = self.tolerance
        del data["verbose"]
        return data


def _check_choice(what: str, value: str, choices: object) -> None:
    """Options built in code bypass argparse's ``choices``: the same ``Literal`` checks here."""
    allowed = get_args(choices)
    if value not in allowed:
        raise ExportError(f"unknown {what} {value!r}; use {' or '.join(allowed)}")
