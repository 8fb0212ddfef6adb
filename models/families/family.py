"""What reading one Hugging Face model family takes: its config translated, its tensors renamed."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from ..config import EncoderConfig, Pooling


@dataclass(frozen=True)
class SentenceSettings:
    """What a sentence-transformers folder says beside ``config.json``."""

    max_seq_length: int | None  # sentence_bert_config.json; None: as long as positions allow
    pooling: Pooling


# (``config.json`` as read, the folder for messages, sentence settings) -> our config.
ReadConfig = Callable[[dict[str, Any], Path, SentenceSettings], EncoderConfig]


@dataclass(frozen=True)
class Family:
    """One ``model_type``: how its ``config.json`` and tensor names become ours.

    A tensor that fits no rule and is not ``ignored`` keeps its name, so loading fails on it
    by name (:func:`models.checkpoint.load_state`) rather than being dropped in silence.
    """

    model_type: str
    read_config: ReadConfig
    names: tuple[tuple[str, str], ...]  # (pattern on the Hugging Face name, ours); first wins
    ignored: re.Pattern[str]  # tensors sentence embedding does not use (heads, buffers)
    prefix: str = ""  # stripped first: the "bert." of a BertFor... checkpoint

    def rename(self, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        out = {}
        for name, tensor in tensors.items():
            name = name.removeprefix(self.prefix)
            if self.ignored.match(name):
                continue
            for pattern, ours in self.names:
                new, n = re.subn("^" + pattern, ours, name)
                if n:
                    name = new
                    break
            out[name] = tensor
        return out
