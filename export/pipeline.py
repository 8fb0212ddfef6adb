"""One export, step by step: load, export, check, parity, extras, write, commit, summarise.

Each step is a call into a module that does one job; this module only sequences them, keeps
what the manifest needs, and prints one progress line per step.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort

from models import Tokenizer

from . import artifact as fmt
from .artifact import with_int8
from .bf16 import bf16_agreement, bf16_score_agreement, native_bf16_reason
from .calibrate import write_calibration
from .errors import ValidationError
from .manifest import build_manifest, file_entries, idempotence
from .onnx_export import (
    ATTENTION_CHOICE,
    EXTERNAL_DATA_THRESHOLD,
    export_onnx,
    prepare_for_export,
    weight_bytes,
)
from .optimize import convert_fp16, optimize_transformer
from .options import ExportOptions
from .output_dir import check_output, commit, discard, make_staging
from .parity import ParityGrid, ParityReport, grid_shapes
from .progress import Progress, say
from .quantize import TOP_K, measure_int8, quantize_int8
from .records import determinants, serving_config
from .source import load_source, source_folder
from .summary import count, summary
from .validate import check_model, check_signature, open_session, require_device, signature


@dataclass(frozen=True)
class ExportResult:
    output: Path
    manifest: dict[str, Any]


def _parity_failure(report: ParityReport, output: Path) -> ValidationError:
    worst = report.worst_case()
    cosine = "" if report.min_cosine is None else f" (min cosine {report.min_cosine:.6f})"
    return ValidationError(
        f"parity failed for {report.label}: max abs difference {report.worst:.3g} in "
        f"{report.worst_output} at batch {worst['batch']} x seq {worst['seq']} exceeds --atol "
        f"{report.atol:g}{cosine}; {output} was left unchanged"
    )


def export_model(options: ExportOptions) -> ExportResult:
    """Run one export; raises ExportError (user input) or ValidationError (graph) on failure."""
    options.validate()
    require_device(options.device)
    output = options.output.expanduser().resolve()
    _, folder = source_folder(options.model)
    protected = [folder] + ([options.tokenizer] if options.tokenizer else [])
    previous = check_output(output, force=options.force, protected=protected)
    # bf16 is measured where the service's auto choice could run it: an fp32 graph, native bf16.
    measure_bf16 = options.precision == "fp32" and native_bf16_reason() is None
    steps = 7 + int(options.optimize) + int(options.quantize is not None) + int(measure_bf16)
    progress = Progress(steps)
    extras: dict[str, Any] = {}

    with progress.step("load", f"load model {options.model}") as result:
        source = load_source(options.model, options.tokenizer)
        model = prepare_for_export(source.encoder, options.attention, options.max_seq_length)
        cfg = model.config
        params = sum(p.numel() for p in model.parameters())
        result.append(
            f"{source.kind}, {cfg.n_layers} layers, d={cfg.d_model}, {count(params)} params"
        )
        if source.tokenizer_file is None:
            result.append("no tokenizer.json (the artifact will take token ids only)")
        if cfg.task != "embedding":
            result.append(f"{cfg.task}, labels {source.labels}")
        options.check_source(cfg.task, source.tokenizer_file is not None)
    # An embedder with a tokenizer gets calibration vectors (real text needs the tokenizer),
    # written in the write step: the step count is printed before the source is known.
    calibrate = cfg.task == "embedding" and source.tokenizer_file is not None

    staging = make_staging(output)
    work = Path(tempfile.mkdtemp(prefix="export-work-"))
    try:
        external = options.external_data == "always" or (
            options.external_data == "auto" and weight_bytes(model) > EXTERNAL_DATA_THRESHOLD
        )
        fp32_path = work / "model.fp32.onnx" if options.fp16 else staging / fmt.MODEL_FILE
        model_path = staging / fmt.MODEL_FILE
        title = f"export ({options.exporter}, {options.attention} attention, opset {options.opset})"
        with progress.step("export", title) as result:
            graph = export_onnx(
                model,
                fp32_path,
                opset=options.opset,
                exporter=options.exporter,
                external_data=external,
                verbose=options.verbose,
            )
            if options.fp16:
                convert_fp16(fp32_path, model_path, external_data=external, verbose=options.verbose)
            result.append(f"{graph.nodes} nodes" + (", external data" if external else ""))

        with progress.step("check", "onnx.checker (full) and signature") as result:
            check_model(model_path)
            inputs, outputs = signature(model_path)
            width = cfg.d_model if cfg.task == "embedding" else cfg.num_labels
            check_signature(inputs, outputs, width, cfg.task)

        with progress.step("session", "load in ONNX Runtime") as result:
            session = open_session(model_path, options.device)
            result.append(session.get_providers()[0])

        shapes = len(grid_shapes(cfg.max_seq_length))
        with progress.step("parity", f"parity vs PyTorch ({shapes} shapes)") as result:
            grid = ParityGrid(
                source.encoder,
                max_seq_length=cfg.max_seq_length,
                pad_id=cfg.pad_token_id,
                seed=options.seed,
                device=options.device,
            )
            report = grid.check(session, options.tolerance, fmt.MODEL_FILE)
            del session
            result.append(_parity_text(report))
            if not report.passed:
                raise _parity_failure(report, output)

        if measure_bf16:
            data = "text" if cfg.task == "embedding" else "pairs"
            with progress.step("bf16", f"OpenVINO bf16 vs fp32 on real {data}") as result:
                if source.tokenizer_file is None:
                    result.append("skipped: no tokenizer, so no real text")
                else:
                    tok = Tokenizer(source.tokenizer_file, cfg.max_seq_length, cfg.pad_token_id)
                    extras["bf16"] = _measure_bf16(model_path, tok, cfg.task)
                    result.append(_bf16_text(extras["bf16"]))

        if options.optimize:
            with progress.step("optimize", "ORT transformer fusions") as result:
                opt_path = staging / fmt.OPTIMIZED_FILE
                info = optimize_transformer(
                    fp32_path,
                    opt_path,
                    num_heads=cfg.n_heads,
                    hidden_size=cfg.d_model,
                    use_gpu=options.device == "cuda",
                    external_data=external,
                    fp16=options.fp16,
                    verbose=options.verbose,
                )
                check_model(opt_path)
                opt_report = grid.check(
                    open_session(opt_path, options.device), options.tolerance, fmt.OPTIMIZED_FILE
                )
                info["parity"] = opt_report.to_dict()
                extras["optimized"] = {"file": fmt.OPTIMIZED_FILE, **info}
                fused = sum(info["fused_operators"].values())
                result.append(f"{fused} fused ops, {_parity_text(opt_report)}")
                if not opt_report.passed:
                    raise _parity_failure(opt_report, output)

        if options.quantize == "int8":
            with progress.step("int8", "static int8, calibrated on real text") as result:
                int8_path = staging / fmt.INT8_FILE
                assert source.tokenizer_file is not None  # options.check_source saw to it
                tokenizer = Tokenizer(source.tokenizer_file, cfg.max_seq_length, cfg.pad_token_id)
                recipe = quantize_int8(
                    fp32_path,
                    int8_path,
                    tokenizer,
                    external_data=external,
                    verbose=options.verbose,
                )
                check_model(int8_path)
                accuracy = measure_int8(open_session(fp32_path), int8_path, tokenizer)
                extras["int8"] = {"file": fmt.INT8_FILE, "recipe": recipe, **accuracy}
                result.append(_int8_text(accuracy))

        written = "tokenizer, calibration vectors" if calibrate else "tokenizer"
        with progress.step("write", f"write {written}, serving config, manifest") as result:
            if source.tokenizer_file is not None:
                shutil.copyfile(source.tokenizer_file, staging / fmt.TOKENIZER_FILE)
            if calibrate:
                assert source.tokenizer_file is not None  # calibrate says so
                tok = Tokenizer(source.tokenizer_file, cfg.max_seq_length, cfg.pad_token_id)
                extras["calibration"] = write_calibration(fp32_path, tok, staging)
                result.append(_calibration_text(extras["calibration"]))
            serving = with_int8(
                serving_config(source, model, options, extras.get("bf16", {})),
                extras.get("int8"),
            )
            fmt.write_json(staging / fmt.SERVING_CONFIG_FILE, serving.to_dict())
            files = file_entries(staging)
            chosen = determinants(source, model, options)
            manifest = build_manifest(
                model={
                    "name": source.name,
                    "source": source.given,
                    "source_path": str(source.folder),
                    "source_kind": source.kind,
                    "task": cfg.task,
                    "labels": source.labels,
                    "config": cfg.to_dict(),
                    "parameters": params,
                    "normalize_module": source.normalize_module,
                    "tokenizer": str(source.tokenizer_file) if source.tokenizer_file else None,
                    "prompts": source.prompts,
                    "default_prompt_name": source.default_prompt_name,
                },
                graph={**graph.to_dict(), "choice": ATTENTION_CHOICE},
                inputs=inputs,
                outputs=outputs,
                validation={
                    "checker": "onnx.checker.check_model(path, full_check=True)",
                    "signature": "ok",
                    "onnxruntime_providers": ort.get_available_providers(),
                    "parity": report.to_dict(),
                    "passed": True,
                },
                extras=extras,
                files=files,
                options={**options.to_dict(), "precision": options.precision},
                determinants=chosen,
                idempotent=idempotence(files, chosen, previous),
                timings=progress.timings,
            )
            fmt.write_json(staging / fmt.MANIFEST_FILE, manifest)
            same = manifest["idempotence"]["previous_export"]
            if same is not None:
                result.append(
                    "same hashes as the previous export"
                    if same["same_hashes"]
                    else f"changed vs previous export: {same['changed_files']}"
                )

        with progress.step("commit", f"move into {output}"):
            commit(staging, output)
    except BaseException:
        discard(staging)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)

    say(summary(output, manifest))
    return ExportResult(output, manifest)


def _measure_bf16(path: Path, tokenizer: Tokenizer, task: str) -> dict[str, Any]:
    """OpenVINO bf16 against the fp32 graph: embeddings on texts, or scores on pairs."""
    measure = bf16_agreement if task == "embedding" else bf16_score_agreement
    return measure(path, tokenizer)


def _bf16_text(bf16: dict[str, Any]) -> str:
    if "min_cosine_vs_fp32" in bf16:
        return f"min cosine {bf16['min_cosine_vs_fp32']:.6f} on {bf16['texts']} texts"
    return f"max|score diff| {bf16['max_abs_score']:.2g} on {bf16['pairs']} pairs"


def _calibration_text(calibration: dict[str, Any]) -> str:
    return (
        f"{calibration['file']}: {calibration['texts']} texts x {calibration['dimension']} "
        "(every other text of common.texts)"
    )


def _int8_text(accuracy: dict[str, Any]) -> str:
    return (
        f"min cosine vs fp32 {accuracy['min_cosine_vs_fp32']:.5f}, mean "
        f"{accuracy['mean_cosine_vs_fp32']:.5f}, top-{TOP_K} agreement "
        f"{accuracy[f'top{TOP_K}_agreement']:.3f} on {accuracy['texts']} texts"
    )


def _parity_text(report: ParityReport) -> str:
    verdict = "ok" if report.passed else "FAILED"
    cosine = "" if report.min_cosine is None else f", min cosine {report.min_cosine:.7f}"
    return f"max|diff| {report.worst:.2g} (atol {report.atol:g}){cosine} {verdict}"
