"""Which scenarios exist, which server each needs, and running a selection of them.

Scenarios that need the same server (``ServerSpec``) share one start, in the order listed; a
start takes 20 s to over a minute here, so the whole default run is three starts. Scenarios whose
server is ``None`` start what they need themselves (the multi-node cluster).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import disconnect, hostile, multinode, overload, replica
from .replica import RAY_HEALTH_DEFAULTS
from .report import Outcome
from .target import ServerSpec, Target, started

log = logging.getLogger("loadtest.faults")

# A throwaway server's key, so the hostile probes can send a wrong one (not a secret).
API_KEY = "reliability-harness-key"
# Launcher defaults, plus an API key so that a wrong one can be tried.
DEFAULTS = ServerSpec("haproxy", API_KEY)
# Launcher defaults, no key: the overload flood (loadtest.bench.qos) sends none, and shows that
# the service's short health checks do not replace a replica that is only busy.
KEYLESS = ServerSpec("haproxy")
# Ray's own health-check options instead of the service's (settings.py gives the reasoning).
RAY_HEALTH = ServerSpec("haproxy", None, tuple(RAY_HEALTH_DEFAULTS.items()))


@dataclass(frozen=True)
class Context:
    artifact: Path
    log_dir: Path
    multinode_result: Path | None = None  # read this node-loss result instead of running it


Run = Callable[[Context, Target | None, str], Coroutine[Any, Any, list[Outcome]]]


@dataclass(frozen=True)
class Scenario:
    name: str
    server: ServerSpec | None
    run: Run
    default: bool = True  # part of a plain run (else only with --only)


def _on_target(fn: Callable[[Target, str], Awaitable[list[Outcome]]]) -> Run:
    async def run(ctx: Context, target: Target | None, name: str) -> list[Outcome]:
        assert target is not None
        return await fn(target, name)

    return run


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("crash-haproxy", DEFAULTS, _on_target(replica.crash)),
    Scenario("crash-proxy", ServerSpec("proxy"), _on_target(replica.crash)),
    Scenario("overload", KEYLESS, _on_target(overload.run)),
    Scenario("wedge", KEYLESS, _on_target(replica.wedge)),
    Scenario("wedge-proxy", ServerSpec("proxy"), _on_target(replica.wedge), default=False),
    Scenario("wedge-ray-defaults", RAY_HEALTH, _on_target(replica.wedge_ray_defaults),
             default=False),
    Scenario("disconnect", DEFAULTS, _on_target(disconnect.run)),
    Scenario("hostile", DEFAULTS, _on_target(hostile.run)),
    Scenario("multinode", None, lambda ctx, _, name: multinode.run(ctx.artifact,
             ctx.multinode_result, name), default=False),
)  # fmt: skip
NAMES = tuple(s.name for s in SCENARIOS)


def select(only: Sequence[str] | None) -> list[Scenario]:
    """The default scenarios, or those named (any, in the registry's order)."""
    unknown = set(only or ()) - set(NAMES)
    if unknown:
        raise ValueError(f"unknown scenarios {sorted(unknown)}; known: {', '.join(NAMES)}")
    return [s for s in SCENARIOS if (s.name in only if only else s.default)]


def by_server(scenarios: Sequence[Scenario]) -> list[tuple[ServerSpec | None, list[Scenario]]]:
    """Scenarios grouped by the server they need, groups in order of first appearance."""
    groups: dict[ServerSpec | None, list[Scenario]] = {}
    for s in scenarios:
        groups.setdefault(s.server, []).append(s)
    return list(groups.items())


def broken(s: Scenario, spec: ServerSpec | None, error: BaseException) -> Outcome:
    """A row for a scenario that could not run to the end: the error is its problem."""
    problem = f"the scenario did not finish: {type(error).__name__}: {error}"
    server = spec.command() if spec else "its own"
    return Outcome(name=s.name, scenario=s.name, fault=s.name, server=server, problems=[problem])


def run_one(
    ctx: Context, s: Scenario, spec: ServerSpec | None, target: Target | None
) -> list[Outcome]:
    log.info("scenario %s", s.name)
    found: list[Outcome]
    try:
        found = asyncio.run(s.run(ctx, target, s.name))
    except Exception as exc:  # a row that says why beats losing the other scenarios' rows
        log.exception("scenario %s failed", s.name)
        found = [broken(s, spec, exc)]
    for o in found:
        log.info("%s: %s", o.name, "PASS" if o.passed else f"FAIL {o.problems}")
    return found


def run_group(ctx: Context, spec: ServerSpec | None, group: Sequence[Scenario]) -> list[Outcome]:
    """One server for the group (none for ``spec=None``); its scenarios one after another."""
    if spec is None:
        return [o for s in group for o in run_one(ctx, s, spec, None)]
    log.info("starting %s for %s", spec.command(), ", ".join(s.name for s in group))
    try:
        with started(spec, ctx.artifact, ctx.log_dir) as target:
            return [o for s in group for o in run_one(ctx, s, spec, target)]
    except RuntimeError as exc:  # the server did not start (see its log)
        return [broken(s, spec, exc) for s in group]


def run(ctx: Context, scenarios: Sequence[Scenario]) -> list[Outcome]:
    """Every scenario's rows, one server start per group (``by_server``)."""
    return [o for spec, group in by_server(scenarios) for o in run_group(ctx, spec, group)]
