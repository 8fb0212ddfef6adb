"""Loading the model to export: a known name, a sentence-transformers folder, or our own folder.

Every way loading can fail on user input (unknown name, missing or corrupt weights, a config
the encoder rejects, an unreadable tokenizer) becomes an :class:`ExportError` with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from models import CheckpointError, SentenceEncoder, Tokenizer, load_model
from models.checkpoint import TOKENIZER_FILE, is_checkpoint
from models.pretrained import KNOWN_MODELS, load_hf_folder, resolve

from .errors import ExportError

SourceKind = Literal["known-name", "pretrained-folder", "checkpoint"]


@dataclass(frozen=True)
class ModelSource:
    """The loaded encoder and where it came from (recorded in the manifest)."""

    name: str
    given: str  # the --model argument as typed
    folder: Path
    kind: SourceKind
    encoder: SentenceEncoder
    tokenizer_file: Path | None
    normalize_module: bool  # a sentence-transformers Normalize module follows pooling


def _has_normalize_module(folder: Path) -> bool:
    modules = folder / "modules.json"
    if not modules.is_file():
        return False
    try:
        entries = json.loads(modules.read_text())
    except (OSError, ValueError):
        return False
    return any(str(m.get("type", "")).endswith(".Normalize") for m in entries)


def _check_tokenizer(path: Path, encoder: SentenceEncoder) -> None:
    """The tokenizer must load and must not produce ids beyond the embedding table."""
    try:
        tokenizer = Tokenizer(path, encoder.config.max_seq_length)
    except Exception as exc:  # tokenizers raises its own exception types for bad files
        raise ExportError(f"cannot read tokenizer {path}: {exc}") from exc
    if tokenizer.vocab_size > encoder.config.vocab_size:
        raise ExportError(
            f"tokenizer {path} has {tokenizer.vocab_size} tokens but the model only "
            f"{encoder.config.vocab_size}"
        )


def source_folder(name_or_path: str) -> tuple[str, Path]:
    """(model name, folder) without loading anything: cheap checks come before slow work."""
    try:
        return resolve(name_or_path)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from exc


def load_source(name_or_path: str, tokenizer: Path | None = None) -> ModelSource:
    """Resolve and load ``name_or_path``; ``tokenizer`` overrides the folder's tokenizer.json."""
    name, folder = source_folder(name_or_path)
    checkpoint = is_checkpoint(folder)
    try:
        encoder = load_model(folder) if checkpoint else load_hf_folder(folder)
    except (ValueError, KeyError, TypeError, OSError) as exc:  # CheckpointError is a ValueError
        detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ExportError(f"cannot load model {name_or_path!r}: {detail}") from exc
    tokenizer_file = Path(tokenizer) if tokenizer is not None else folder / TOKENIZER_FILE
    if tokenizer_file.is_file():
        _check_tokenizer(tokenizer_file, encoder)
    else:
        tokenizer_file = None
    kind: SourceKind = "checkpoint" if checkpoint else "pretrained-folder"
    if name_or_path in KNOWN_MODELS:
        kind = "known-name"
    return ModelSource(
        name=name,
        given=str(name_or_path),
        folder=folder,
        kind=kind,
        encoder=encoder,
        tokenizer_file=tokenizer_file,
        normalize_module=_has_normalize_module(folder),
    )
