"""The output folder: refuse to clobber what is not ours, and replace atomically.

Everything is written to a hidden staging folder next to DIR and only moved into place once
validation passed, so a failed or interrupted export never leaves a half-written artifact,
and a service reading DIR sees the old artifact or the new one, never a mix.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .artifact import read_manifest
from .errors import ExportError


def check_output(output: Path, *, force: bool, protected: list[Path]) -> dict | None:
    """Raise unless ``output`` may be (re)written; return the manifest being replaced, if any.

    An existing artifact is replaced; an empty folder is used; anything else needs --force.
    ``protected`` (the model's own folder, the tokenizer) may never be inside ``output``:
    --force must not delete the model being exported.
    """
    output = output.expanduser().resolve()
    if output.exists() and not output.is_dir():
        raise ExportError(f"output {output} exists and is a file, not a folder")
    for path in protected:
        path = path.resolve()
        if path == output or output in path.parents:
            raise ExportError(
                f"output {output} contains the model's own files ({path}); choose another --output"
            )
    if not output.is_dir():
        return None
    previous = read_manifest(output)
    if previous is not None or not any(output.iterdir()):
        return previous
    cwd = Path.cwd().resolve()
    if output in (Path.home().resolve(), cwd, *cwd.parents):
        raise ExportError(f"refusing to replace {output} (home, current or parent folder)")
    if not force:
        raise ExportError(
            f"output folder {output} exists and is not an export artifact; "
            "use --force to replace it and everything in it"
        )
    return None


def make_staging(output: Path) -> Path:
    """A fresh hidden folder beside ``output`` (same filesystem, so the final move is a rename)."""
    parent = output.expanduser().resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.staging-", dir=parent))
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the artifact from a service user
        return staging
    except OSError as exc:
        raise ExportError(f"cannot create the output folder's parent {parent}: {exc}") from exc


def commit(staging: Path, output: Path) -> None:
    """Move ``staging`` to ``output``, replacing what was there (an artifact or, with --force,
    anything) with two renames, so the window without a complete folder is tiny."""
    output = output.expanduser().resolve()
    old: Path | None = None
    if output.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{output.name}.old-", dir=output.parent))
        old.rmdir()
        output.rename(old)
    try:
        staging.rename(output)
    except OSError:
        if old is not None:
            old.rename(output)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
