"""The Hugging Face model families we read, by the ``model_type`` of their ``config.json``.

Adding one is a module here (its config translation and tensor names) and a line in FAMILIES;
the loader in :mod:`models.pretrained` does not change.
"""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import CheckpointError
from . import bert, modernbert, mpnet, qwen3, xlm_roberta
from .family import Family, SentenceSettings

FAMILIES: dict[str, Family] = {
    family.model_type: family
    for family in (
        bert.FAMILY,
        xlm_roberta.XLM_ROBERTA,
        xlm_roberta.ROBERTA,
        mpnet.FAMILY,
        modernbert.FAMILY,
        qwen3.FAMILY,
    )
}
DEFAULT_MODEL_TYPE = "bert"  # old BERT config.json files have no model_type


def family_for(model_type: str, folder: Path) -> Family:
    """The family of ``model_type``; an unknown one is refused with the list we support."""
    if model_type not in FAMILIES:
        raise CheckpointError(
            f"{folder}: model_type {model_type!r} is not supported; "
            f"supported model types: {sorted(FAMILIES)}"
        )
    return FAMILIES[model_type]


__all__ = ["DEFAULT_MODEL_TYPE", "FAMILIES", "Family", "SentenceSettings", "family_for"]
