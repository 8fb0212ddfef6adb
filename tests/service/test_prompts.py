"""Prompts through the product: export records them, the routes take ``prompt_name``.

The model is a tiny BERT checkpoint with sentence-transformers prompts ("query: " by default,
"passage: "), exported in this process and served by the real HTTP app (``in_process``,
ONNX Runtime fp32 so vectors can be compared with ``load_pretrained(...).encode`` exactly).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from common.arrays import cosine_rows, encode_batches, normalize_rows
from export.artifact import MANIFEST_FILE, SERVING_CONFIG_FILE, sha256_file
from export.options import ExportOptions
from export.pipeline import export_model
from models import EmbeddingModel, Tokenizer, load_pretrained
from service.settings import ServiceSettings
from tests.tiny_models import tiny_checkpoint_cached

from ..helpers import embed
from .conftest import InProcessClient, in_process

PROMPTS = {"query": "query: ", "passage": "passage: "}
TEXTS = ["What is the capital of France?", "Paris is the capital of France.", "A b c"]
EXACT = 0.99999


@pytest.fixture(scope="module")
def folder() -> Path:
    return tiny_checkpoint_cached("bert", prompts=PROMPTS, default_prompt_name="query")


@pytest.fixture(scope="module")
def artifact(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("prompts") / "artifact"
    export_model(ExportOptions(model=str(folder), output=output))
    return output


@pytest.fixture(scope="module")
def reference(folder: Path) -> EmbeddingModel:
    return load_pretrained(folder)


@pytest.fixture(scope="module")
def client(artifact: Path) -> Iterator[InProcessClient]:
    settings = ServiceSettings(artifact=artifact, backend="onnxruntime", precision="fp32")
    with in_process(settings) as c:
        yield c


def tei_embed(client: InProcessClient, texts: list[str], **extra: object) -> np.ndarray:
    response = client.post("/embed", json={"inputs": texts, **extra})
    assert response.status_code == 200, response.text
    return np.asarray(response.json(), dtype=np.float32)


@pytest.mark.parametrize("name", ["query", "passage"])
def test_a_named_prompt_gives_what_sentence_transformers_encoding_gives(
    client: InProcessClient, reference: EmbeddingModel, name: str
) -> None:
    expected = reference.encode(TEXTS, prompt_name=name)
    assert cosine_rows(embed(client, TEXTS, prompt_name=name), expected).min() >= EXACT
    assert cosine_rows(tei_embed(client, TEXTS, prompt_name=name), expected).min() >= EXACT


def without_prompt(reference: EmbeddingModel, texts: list[str]) -> np.ndarray:
    """The texts as they are, through the reference encoder: no prompt, not even the default."""

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            _, pooled = reference.encoder(torch.from_numpy(ids), torch.from_numpy(mask))
        return normalize_rows(pooled.numpy())  # (B, D)

    ids = reference.tokenizer.tokenize(texts)
    return encode_batches(ids, run, reference.tokenizer.pad_id)


def test_the_default_prompt_applies_when_none_is_named(
    client: InProcessClient, reference: EmbeddingModel
) -> None:
    served = embed(client, TEXTS)
    assert cosine_rows(served, reference.encode(TEXTS)).min() >= EXACT
    assert cosine_rows(served, reference.encode(TEXTS, prompt_name="query")).min() >= EXACT
    assert cosine_rows(tei_embed(client, TEXTS), served).min() >= EXACT
    assert cosine_rows(served, without_prompt(reference, TEXTS)).min() < EXACT


def test_usage_counts_the_prompt_tokens(client: InProcessClient, folder: Path) -> None:
    tokenizer = Tokenizer(folder / "tokenizer.json", 512)
    bare = sum(len(ids) for ids in tokenizer.tokenize(TEXTS))
    prompted = sum(len(ids) for ids in tokenizer.tokenize(["passage: " + t for t in TEXTS]))
    assert prompted > bare
    body = {"input": TEXTS, "prompt_name": "passage"}
    usage = client.post("/v1/embeddings", json=body).json()["usage"]
    assert usage == {"prompt_tokens": prompted, "total_tokens": prompted}


def test_an_unknown_prompt_is_an_error_naming_the_prompts_in_each_dialect(
    client: InProcessClient,
) -> None:
    openai = client.post("/v1/embeddings", json={"input": TEXTS, "prompt_name": "document"})
    assert openai.status_code == 400
    error = openai.json()["error"]
    assert error["param"] == "prompt_name" and error["code"] == "unknown_prompt"
    assert "'passage', 'query'" in error["message"] and "'document'" in error["message"]
    for route in ("/embed", "/embed_all"):
        tei = client.post(route, json={"inputs": TEXTS, "prompt_name": "document"})
        assert tei.status_code == 422, route  # TEI's status for a validation error
        assert tei.json()["error_type"] == "Validation"
        assert "'passage', 'query'" in tei.json()["error"]


def test_a_prompt_cannot_be_named_for_token_ids(client: InProcessClient) -> None:
    response = client.post("/v1/embeddings", json={"input": [[5, 6, 7]], "prompt_name": "query"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "prompt_with_token_ids"


def test_info_lists_the_prompts_and_the_default(client: InProcessClient) -> None:
    info = client.get("/info").json()
    assert info["prompts"] == PROMPTS and info["default_prompt_name"] == "query"


def test_an_artifact_exported_before_prompts_still_serves(
    artifact: Path, tmp_path: Path, reference: EmbeddingModel
) -> None:
    old = tmp_path / "old"
    shutil.copytree(artifact, old)
    config_path = old / SERVING_CONFIG_FILE
    config = json.loads(config_path.read_text())
    del config["prompts"], config["default_prompt_name"]
    config_path.write_text(json.dumps(config))
    manifest = json.loads((old / MANIFEST_FILE).read_text())
    manifest["files"][SERVING_CONFIG_FILE]["sha256"] = sha256_file(config_path)
    (old / MANIFEST_FILE).write_text(json.dumps(manifest))

    settings = ServiceSettings(artifact=old, backend="onnxruntime", precision="fp32")
    with in_process(settings) as client:
        info = client.get("/info").json()
        assert info["prompts"] == {} and info["default_prompt_name"] is None
        # No prompt at all: the texts as they are, whatever the checkpoint's default was.
        served = embed(client, TEXTS)
        assert cosine_rows(served, without_prompt(reference, TEXTS)).min() >= EXACT
        refused = client.post("/v1/embeddings", json={"input": TEXTS, "prompt_name": "query"})
        assert refused.status_code == 400 and "has no prompts" in refused.text
