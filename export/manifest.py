"""``manifest.json``: what was exported, from what, with which tools, and how it validated.

The manifest is the one file whose bytes change on every export (it holds the export time and
timings), so it is the one file left out of the hash list; every other file's sha256 is in
it. When a previous artifact is being replaced, the hashes are compared and any change is
explained, which is how "re-exporting unchanged input gives the same files" is checked.
"""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from .artifact import FORMAT, FORMAT_VERSION, MANIFEST_FILE, sha256_file

VERSIONED = ("torch", "onnx", "onnxruntime", "onnxscript", "numpy", "tokenizers")


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in VERSIONED:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def file_entries(folder: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file in ``folder`` except the manifest itself."""
    return {
        p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST_FILE
    }


def idempotence(
    files: dict[str, dict[str, Any]],
    inputs: dict[str, Any],
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    """Compare with the artifact being replaced; say why hashes differ when they do.

    ``inputs`` is what determines the bytes (source file hashes, options, tool versions); if
    those match but hashes differ, the exporter itself was not deterministic and we say so.
    """
    report: dict[str, Any] = {
        "deterministic_files": sorted(files),
        "excluded": {MANIFEST_FILE: "holds export time and timings"},
    }
    if previous is None:
        report["previous_export"] = None
        return report
    before = {k: v.get("sha256") for k, v in previous.get("files", {}).items()}
    now = {k: v["sha256"] for k, v in files.items()}
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    report["previous_export"] = {
        "exported_at": previous.get("exported_at"),
        "same_hashes": not changed,
        "changed_files": changed,
    }
    if changed:
        old_inputs = previous.get("determinants", {})
        keys = set(old_inputs) | set(inputs)
        differs = sorted(k for k in keys if old_inputs.get(k) != inputs.get(k))
        # A file only one export has (calibration.npy, say) came from another exporter version.
        one_sided = sorted(k for k in changed if before.get(k) is None or k not in now)
        if differs:
            reason = f"inputs changed: {differs}"
        elif one_sided == changed:
            reason = f"files only one of the exports has: {one_sided} (another exporter version)"
        else:
            reason = "same inputs, different bytes: the exporter was not deterministic here"
        report["previous_export"]["reason"] = reason
    return report


def build_manifest(
    *,
    model: dict[str, Any],
    graph: dict[str, Any],
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    validation: dict[str, Any],
    extras: dict[str, Any],
    files: dict[str, dict[str, Any]],
    options: dict[str, Any],
    determinants: dict[str, Any],
    idempotent: dict[str, Any],
    timings: dict[str, float],
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": model,
        "graph": graph,
        "opset": graph["opset"],
        "inputs": inputs,
        "outputs": outputs,
        "files": files,
        "versions": tool_versions(),
        "validation": validation,
        "extras": extras,
        "options": options,
        "determinants": determinants,
        "idempotence": idempotent,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }
