"""Dyno units stopped or edited by hand on a live host: found, and put back as they started.

The controller calls these host by host: `check_units` for every app on a host (one read-only
round trip), `restore_units` for one app (while it holds the app's lease). Both run host
programs (templates/dyno/check-units, restore-units) against the reference copies the rollout
keeps; see provisioner.plan.drift for what each problem means.
"""

from __future__ import annotations

from provisioner.model.names import validate_app_name
from provisioner.ops.rollout import program_argv
from provisioner.plan.drift import UnitDrift, parse_unit_drift
from provisioner.remote.runner import HostRunner

CHECK_UNITS = "check-units"
RESTORE_UNITS = "restore-units"

__all__ = ["UnitDrift", "check_units", "restore_units"]

# A restart waits for the old process to stop (TimeoutStopSec of a dyno: 30 s) and the new one to
# start; an app has a few units on a host.
RESTORE_TIMEOUT_S = 300.0


def check_units(conn: HostRunner, host_id: str) -> list[UnitDrift]:
    """The dyno units on this host that drifted from their reference copies, all apps."""
    result = conn.run(program_argv(CHECK_UNITS), sudo=True, check=True)
    return parse_unit_drift(result.stdout, host_id)


def restore_units(conn: HostRunner, app: str) -> list[str]:
    """Put the app's drifted units on this host back; one line per unit acted on:
    `<unit> restored (<problem>)`, or `<unit> failed (<problem>)` when it would not start."""
    argv = program_argv(RESTORE_UNITS, validate_app_name(app))
    result = conn.run(argv, sudo=True, timeout=RESTORE_TIMEOUT_S, check=True)
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]
