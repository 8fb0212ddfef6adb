"""``python -m loadtest.faults``: faults and hostile input against a real embedserve, each
judged on what its clients got, written up as one table in docs/reliability.md.

One module per class: ``replica`` (kill -9 and SIGSTOP under load), ``overload``,
``disconnect`` (clients that leave), ``hostile`` (bad requests, slow and idle connections),
``multinode`` (the node-loss scenario's row); ``harness`` runs a selection, ``report`` writes it.
"""

from .harness import NAMES, SCENARIOS, Context, Scenario, run, select
from .records import HANG_S, Record, failure_problem, problems
from .report import Outcome

__all__ = [
    "HANG_S",
    "NAMES",
    "SCENARIOS",
    "Context",
    "Outcome",
    "Record",
    "Scenario",
    "failure_problem",
    "problems",
    "run",
    "select",
]
