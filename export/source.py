"""The model to export: a known name, a sentence-transformers folder, or our own folder.

Locating and loading are :mod:`models`' (:func:`models.load_encoder`); here every way that can
fail on user input (a :class:`models.CheckpointError` that names the reason) becomes an
:class:`ExportError` with the same message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from models import (
    CheckpointError,
    SentenceEncoder,
    SequenceClassifier,
    SourceKind,
    load_encoder,
    locate_model,
)

from .errors import ExportError

# What the export takes: an embedder, or a cross-encoder / classifier (a checkpoint whose
# config.json names a *ForSequenceClassification architecture).
Encoder = SentenceEncoder | SequenceClassifier


@dataclass(frozen=True)
class ModelSource:
    """The loaded encoder and where it came from (recorded in the manifest); ``labels`` name a
    classifier's logits in id order (empty for an embedder)."""

    name: str
    given: str  # the --model argument as typed
    folder: Path
    kind: SourceKind
    encoder: Encoder
    tokenizer_file: Path | None
    normalize_module: bool  # a sentence-transformers Normalize module follows pooling
    prompts: dict[str, str] = field(default_factory=dict)  # name -> text put before inputs
    default_prompt_name: str | None = None
    labels: list[str] = field(default_factory=list)

    @property
    def task(self) -> str:
        """embedding, rerank or classify (``artifact.TASKS``), from the encoder's config."""
        return self.encoder.config.task


def source_folder(name_or_path: str) -> tuple[str, Path]:
    """(model name, folder) without loading anything: cheap checks come before slow work.

    A folder that is neither ours nor has a ``config.json`` is refused here, before anyone
    reads or hashes what may be a large unrelated tree (``python -m service --model ~``).
    """
    try:
        location = locate_model(name_or_path)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from exc
    folder = location.folder
    if location.kind == "pretrained-folder" and not (folder / "config.json").is_file():
        raise ExportError(
            f"{folder} is not a model folder: it has no config.json (a sentence-transformers "
            "or transformers checkpoint) nor encoder_config.json (models.save_model)"
        )
    return location.name, folder


def load_source(name_or_path: str, tokenizer: Path | None = None) -> ModelSource:
    """Locate and load ``name_or_path``; ``tokenizer`` overrides the folder's tokenizer.json."""
    try:
        loaded = load_encoder(name_or_path, tokenizer)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from exc
    return ModelSource(
        name=loaded.location.name,
        given=str(name_or_path),
        folder=loaded.location.folder,
        kind=loaded.location.kind,
        encoder=loaded.encoder,
        tokenizer_file=loaded.tokenizer.path if loaded.tokenizer else None,
        normalize_module=loaded.normalize_module,
        prompts=dict(loaded.prompts),
        default_prompt_name=loaded.default_prompt_name,
        labels=list(loaded.labels),
    )
