"""The exported artifact folder: its file names, its serving config, and a validating reader.

This module is the seam between the export tool and the service, so it imports nothing beyond
the standard library: the service can read an artifact without pulling in torch or onnx.

Layout of an artifact folder::

    model.onnx             the graph (fp32, or fp16 with --fp16); inputs input_ids, attention_mask;
                           outputs token_embeddings (B, T, D), sentence_embedding (B, D) for an
                           embedder, logits (B, num_labels) (raw) for a cross-encoder/classifier
    model.onnx.data        its weights, only when exported with external data (large models)
    model.optimized.onnx   optional: ONNX Runtime transformer fusions (--optimize)
    model.int8.onnx        optional: static int8 (QDQ) calibrated on real text (--quantize int8)
    calibration.npy        an embedder's raw sentence_embedding (N, D) float32 for real calibration
                           texts (export.calibrate): the per-dimension ranges of the service's
                           int8/uint8 embedding types; absent for rerank/classify, for a model
                           without a tokenizer, and in artifacts exported before it existed
    tokenizer.json         the tokenizer, absent when the source model had none
    serving_config.json    what the service needs to run the model (see ServingConfig)
    manifest.json          provenance, hashes of every other file, validation report
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from .errors import ExportError

FORMAT = "embedserve.onnx-artifact"
FORMAT_VERSION = 1

MODEL_FILE = "model.onnx"
OPTIMIZED_FILE = "model.optimized.onnx"
INT8_FILE = "model.int8.onnx"
CALIBRATION_FILE = "calibration.npy"
TOKENIZER_FILE = "tokenizer.json"
SERVING_CONFIG_FILE = "serving_config.json"
MANIFEST_FILE = "manifest.json"
EXTERNAL_DATA_SUFFIX = ".data"  # model.onnx -> model.onnx.data

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAMES = ("token_embeddings", "sentence_embedding")  # an embedder's outputs
LOGITS = "logits"  # a cross-encoder's or classifier's one output, (B, num_labels), raw

# What a model computes: embeddings, one relevance logit per (query, document) pair (rerank), or
# a logit per label (classify). The same names as models.config.ModelTask, kept here because
# this module imports nothing beyond the standard library.
TASKS = ("embedding", "rerank", "classify")

Variant = Literal["default", "optimized", "int8"]
# Serving-config keys added after format 1 was released, with the value an older file means.
OPTIONAL: dict[str, Any] = {
    "prompts": {},
    "default_prompt_name": None,
    "bf16_min_cosine": None,
    "task": "embedding",
    "labels": [],
    "bf16_max_abs_score": None,
    "int8_min_cosine": None,
    "int8_mean_cosine": None,
    "int8_top10_agreement": None,
}


def task_outputs(task: str) -> tuple[str, ...]:
    """The graph outputs an artifact of ``task`` has, in order."""
    return OUTPUT_NAMES if task == "embedding" else (LOGITS,)


class ArtifactError(ExportError):
    """A folder that is not a complete, validated artifact (missing, corrupt or failed files)."""


@dataclass(frozen=True, kw_only=True)
class ServingConfig:
    """Everything the service needs to run ``model.onnx``: text to embeddings, or to scores.

    ``normalize`` tells the service to L2-normalise ``sentence_embedding``: the graph itself
    never normalises, so one artifact serves both normalised and raw requests.
    ``tokenizer`` is the tokenizer file name, or None when the artifact has no tokenizer (a
    random-config model saved without one): such an artifact accepts token ids only.
    ``prompts`` (name -> text put before each input, as sentence-transformers does) and
    ``default_prompt_name`` come from the checkpoint's ``config_sentence_transformers.json``;
    ``bf16_min_cosine`` is OpenVINO bf16 against the fp32 graph on real text, measured at export
    where the CPU has native bf16 (None: not measured); the service's ``auto`` runs bf16 only
    when it is not below the accuracy floor.

    ``task`` says what the graph computes (``TASKS``). For ``rerank`` and ``classify`` the one
    output is ``logits`` (B, num_labels), ``dimension`` is num_labels, ``labels`` names them in
    id order (the checkpoint's id2label), ``pooling`` is the head's and ``normalize`` is False;
    ``bf16_max_abs_score`` is the largest difference of OpenVINO bf16 scores (sigmoid of the
    one logit, softmax over several) from fp32 on real pairs, and ``bf16_min_cosine`` stays None.
    ``int8_min_cosine``, ``int8_mean_cosine`` and ``int8_top10_agreement`` are the int8
    variant's (``model.int8.onnx``) accuracy as served, measured at export on real text
    (export.quantize): cosine to the fp32 graph's vectors, and for each text the overlap of its
    10 nearest neighbours in the corpus under int8 and fp32; None without an int8 variant.
    These are optional keys (``OPTIONAL``), so artifacts exported before they existed still load,
    as embedders.
    """

    model_name: str
    dimension: int
    max_seq_length: int
    pooling: str
    normalize: bool
    pad_token_id: int
    vocab_size: int
    attention: str
    precision: str
    tokenizer: str | None
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    bf16_min_cosine: float | None = None
    task: str = "embedding"
    labels: list[str] = field(default_factory=list)
    bf16_max_abs_score: float | None = None
    int8_min_cosine: float | None = None
    int8_mean_cosine: float | None = None
    int8_top10_agreement: float | None = None
    input_names: tuple[str, ...] = INPUT_NAMES
    output_names: tuple[str, ...] = OUTPUT_NAMES
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_names"] = list(self.input_names)
        data["output_names"] = list(self.output_names)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = SERVING_CONFIG_FILE) -> ServingConfig:
        """Build from JSON data, checking every key and type so a bad file fails here, early."""
        types: dict[str, tuple[type, ...]] = {
            "model_name": (str,),
            "dimension": (int,),
            "max_seq_length": (int,),
            "pooling": (str,),
            "normalize": (bool,),
            "pad_token_id": (int,),
            "vocab_size": (int,),
            "attention": (str,),
            "precision": (str,),
            "tokenizer": (str, type(None)),
            "prompts": (dict,),
            "default_prompt_name": (str, type(None)),
            "bf16_min_cosine": (float, type(None)),
            "task": (str,),
            "labels": (list,),
            "bf16_max_abs_score": (float, type(None)),
            "int8_min_cosine": (float, type(None)),
            "int8_mean_cosine": (float, type(None)),
            "int8_top10_agreement": (float, type(None)),
            "input_names": (list,),
            "output_names": (list,),
            "format_version": (int,),
        }
        known = {f.name for f in fields(cls)}
        missing = sorted(known - set(data) - set(OPTIONAL))
        data = {**OPTIONAL, **data}
        if missing:
            raise ArtifactError(f"{source} lacks keys {missing}")
        for key, allowed in types.items():
            value = data[key]
            # bool is an int subclass: a JSON true must not pass as a dimension.
            if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
                raise ArtifactError(f"{source}: {key} has the wrong type ({value!r})")
        prompts = data["prompts"]
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in prompts.items()):
            raise ArtifactError(f"{source}: prompts must map names to texts ({prompts!r})")
        default = data["default_prompt_name"]
        if default is not None and default not in prompts:
            raise ArtifactError(f"{source}: default_prompt_name {default!r} is not in prompts")
        _check_task(data, source)
        if data["format_version"] != FORMAT_VERSION:
            raise ArtifactError(
                f"{source}: format_version {data['format_version']} is not supported "
                f"(this reader knows {FORMAT_VERSION}); re-export the model"
            )
        values = {k: data[k] for k in known}
        values["prompts"] = dict(prompts)
        values["labels"] = list(data["labels"])
        values["input_names"] = tuple(values["input_names"])
        values["output_names"] = tuple(values["output_names"])
        return cls(**values)


def with_int8(config: ServingConfig, measured: dict[str, Any] | None) -> ServingConfig:
    """``config`` with the int8 variant's measured accuracy (``export.quantize.int8_accuracy``'s
    keys), or unchanged when there is none."""
    if measured is None:
        return config
    return replace(
        config,
        int8_min_cosine=measured["min_cosine_vs_fp32"],
        int8_mean_cosine=measured["mean_cosine_vs_fp32"],
        int8_top10_agreement=measured["top10_agreement"],
    )


def _check_task(data: dict[str, Any], source: str) -> None:
    """The task is known, its labels fit its logits, and the outputs are the task's."""
    task, labels = data["task"], data["labels"]
    if task not in TASKS:
        raise ArtifactError(f"{source}: task {task!r} is not one of {list(TASKS)}")
    if not all(isinstance(label, str) for label in labels):
        raise ArtifactError(f"{source}: labels must be a list of strings ({labels!r})")
    if task != "embedding" and len(labels) != data["dimension"]:
        raise ArtifactError(
            f"{source}: {len(labels)} labels for {data['dimension']} logits (dimension)"
        )
    expected = list(task_outputs(task))
    if list(data["output_names"]) != expected:
        raise ArtifactError(
            f"{source}: a {task} artifact has outputs {expected}, not {data['output_names']}"
        )


