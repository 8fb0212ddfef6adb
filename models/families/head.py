"""How a family reads a ``*ForSequenceClassification`` checkpoint's head: its tensor names and
the EncoderConfig fields that shape it (:class:`models.heads.ClassificationHead`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# (``config.json`` as read, the folder for messages) -> the EncoderConfig fields of a
# classification head (pooling, head_*, segment_separator).
ReadHead = Callable[[dict[str, Any], Path], dict[str, Any]]


def first_token_head(cfg: dict[str, Any], folder: Path) -> dict[str, Any]:
    """RoBERTa's and MPNet's head: the first token, dense, tanh, output layer (the defaults)."""
    return {"pooling": "cls"}


# RobertaClassificationHead and MPNetClassificationHead name their two layers alike.
DENSE_OUT_PROJ = (
    (r"classifier\.dense\.", "head.dense."),
    (r"classifier\.out_proj\.", "head.out."),
)


@dataclass(frozen=True)
class Head:
    """A family's ``*ForSequenceClassification`` head: its tensor names and its config."""

    names: tuple[tuple[str, str], ...]  # (pattern on the whole checkpoint name, ours: head.*)
    read_config: ReadHead
