"""What an export records about its model besides the graph: the serving config the service
runs it by, and the determinants a re-export is compared on (``manifest.idempotence``)."""

from __future__ import annotations

import hashlib
from typing import Any

from . import artifact as fmt
from .manifest import tool_versions
from .options import ExportOptions
from .source import Encoder, ModelSource


def weights_digest(model: Encoder) -> str:
    """Hash of the weights themselves, whatever file format they came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def determinants(source: ModelSource, model: Encoder, options: ExportOptions) -> dict[str, Any]:
    """Everything the deterministic files depend on; compared on re-export."""
    chosen = options.to_dict()
    for key in ("model", "output", "force", "seed", "atol"):
        chosen.pop(key, None)
    return {
        "weights_sha256": weights_digest(model),
        "config": model.config.to_dict(),
        "tokenizer_sha256": fmt.sha256_file(source.tokenizer_file)
        if source.tokenizer_file
        else None,
        "prompts": {"prompts": source.prompts, "default": source.default_prompt_name},
        "labels": source.labels,
        "options": chosen,
        "versions": tool_versions(),
    }


def serving_config(
    source: ModelSource, model: Encoder, options: ExportOptions, bf16: dict[str, Any]
) -> fmt.ServingConfig:
    cfg = model.config
    embedder = cfg.task == "embedding"
    return fmt.ServingConfig(
        model_name=source.name,
        dimension=cfg.d_model if embedder else cfg.num_labels,
        max_seq_length=cfg.max_seq_length,
        pooling=cfg.pooling,
        normalize=options.normalize and embedder,
        pad_token_id=cfg.pad_token_id,
        vocab_size=cfg.vocab_size,
        attention=cfg.attention,
        precision=options.precision,
        tokenizer=fmt.TOKENIZER_FILE if source.tokenizer_file else None,
        prompts=source.prompts,
        default_prompt_name=source.default_prompt_name,
        bf16_min_cosine=bf16.get("min_cosine_vs_fp32"),
        task=cfg.task,
        labels=source.labels,
        bf16_max_abs_score=bf16.get("max_abs_score"),
        output_names=fmt.task_outputs(cfg.task),
    )