@dataclass(frozen=True)
class Artifact:
    """A validated artifact folder, as returned by :func:`load_artifact`."""

    root: Path
    config: ServingConfig
    manifest: dict[str, Any]
    model_path: Path
    tokenizer_path: Path | None
    optimized_path: Path | None
    int8_path: Path | None
    calibration_path: Path | None = None  # CALIBRATION_FILE, when the export wrote one

    def variant(self, name: Variant = "default") -> Path:
        """Path of one model variant; an error naming what exists when it was not exported."""
        paths = {
            "default": self.model_path,
            "optimized": self.optimized_path,
            "int8": self.int8_path,
        }
        if name not in paths:
            raise ArtifactError(f"unknown variant {name!r}; use one of {sorted(paths)}")
        path = paths[name]
        if path is None:
            have = sorted(k for k, p in paths.items() if p is not None)
            raise ArtifactError(f"{self.root} has no {name} model (it has {have})")
        return path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Stable JSON (sorted keys, fixed indent, trailing newline) so equal data hashes equally."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of an artifact folder, or None when ``folder`` is not one."""
    path = folder / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    return data


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path.parent} has no {path.name}; is it an export artifact?") from exc
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{path} does not hold a JSON object")
    return data


def _check_files(folder: Path, manifest: dict[str, Any], verify_hashes: bool) -> None:
    files = manifest.get("files")
    if not isinstance(files, dict) or MODEL_FILE not in files:
        raise ArtifactError(f"{folder / MANIFEST_FILE} lists no files (or no {MODEL_FILE})")
    for name, entry in sorted(files.items()):
        path = folder / name
        if not path.is_file():
            raise ArtifactError(f"{folder} is incomplete: {name} is listed but missing")
        if verify_hashes and sha256_file(path) != entry.get("sha256"):
            raise ArtifactError(f"{path} does not match its sha256 in the manifest (corrupt?)")


