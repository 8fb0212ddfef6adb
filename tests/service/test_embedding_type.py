"""``embedding_type`` over HTTP: compact vectors on the OpenAI route and on TEI's /embed.

Each compact answer must be the float answer of the same request quantized by
``service.compact`` with the artifact's calibration (itself proven equal to
sentence-transformers' ``quantize_embeddings`` in test_compact.py). The float request goes
first: the compact one then reads the same backend outputs from the replica's cache, so the
comparison is exact whatever batch the float vectors ran in.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from common import texts as corpus
from export.artifact import CALIBRATION_FILE, MANIFEST_FILE, load_artifact
from service.compact import Compactor, EmbeddingType
from service.settings import ServiceSettings

from .conftest import InProcessClient, in_process

TEXTS = corpus.sentences()[1:40:4]  # 10 held-out sentences (odd indices)
DTYPES = {"int8": np.int8, "uint8": np.uint8, "binary": np.int8, "ubinary": np.uint8}


@pytest.fixture(scope="module")
def compactor(minilm_artifact: Path) -> Compactor:
    return Compactor.from_artifact(load_artifact(minilm_artifact))


def openai(client: InProcessClient, **body: object) -> list:
    response = client.post("/v1/embeddings", json={"input": TEXTS, **body})
    assert response.status_code == 200, response.text
    return [item["embedding"] for item in response.json()["data"]]


def float_vectors(client: InProcessClient, **body: object) -> np.ndarray:
    """The float answer, exact (float32 bytes through base64)."""
    rows = openai(client, encoding_format="base64", **body)
    return np.stack([np.frombuffer(base64.b64decode(row), dtype="<f4") for row in rows])


@pytest.mark.parametrize("dimensions", [None, 100])
@pytest.mark.parametrize("kind", list(DTYPES))
def test_openai_route_answers_ints(
    client: InProcessClient, compactor: Compactor, kind: EmbeddingType, dimensions: int | None
) -> None:
    extra = {} if dimensions is None else {"dimensions": dimensions}
    expected = compactor.encode(float_vectors(client, **extra), kind, dimensions, True)
    rows = openai(client, embedding_type=kind, **extra)
    assert all(isinstance(value, int) for row in rows for value in row)
    assert np.array_equal(np.asarray(rows), expected)
    width = 384 if dimensions is None else dimensions
    assert expected.shape == (len(TEXTS), -(-width // 8) if kind.endswith("binary") else width)

    encoded = openai(client, embedding_type=kind, encoding_format="base64", **extra)
    raw = np.stack([np.frombuffer(base64.b64decode(row), dtype=DTYPES[kind]) for row in encoded])
    assert raw.tobytes() == expected.astype(DTYPES[kind]).tobytes()


def test_float_is_the_default(client: InProcessClient) -> None:
    explicit = float_vectors(client, embedding_type="float")
    assert float_vectors(client).tobytes() == explicit.tobytes()
    assert explicit.dtype == np.dtype("<f4") and explicit.shape == (len(TEXTS), 384)


@pytest.mark.parametrize("kind", ["ubinary", "int8"])
def test_tei_embed_answers_ints(
    client: InProcessClient, compactor: Compactor, kind: EmbeddingType
) -> None:
    floats = client.post("/embed", json={"inputs": TEXTS})
    assert floats.status_code == 200, floats.text
    compact = client.post("/embed", json={"inputs": TEXTS, "embedding_type": kind})
    assert compact.status_code == 200, compact.text
    rows = compact.json()
    assert all(isinstance(value, int) for row in rows for value in row)
    vectors = np.asarray(floats.json(), dtype=np.float32)  # JSON floats: float32 round-trips
    assert np.array_equal(np.asarray(rows), compactor.encode(vectors, kind, None, True))


def test_unknown_type_is_refused(client: InProcessClient) -> None:
    response = client.post("/v1/embeddings", json={"input": TEXTS, "embedding_type": "int4"})
    assert response.status_code == 422, response.text


def test_artifact_without_calibration(
    minilm_artifact: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """An artifact exported before calibration existed: int8 answers 400 and says to re-export;
    binary types need no calibration and still answer."""
    old = tmp_path_factory.mktemp("uncalibrated") / "minilm"
    shutil.copytree(minilm_artifact, old, copy_function=os.link)  # hard links: no 90 MB copy
    (old / CALIBRATION_FILE).unlink()
    manifest = json.loads((old / MANIFEST_FILE).read_text())
    del manifest["files"][CALIBRATION_FILE], manifest["extras"]["calibration"]
    (old / MANIFEST_FILE).unlink()  # a hard link to the session's artifact: replace, not write
    (old / MANIFEST_FILE).write_text(json.dumps(manifest))

    with in_process(ServiceSettings(artifact=old)) as client:
        asked = {"input": TEXTS, "embedding_type": "int8"}
        response = client.post("/v1/embeddings", json=asked)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["param"], error["code"]) == ("embedding_type", "no_calibration")
        assert "re-export the model" in error["message"]
        assert len(openai(client, embedding_type="binary")[0]) == 48
