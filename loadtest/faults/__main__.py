"""``python -m loadtest.faults``: try every fault and hostile-input class against a real
``python -m service`` and rewrite docs/reliability.md (4-8 minutes on two shared cores).

Exit status: 0 every row passed, 1 a row failed (the document says which and why), 2 the run
could not start (arguments, the artifact).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

from service.__main__ import ensure_default_artifact
from service.settings import DEFAULT_ARTIFACT

from . import report
from .harness import NAMES, SCENARIOS, Context, run, select
from .replica import health_check_section

log = logging.getLogger("loadtest.faults")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtest.faults", description=__doc__)
    defaults = ", ".join(s.name for s in SCENARIOS if s.default)
    p.add_argument("--only", action="append", choices=NAMES, metavar="NAME",
                   help=f"run only this scenario (repeatable; default: {defaults})")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("docs/reliability.md"), help="the document")
    p.add_argument("--artifact", type=Path, default=DEFAULT_ARTIFACT)
    p.add_argument("--multinode-result", type=Path,
                   help="the multinode row from this result JSON, not a fresh run")  # fmt: skip
    p.add_argument("--logs", type=Path, help="servers' logs here (default: a temporary folder)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    try:
        ensure_default_artifact(args.artifact)  # exports the default model once; else must exist
    except SystemExit as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    logs = args.logs or Path(tempfile.mkdtemp(prefix="embedserve-faults-"))
    logs.mkdir(parents=True, exist_ok=True)
    ctx = Context(args.artifact, logs, args.multinode_result)
    outcomes = run(ctx, select(args.only))
    sections = [health_check_section()]
    report.write(outcomes, args.out, NAMES, os.cpu_count() or 1, sections)
    failed = [o.name for o in outcomes if not o.passed]
    names = f": {', '.join(failed)}" if failed else ""
    sys.stdout.write(f"{len(outcomes)} rows, {len(failed)} failed{names}; wrote {args.out} "
                     f"(server logs in {logs})\n")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
