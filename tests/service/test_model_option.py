"""``python -m service --model PATH``: the artifact cache (without Ray), then one real launch.

The cache functions are the launcher's own (``service.artifact_cache``) with the real export
subprocess; the one Ray test launches ``python -m service --model`` against the cache the
other tests filled, so it also shows a second process reusing an export.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from export import load_artifact
from export.artifact import MANIFEST_FILE
from models import load_pretrained
from service.__main__ import main
from service.artifact_cache import (
    PARTIAL,
    CacheError,
    cache_key,
    content_hash,
    ensure_model_artifact,
    export_in_subprocess,
)
from tests.tiny_models import tiny_checkpoint_cached

from ..helpers import cosine, embed, free_port
from .conftest import wait_healthy


@dataclass
class Filled:
    """A cache two launchers filled at once, and how many exports that took."""

    folder: Path
    cache: Path
    artifacts: list[Path]
    exports: int
    manifest_mtime_ns: int


# Session-wide: the ray-marked test below runs after the others (tests/conftest.py), and a
# module's fixture would be built again for it.
@pytest.fixture(scope="session")
def folder() -> Path:
    return tiny_checkpoint_cached("bert")


@pytest.fixture(scope="session")
def filled(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Filled:
    """Two threads resolve the same model into an empty cache at the same time."""
    cache = tmp_path_factory.mktemp("cache")
    exports: list[Path] = []
    artifacts: list[Path] = []

    def counted(model: str, output: Path) -> None:
        exports.append(output)
        export_in_subprocess(model, output)

    def resolve() -> None:
        artifacts.append(ensure_model_artifact(str(folder), cache, counted))

    threads = [threading.Thread(target=resolve) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    mtime = (artifacts[0] / MANIFEST_FILE).stat().st_mtime_ns
    return Filled(folder, cache, artifacts, len(exports), mtime)


def test_two_launchers_export_once_into_the_content_addressed_folder(filled: Filled) -> None:
    expected = filled.cache / f"{filled.folder.name}-{content_hash(filled.folder)[:12]}"
    assert filled.artifacts == [expected, expected]
    assert filled.exports == 1
    assert load_artifact(expected).config.model_name == filled.folder.name
    assert not [p for p in filled.cache.iterdir() if PARTIAL in p.name]


def test_an_exported_model_is_reused_without_exporting(filled: Filled) -> None:
    def refuse(model: str, output: Path) -> None:
        raise AssertionError("exported again")

    again = ensure_model_artifact(str(filled.folder), filled.cache, refuse)
    assert again == filled.artifacts[0]


def test_the_hash_follows_paths_and_bytes_not_hidden_files(folder: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    digest = content_hash(folder)
    assert content_hash(copy) == digest
    (copy / ".git").mkdir()
    (copy / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert content_hash(copy) == digest
    (copy / "config.json").rename(copy / "config2.json")
    assert content_hash(copy) != digest
    (copy / "config2.json").rename(copy / "config.json")
    with (copy / "tokenizer.json").open("a") as fh:
        fh.write(" ")
    assert content_hash(copy) != digest
    assert cache_key("org/model name", digest) == f"org-model-name-{digest[:12]}"


def test_a_failed_export_leaves_no_artifact_and_a_dead_ones_partial_is_cleared(
    folder: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    key = cache_key(folder.name, content_hash(folder))
    stale = cache / f".{key}{PARTIAL}99999"  # what a killed export leaves
    stale.mkdir(parents=True)
    (stale / "model.onnx").write_bytes(b"half")

    def dies(model: str, output: Path) -> None:
        assert not stale.exists()
        output.mkdir()
        (output / "model.onnx").write_bytes(b"half")
        raise CacheError("exporting failed: killed")

    with pytest.raises(CacheError, match="killed"):
        ensure_model_artifact(str(folder), cache, dies)
    assert [p.name for p in cache.iterdir()] == [f".{key}.lock"]


def exit_line(argv: list[str]) -> str:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    message = str(stopped.value.code)
    assert "\n" not in message and message.startswith("error: ")
    return message


def test_model_and_artifact_together_are_refused(folder: Path, tmp_path: Path) -> None:
    line = exit_line(["--model", str(folder), "--artifact", str(tmp_path)])
    assert "not both" in line


def test_a_folder_that_is_not_a_model_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    cache = tmp_path / "cache"
    line = exit_line(["--model", str(tmp_path), "--artifact-cache", str(cache)])
    assert "is not a model folder" in line and not cache.exists()


@pytest.fixture
def launched(filled: Filled) -> Iterator[str]:
    port = free_port()
    cmd = [sys.executable, "-m", "service", "--model", str(filled.folder), "--port", str(port)]
    cmd += ["--artifact-cache", str(filled.cache), "--ingress", "proxy", "--num-cpus", "1"]
    cmd += ["--backend", "onnxruntime", "--precision", "fp32"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)  # reads and closes its output pipe
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@pytest.mark.ray
def test_python_m_service_model_serves_the_checkpoint(launched: str, filled: Filled) -> None:
    texts = ["A checkpoint folder, served.", "Exported once, then reused."]
    expected = load_pretrained(filled.folder).encode(texts)
    with httpx.Client(base_url=launched, timeout=60) as client:
        assert cosine(embed(client, texts), expected).min() >= 0.99999
        models = client.get("/v1/models").json()["data"]
        assert [m["id"] for m in models] == [filled.folder.name]
    # The launch reused the artifact the other tests exported: the same files, untouched.
    manifest = filled.artifacts[0] / MANIFEST_FILE
    assert manifest.stat().st_mtime_ns == filled.manifest_mtime_ns
    assert sorted(p.name for p in filled.cache.iterdir() if not p.name.startswith(".")) == [
        filled.artifacts[0].name
    ]
