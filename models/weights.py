"""A Hugging Face folder's weights as one name -> tensor dict, from whichever files it has.

``model.safetensors``, safetensors shards listed by ``model.safetensors.index.json``, or the
older pickled ``pytorch_model.bin`` (and its shards), read with ``weights_only=True`` so a file
cannot run code. Safetensors wins when a folder has both, as in ``transformers``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

from .checkpoint import CheckpointError
from .sentence_folder import read_json

Tensors = dict[str, torch.Tensor]


def _read_safetensors(path: Path) -> Tensors:
    return load_file(str(path))


def _read_pickle(path: Path) -> Tensors:
    return torch.load(path, map_location="cpu", weights_only=True)


# (single file, shard index, reader), in the order transformers prefers them.
FORMATS: tuple[tuple[str, str, Callable[[Path], Tensors]], ...] = (
    ("model.safetensors", "model.safetensors.index.json", _read_safetensors),
    ("pytorch_model.bin", "pytorch_model.bin.index.json", _read_pickle),
)


def _read(path: Path, reader: Callable[[Path], Tensors]) -> Tensors:
    try:
        tensors = reader(path)
    except Exception as exc:  # safetensors and pickle raise their own error types on bad files
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    if not isinstance(tensors, dict):
        raise CheckpointError(
            f"cannot read {path}: it holds a {type(tensors).__name__}, not tensors"
        )
    return tensors


def _read_shards(index: Path, reader: Callable[[Path], Tensors]) -> Tensors:
    """Every shard the index names; a tensor the index places in a shard must be there."""
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index} has no weight_map")
    tensors: Tensors = {}
    for shard in sorted(set(weight_map.values())):
        tensors.update(_read(index.parent / shard, reader))
    absent = sorted(name for name in weight_map if name not in tensors)
    if absent:
        raise CheckpointError(f"{index} lists tensors its shards do not hold: {absent[:5]}")
    return tensors


def read_weights(folder: Path) -> tuple[Tensors, str]:
    """All tensors of ``folder`` and the file they came from (for messages)."""
    for single, index, reader in FORMATS:
        if (folder / single).is_file():
            return _read(folder / single, reader), str(folder / single)
        if (folder / index).is_file():
            return _read_shards(folder / index, reader), str(folder / index)
    names = ", ".join(name for single, index, _ in FORMATS for name in (single, index))
    raise CheckpointError(f"{folder} has no weights: none of {names} (nor encoder_config.json)")
