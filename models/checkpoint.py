"""Saving and loading an encoder as a folder: ``encoder_config.json`` + ``encoder.safetensors``.

The file names differ from Hugging Face's (``config.json``/``model.safetensors``) so a folder is
never mistaken for the other format.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .classifier import SequenceClassifier
from .config import EncoderConfig
from .model import EncoderTrunk, SentenceEncoder

CONFIG_FILE = "encoder_config.json"
WEIGHTS_FILE = "encoder.safetensors"
TOKENIZER_FILE = "tokenizer.json"


class CheckpointError(ValueError):
    """A model folder that cannot be loaded as it is: missing files, wrong names or shapes."""


def is_checkpoint(folder: Path) -> bool:
    return (folder / CONFIG_FILE).is_file()


def save_model(
    model: EncoderTrunk, folder: str | Path, tokenizer_file: str | Path | None = None
) -> Path:
    """Write config and weights (and a copy of ``tokenizer_file``, if given) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save(folder / CONFIG_FILE)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, str(folder / WEIGHTS_FILE))
    if tokenizer_file is not None:
        shutil.copyfile(tokenizer_file, folder / TOKENIZER_FILE)
    return folder


def load_state(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``tensors`` into ``model``; any missing, unexpected or mis-shaped name is an error."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [
        f"{k}: checkpoint {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {missing}")
    if unexpected:
        problems.append(f"unexpected {unexpected}")
    if wrong:
        problems.append(f"wrong shapes {wrong}")
    if problems:
        raise CheckpointError(f"weights in {source} do not fit the model: " + "; ".join(problems))
    model.load_state_dict(tensors, strict=True)


def load_model(folder: str | Path) -> SentenceEncoder | SequenceClassifier:
    """Load a folder written by :func:`save_model`, in eval mode: a classifier when its config
    has labels (``num_labels`` > 0), an embedder otherwise."""
    folder = Path(folder)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder} has no {name}; is it a folder saved by save_model?")
    config = EncoderConfig.load(folder / CONFIG_FILE)
    model = SentenceEncoder(config) if config.task == "embedding" else SequenceClassifier(config)
    try:
        tensors = load_file(str(folder / WEIGHTS_FILE))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"cannot read {folder / WEIGHTS_FILE}: {exc}") from exc
    load_state(model, tensors, str(folder / WEIGHTS_FILE))
    return model.eval()
