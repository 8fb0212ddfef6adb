"""The sections that measure one thing each and write their own Markdown: a module with
``KEY`` (what ``--only`` takes), ``measure(artifact, threads, scale, work) -> dict`` (JSON-able,
kept in results.json under ``sections``) and ``section(found, cores) -> list[str]``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import bulk, cache, compact, footprint, int8, long_input, profile

# In the page's order.
SECTIONS = {
    module.KEY: module for module in (int8, cache, long_input, compact, bulk, profile, footprint)
}


def measure(key: str, artifact: Path, threads: int, scale: float, work: Path) -> dict[str, Any]:
    return SECTIONS[key].measure(artifact, threads, scale, work / key)


def render(found: dict[str, dict[str, Any]], cores: int) -> list[str]:
    """Each measured section's Markdown, in the page's order."""
    lines: list[str] = []
    for key, module in SECTIONS.items():
        if key in found:
            lines += [*module.section(found[key], cores), ""]
    return lines
