"""``python -m service --model NAME_OR_PATH``: the checkpoint's artifact, exported on first use.

The cache holds one artifact per checkpoint *content*: ``<artifact_cache>/<name>-<hash[:12]>``,
the hash over the checkpoint folder's files (``content_hash``), so an edited checkpoint gets a
fresh export and an unchanged one is served again without one. A missing artifact is exported
by ``python -m export`` in a subprocess (torch and the exporter stay out of the launcher, which
goes on to run Ray) into a hidden partial folder that is renamed into place only when the
export succeeded: a killed export leaves a partial folder, never an artifact a later start
would serve, and the next start clears it. A lock file per artifact makes a second launcher
wait for the first one's export instead of exporting the same model again.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from export.artifact import MANIFEST_FILE

log = logging.getLogger("embedserve")
PARTIAL = ".partial-"  # <cache>/.<key>.partial-<pid>: an export under way (or one that died)
HASH_CHUNK = 1 << 20
UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
Exporter = Callable[[str, Path], None]  # (model, output folder) -> None, CacheError on failure


class CacheError(Exception):
    """The model cannot be served from the cache; ``str()`` is the one line the operator sees."""


def content_hash(folder: Path) -> str:
    """sha256 over the sorted relative paths, sizes and bytes of ``folder``'s files.

    Files are regular files or links to them (a Hugging Face cache snapshot is all links);
    hidden ones (``.git``, ``.cache``) are left out: they are not the model, and a clone's
    ``.git`` would double the work. Measured on all-mpnet-base-v2 (438 MB in 13 files, page
    cache warm): 0.30-0.36 s on this 2-core machine (sha256 at ~1.3 GB/s), so it runs on every
    start rather than being cached by file times, which a copy or a checkout would not keep.
    """
    digest = hashlib.sha256()
    files = sorted(
        (path.relative_to(folder).as_posix(), path)
        for path in folder.rglob("*")
        if path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )
    for relative, path in files:
        digest.update(f"{relative}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as fh:
            while block := fh.read(HASH_CHUNK):
                digest.update(block)
    return digest.hexdigest()


def cache_key(name: str, digest: str) -> str:
    """``<name>-<hash[:12]>``, the name reduced to characters safe in a folder name."""
    return f"{UNSAFE.sub('-', name).strip('-.') or 'model'}-{digest[:12]}"


def export_in_subprocess(model: str, output: Path) -> None:
    """``python -m export --model MODEL --output OUTPUT``; its progress goes to our stdout, its
    one-line error (or a crash's last line) becomes a :class:`CacheError`."""
    cmd = [sys.executable, "-m", "export", "--model", model, "--output", str(output)]
    done = subprocess.run(cmd, stderr=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        cause = lines[-1].removeprefix("error: ") if lines else f"exit status {done.returncode}"
        raise CacheError(f"exporting {model} failed: {cause}")


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block. The kernel
    drops it when the holder dies, so a killed launcher never blocks the next one."""
    with path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another launcher to finish exporting into %s", path.parent)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def locate(model: str) -> tuple[str, Path]:
    """(name, folder) of a known name or checkpoint folder; one line for anything else."""
    from export.errors import ExportError
    from export.source import source_folder  # imports models (torch): only for --model

    try:
        return source_folder(model)
    except ExportError as exc:
        raise CacheError(" ".join(str(exc).split())) from None


def ensure_model_artifact(model: str, cache: Path, export: Exporter = export_in_subprocess) -> Path:
    """The artifact folder of ``model`` in ``cache``, exported there first when missing."""
    name, folder = locate(model)
    key = cache_key(name, content_hash(folder))
    final = cache / key
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"cannot create the artifact cache {cache}: {exc.strerror}") from None
    with locked(cache / f".{key}.lock"):
        if (final / MANIFEST_FILE).is_file():
            return final
        if final.exists():
            raise CacheError(f"{final} exists but is not an export artifact; remove it")
        # Left by an export that died: no one else exports this key while we hold the lock.
        for stale in cache.iterdir():
            if stale.name.lstrip(".").startswith(f"{key}{PARTIAL}"):
                shutil.rmtree(stale, ignore_errors=True)
        partial = cache / f".{key}{PARTIAL}{os.getpid()}"
        log.info("exporting %s to %s (first use of this checkpoint)", model, final)
        try:
            export(model, partial)
            partial.rename(final)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return final
