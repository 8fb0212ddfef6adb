"""Our encoder against a tiny random Hugging Face model of the same family, by the family's
own config reading and tensor renaming, on padding-heavy right-padded batches."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import torch
from sentence_transformers.sentence_transformer.modules import Pooling
from transformers import PreTrainedModel

from common.arrays import cosine_rows
from models import CheckpointError, SentenceEncoder
from models.checkpoint import load_state
from models.config import Pooling as PoolingMode
from models.families import SentenceSettings, family_for
from models.pooling import pool

MIN_COSINE = 0.99999
Model = TypeVar("Model", bound=PreTrainedModel)
ST_POOLING = {"mean": "mean", "cls": "cls", "max": "max", "last": "lasttoken"}
VOCAB = 600
# Every family's test model: 2 layers of width 64 with 4 heads (config keys as transformers has
# them); each test adds what makes its family.
TINY = {
    "vocab_size": VOCAB,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
}


def tiny_hf(build: Callable[[], Model]) -> Model:
    """A seeded random model in eval mode, its norm weights and biases moved off 1 and 0 (so a
    misplaced one shows)."""
    torch.manual_seed(0)
    model = build().eval()
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim == 1:
                param.add_(torch.randn_like(param) * 0.2)
    return model


def read_hf_config(model: PreTrainedModel, folder: Path) -> dict:
    """``config.json`` as ``save_pretrained`` writes it: the keys real folders hold."""
    model.config.save_pretrained(folder)
    return json.loads((folder / "config.json").read_text())


def ours_from_hf(model: PreTrainedModel, folder: Path, pooling: PoolingMode) -> SentenceEncoder:
    """The family's read_config + rename, loaded strictly into our encoder."""
    cfg = read_hf_config(model, folder)
    family = family_for(cfg["model_type"], folder)
    encoder = SentenceEncoder(family.read_config(cfg, folder, SentenceSettings(None, pooling)))
    load_state(encoder, family.rename(model.state_dict()), str(folder))
    return encoder.eval()


def padded_batches(
    pad_id: int, rows: int = 224, batch: int = 32, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Right-padded (ids, mask) batches, lengths 1 to 64 in random order: most rows are
    mostly padding. Real ids avoid ``pad_id`` (RoBERTa-style models number positions by it)."""
    rng = np.random.default_rng(seed)
    lengths = rng.permutation(np.resize(np.arange(1, 65), rows))
    out = []
    for start in range(0, rows, batch):
        part = torch.from_numpy(lengths[start : start + batch])
        width = int(part.max())
        ids = torch.from_numpy(rng.integers(pad_id + 1, VOCAB, (len(part), width)))
        mask = (torch.arange(width)[None, :] < part[:, None]).long()  # (B, T)
        out.append((ids.masked_fill(mask == 0, pad_id), mask))
    return out


@torch.no_grad()
def assert_matches_hf(
    hf: PreTrainedModel,
    ours: SentenceEncoder,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    poolings: tuple[PoolingMode, ...],
) -> None:
    """Token vectors of real tokens (min cosine, max |diff|), and each of ``poolings`` of ours
    against sentence-transformers' Pooling module on Hugging Face's token vectors (one forward
    each: the test budget is seconds)."""
    theirs: dict[str, list[np.ndarray]] = {"token": [], **{mode: [] for mode in poolings}}
    mine: dict[str, list[np.ndarray]] = {"token": [], **{mode: [] for mode in poolings}}
    for ids, mask in batches:
        reference = hf(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, D)
        tokens, pooled = ours(ids, mask)  # (B, T, D), (B, D)
        torch.testing.assert_close(pooled, pool(tokens, mask, ours.config.pooling))
        real = mask.bool()
        theirs["token"].append(reference[real].numpy())
        mine["token"].append(tokens[real].numpy())
        features = {"token_embeddings": reference, "attention_mask": mask}
        for mode in poolings:
            st_pool = Pooling(hf.config.hidden_size, pooling_mode=ST_POOLING[mode])
            theirs[mode].append(st_pool(features)["sentence_embedding"].numpy())
            mine[mode].append(pool(tokens, mask, mode).numpy())
    for name in theirs:
        a, b = np.concatenate(theirs[name]), np.concatenate(mine[name])
        cosine = cosine_rows(a, b).min()
        diff = float(np.abs(a - b).max())
        message = f"{name} vectors: min cosine {cosine:.7f}, max |diff| {diff:.2e}"
        assert cosine >= MIN_COSINE and diff < 1e-4, message
    assert sum(len(mask) for _, mask in batches) >= 200


def assert_unmapped_tensor_is_refused(
    hf: PreTrainedModel, folder: Path, pooling: PoolingMode, stray: str
) -> None:
    """A tensor no rule maps (and not ignored) fails the load, by its name."""
    cfg = read_hf_config(hf, folder)
    family = family_for(cfg["model_type"], folder)
    encoder = SentenceEncoder(family.read_config(cfg, folder, SentenceSettings(None, pooling)))
    tensors = family.rename({**hf.state_dict(), stray: torch.zeros(1)})
    with pytest.raises(CheckpointError, match=rf"unexpected \['{stray}'\]"):
        load_state(encoder, tensors, str(folder))


@torch.no_grad()
def assert_takes_part(ours: SentenceEncoder, switch_off: Callable[[], None]) -> None:
    """The token vectors of a 60-token input move when ``switch_off`` disables a part: the
    parity above would not notice a part that does nothing on these inputs."""
    ids = torch.randint(4, VOCAB, (2, 60))
    before = ours(ids, torch.ones_like(ids))[0]
    switch_off()
    assert not torch.allclose(ours(ids, torch.ones_like(ids))[0], before, atol=1e-3)
