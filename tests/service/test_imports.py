"""A replica serving through OpenVINO or ONNX Runtime never imports torch (issue 18).

torch costs a replica 1.6 s and ~160 MB of RSS, and only the torch backend needs it. Each check
runs in a fresh interpreter, since this test process has torch loaded already.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# What a replica imports: the deployment (service.app), its engine and routes (imported in
# EmbeddingServer's constructor and __serve_build_asgi_app__), and the artifact reader.
REPLICA_MODULES = ("service.app", "service.engine", "service.routes", "export.artifact")
NO_TORCH = "import sys; assert 'torch' not in sys.modules, 'torch was imported'"


def _python(code: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_replicas_modules_do_not_import_torch() -> None:
    _python(f"import {', '.join(REPLICA_MODULES)}; {NO_TORCH}")


def test_the_artifact_reader_and_the_tokenizer_do_not_import_torch() -> None:
    _python(f"import export.artifact; {NO_TORCH}")
    _python(f"import export; from models import Tokenizer, EncoderConfig; {NO_TORCH}")


def test_the_models_package_still_offers_its_names_on_use() -> None:
    # Lazy names resolve to the submodules' own objects; torch loads only for a torch name.
    _python(
        "import models, models.tokenizer; "
        "assert models.Tokenizer is models.tokenizer.Tokenizer; "
        f"assert set(models.__all__) <= set(dir(models)); {NO_TORCH}; "
        "from models import SentenceEncoder; assert 'torch' in sys.modules"
    )


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_a_replica_serving_a_request_never_imports_torch(
    minilm_artifact: Path, backend: str
) -> None:
    # The whole replica path: settings, the registry (backends compiled, tokenizer, batcher),
    # the routes, and a probe that runs the model.
    _python(
        "import asyncio\n"
        "from service.app import EmbeddingServer\n"
        "from service.engine import Registry\n"
        "from service.routes import build_api\n"
        "from service.settings import ServiceSettings\n"
        f"settings = ServiceSettings(artifact={str(minilm_artifact)!r}, backend={backend!r})\n"
        "registry = Registry.from_settings(settings)\n"
        "build_api(registry)\n"
        "try:\n"
        "    assert asyncio.run(registry.healthy()), 'the probe failed'\n"
        "finally:\n"
        "    registry.close()\n"
        f"{NO_TORCH}\n"
    )
