"""``python -m loadtest.soak``: start embedserve (or use --url), measure the capacity of a mixed
workload, offer 70 % of it open-loop for ten minutes with a few bad requests in the mix, and
judge: no unexpected errors, replica RSS growth < 5 %, p99 drift < 10 % (loadtest.soak.verdicts).

Writes summary.json, requests.csv and soak.png under --out and the report --doc. Exit status:
0 every verdict passed, 1 a verdict failed, 2 the soak could not run (arguments, server start),
130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import logging
import os
import shlex
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import aiohttp

from ..bench.machine import machine
from ..bench.served import embedserve
from ..runner import Sample
from ..server import fetch_info
from ..summary import now, status_key
from . import report, traffic, verdicts
from .verdicts import Capacity, Records, SoakSummary, Windows

log = logging.getLogger("loadtest.soak")
DEFAULT_ARTIFACT = Path("artifacts/all-MiniLM-L6-v2")  # python -m service's default; exported
DEFAULT_MAX_INPUTS = 2048  # the service's default, for a --url server without /info
FRACTION = 0.1  # warm-up and windows by default: a tenth of the run each
RSS_EVERY_S = 5.0  # 12 samples a minute: a steady median, and /proc walks cost nothing


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--url", help="soak this running server instead of starting one")
    p.add_argument("--pid", type=int, help="with --url: its launcher's pid, for replica RSS")
    p.add_argument("--artifact", type=Path, default=DEFAULT_ARTIFACT, help="to start a server")
    p.add_argument("--duration-s", type=float, default=600.0, help="seconds of open-loop traffic")
    p.add_argument("--load", type=float, default=0.7, help="good requests ÷ measured capacity")
    p.add_argument("--capacity-rps", type=float, help="skip the ramp: the good mix's capacity")
    p.add_argument("--capacity-s", type=float, default=10.0, help="seconds per ramp step")
    p.add_argument("--warmup-s", type=float, help="default: a tenth of --duration-s")
    p.add_argument("--window-s", type=float, help="compared windows; default a tenth")
    p.add_argument("--rss-every-s", type=float, help="default: 5, or a fifth of the window")
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks/soak"), help="%(default)s")
    p.add_argument("--doc", type=Path, default=Path("docs/soak.md"), help="%(default)s")
    args = p.parse_args(argv)
    if args.load <= 0 or args.duration_s <= 0 or args.capacity_s <= 0:
        p.error("--load, --duration-s and --capacity-s must be positive")
    try:
        args.windows = Windows(
            args.duration_s,
            FRACTION * args.duration_s if args.warmup_s is None else args.warmup_s,
            FRACTION * args.duration_s if args.window_s is None else args.window_s,
        )
    except ValueError as exc:
        p.error(str(exc))
    if args.rss_every_s is None:
        args.rss_every_s = min(RSS_EVERY_S, args.windows.window_s / 5)
    if not 0 < args.rss_every_s <= args.windows.window_s / 3:
        p.error("--rss-every-s: at most a third of the window, for a median of 3 samples or more")
    return args


class CannotRun(Exception):
    """The soak could not start measuring; the message says why."""


@contextmanager
def server(args: argparse.Namespace) -> Iterator[tuple[str, int | None]]:
    """(URL, launcher pid): the given server, or ``python -m service`` with its defaults (all of
    this machine's cores for its one replica: ``--num-cpus`` is what the launcher would pick)."""
    if args.url is not None:
        yield args.url.rstrip("/"), args.pid
        return
    log_file = Path(tempfile.mkdtemp(prefix="embedserve-soak-")) / "server.log"
    log.info("starting python -m service (log: %s)", log_file)
    with ExitStack() as stack:
        try:
            s = stack.enter_context(embedserve(args.artifact, os.cpu_count() or 1, log_file))
        except RuntimeError as exc:  # it exited or never said it was serving
            raise CannotRun(str(exc)) from None
        yield s.url, s.pid


async def server_info(url: str) -> dict | None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        return await fetch_info(session, url)


def write_requests(records: Records, path: Path) -> Path:
    """Every request, for re-analysis: kind, scheduled start (s), latency (ms), status."""
    rows: list[tuple[str, Sample]] = [(k, s) for k, samples in records.items() for s in samples]
    rows.sort(key=lambda row: row[1].scheduled)
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["kind", "scheduled_s", "latency_ms", "status", "outcome", "inputs"])
        for kind, s in rows:
            out.writerow([kind, f"{s.scheduled:.4f}", f"{s.latency_ms:.2f}", status_key(s),
                          s.outcome, s.inputs])  # fmt: skip
    return path


