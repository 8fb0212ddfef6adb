"""``python -m export``: argv -> :class:`ExportOptions` -> :func:`export_model` -> exit code.

Errors a user can cause become one line on stderr and exit code 2 (see :mod:`export.errors`);
validation failures exit 1; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

from .errors import ExportError
from .options import (
    DEFAULT_ATOL,
    DEFAULT_OPSET,
    SUPPORTED_OPSETS,
    AttentionForm,
    Device,
    Exporter,
    ExportOptions,
    ExternalData,
    Quantization,
)

DESCRIPTION = """Export an encoder to an ONNX artifact folder, validated against PyTorch.

MODEL is all-MiniLM-L6-v2, a sentence-transformers folder, a transformers folder (an embedder,
or a *ForSequenceClassification cross-encoder or classifier: the artifact's task is then rerank
or classify and its output raw logits), or a folder written by models.save_model. DIR receives
model.onnx, tokenizer.json, serving_config.json, manifest.json and the optional extras; see
docs/export.md."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m export",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="NAME_OR_PATH",
        help="all-MiniLM-L6-v2, a sentence-transformers or transformers folder (embedder or "
        "cross-encoder), or a models.save_model folder",
    )
    p.add_argument(
        "--output",
        required=True,
        type=Path,
        metavar="DIR",
        help="artifact folder to write (an existing artifact there is replaced)",
    )
    opsets = SUPPORTED_OPSETS["dynamo"]
    p.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset, {opsets.start}..{opsets.stop - 1} (default {DEFAULT_OPSET})",
    )
    p.add_argument(
        "--max-seq-length", type=int, help="tokens per input (default: the model's config)"
    )
    p.add_argument("--device", choices=get_args(Device), default="cpu")
    p.add_argument("--fp16", action="store_true", help="fp16 weights for GPU (needs --device cuda)")
    p.add_argument(
        "--optimize", action="store_true", help="also write model.optimized.onnx (ORT fusions)"
    )
    p.add_argument(
        "--quantize",
        choices=get_args(Quantization),
        help="also write model.int8.onnx (static int8, calibrated on real text; the service's "
        "--precision int8 serves it)",
    )
    p.add_argument(
        "--atol",
        type=float,
        help=f"parity tolerance, max abs difference (default {DEFAULT_ATOL['fp32']:g}; "
        f"{DEFAULT_ATOL['fp16']:g} with --fp16)",
    )
    p.add_argument(
        "--force", action="store_true", help="replace DIR even if it is not an export artifact"
    )
    p.add_argument(
        "--tokenizer", type=Path, metavar="FILE", help="tokenizer.json to ship (overrides MODEL's)"
    )
    p.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="serving config: L2-normalise sentence embeddings by default (default: yes)",
    )
    p.add_argument(
        "--attention",
        choices=get_args(AttentionForm),
        default="math",
        help="attention form traced into the graph (default math: the leaner graph)",
    )
    p.add_argument("--exporter", choices=get_args(Exporter), default="dynamo")
    p.add_argument(
        "--external-data",
        choices=get_args(ExternalData),
        default="auto",
        help="weights in model.onnx.data (auto: when they exceed 1 GiB)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random parity inputs")
    p.add_argument("--verbose", action="store_true", help="show the exporters' own output")
    return p


def parse_options(argv: Sequence[str] | None = None) -> ExportOptions:
    args = build_parser().parse_args(argv)
    return ExportOptions(
        model=args.model,
        output=args.output,
        opset=args.opset,
        max_seq_length=args.max_seq_length,
        device=args.device,
        fp16=args.fp16,
        optimize=args.optimize,
        quantize=args.quantize,
        atol=args.atol,
        force=args.force,
        tokenizer=args.tokenizer,
        normalize=args.normalize,
        attention=args.attention,
        exporter=args.exporter,
        external_data=args.external_data,
        seed=args.seed,
        verbose=args.verbose,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    try:
        from .pipeline import export_model  # heavy imports (torch, onnx) only once argv is sane

        export_model(options)
    except ExportError as exc:
        sys.stdout.flush()
        message = " ".join(str(exc).split())  # one line, whatever the cause embedded
        sys.stderr.write(f"error: {message}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    return 0