def load_artifact(folder: str | Path, *, verify_hashes: bool = True) -> Artifact:
    """Read and validate an artifact folder written by ``python -m export``.

    Checks that the manifest is ours and says validation passed, that every listed file is
    present (and, with ``verify_hashes``, matches its sha256), and that the serving config is
    complete. Raises :class:`ArtifactError` with one line saying what is wrong.
    """
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise ArtifactError(f"artifact folder {root} does not exist")
    manifest = _read_json(root / MANIFEST_FILE)
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"{root / MANIFEST_FILE} is not an {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{root} has artifact format {manifest.get('format_version')}, this reader knows "
            f"{FORMAT_VERSION}; re-export the model"
        )
    if manifest.get("validation", {}).get("passed") is not True:
        raise ArtifactError(f"{root}: the manifest does not record a passed validation")
    _check_files(root, manifest, verify_hashes)
    config = ServingConfig.from_dict(
        _read_json(root / SERVING_CONFIG_FILE), str(root / SERVING_CONFIG_FILE)
    )
    tokenizer = root / config.tokenizer if config.tokenizer else None
    if tokenizer is not None and not tokenizer.is_file():
        raise ArtifactError(f"{root}: serving config names {config.tokenizer}, which is missing")

    def optional(name: str) -> Path | None:
        return root / name if name in manifest["files"] else None

    return Artifact(
        root=root,
        config=config,
        manifest=manifest,
        model_path=root / MODEL_FILE,
        tokenizer_path=tokenizer,
        optimized_path=optional(OPTIMIZED_FILE),
        int8_path=optional(INT8_FILE),
        calibration_path=optional(CALIBRATION_FILE),
    )