def run(args: argparse.Namespace, command: str) -> tuple[SoakSummary, Records]:
    started, host = now(), machine()
    windows: Windows = args.windows
    with server(args) as (url, launcher):
        info = asyncio.run(server_info(url))
        if args.capacity_rps is not None:
            capacity = Capacity(method="given (--capacity-rps)", requests_per_s=args.capacity_rps,
                                steps=[])  # fmt: skip
        else:
            capacity = asyncio.run(traffic.measure_capacity(url, args.capacity_s))
        if capacity.requests_per_s <= 0:
            statuses = [step["statuses"] for step in capacity.steps]
            raise CannotRun(f"no OK answer from {url} during the capacity ramp: {statuses}")
        max_inputs = ((info or {}).get("limits") or {}).get("max_inputs", DEFAULT_MAX_INPUTS)
        kinds = traffic.kinds(max_inputs)
        rates = traffic.kind_rates(kinds, args.load * capacity.requests_per_s, args.duration_s)
        per_kind = ", ".join(f"{k} {r:.2f}/s" for k, r in rates.items())
        log.info("soak: %.0f s at %.2f requests/s in all: %s", args.duration_s,
                 sum(rates.values()), per_kind)  # fmt: skip
        soaked = asyncio.run(
            traffic.soak(url, kinds, rates, args.duration_s, launcher, args.rss_every_s)
        )
    host.load_avg_end = os.getloadavg()
    expected = {k.name: k.expected for k in kinds}
    records = soaked.records
    judged = verdicts.judge(records, expected, soaked.rss, windows)
    good = [s for k in kinds if k.good for s in records[k.name]]
    summary = SoakSummary(
        started_at=started.isoformat(timespec="seconds"),
        command=command,
        machine=host.model_dump(mode="json"),
        url=url,
        server_info=info,
        capacity=capacity,
        load=args.load,
        offered_rps=sum(rates.values()),
        duration_s=args.duration_s,
        warmup_s=windows.warmup_s,
        window_s=windows.window_s,
        requests=sum(len(v) for v in records.values()),
        kinds={
            k.name: verdicts.kind_stats(records[k.name], k.share, rates[k.name], k.expected)
            for k in kinds
        },
        unexpected_examples=verdicts.unexpected_examples(records, expected),
        timeline=verdicts.timeline(good, soaked.rss, windows.window_s, args.duration_s),
        rss=soaked.rss,
        verdicts=judged,
        passed=verdicts.passed(judged),
    )
    return summary, records


def write(summary: SoakSummary, records: Records, out: Path, doc: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "summary.json"
    json_path.write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")
    png = report.plot(summary, records, out / "soak.png")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(report.markdown(summary, png, doc), encoding="utf-8")
    return [json_path, write_requests(records, out / "requests.csv"), png, doc]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "loadtest.soak", *argv])
    try:
        summary, records = run(args, command)
    except CannotRun as exc:
        log.error("soak could not run: %s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted: no verdict")
        return 130
    files = write(summary, records, args.out, args.doc)
    sys.stdout.write(report.console(summary, args.doc))
    log.info("wrote %s", ", ".join(map(str, files)))
    return 0 if summary.passed else 1


if __name__ == "__main__":
    sys.exit(main())
