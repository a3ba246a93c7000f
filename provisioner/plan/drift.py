"""Dyno units that drifted from what the rollout started (pure).

The rollout keeps a root-only reference copy of every dyno unit it starts
(/srv/dynoform/units/<unit>, templates/dyno/start-units) and removes it before it retires the
unit (stop-units). templates/dyno/check-units compares each host with its copies and prints one
line per drifted unit, `<unit> <problem>`, which `parse_unit_drift` reads:

- `missing`: the unit file is gone from /etc/systemd/system, or systemd cannot load it;
- `edited`: the file differs from the copy, drop-ins were added, or a changed file is not loaded;
- `stopped`: the unit is inactive or failed (a crash loop is `activating`: not drift).
"""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.errors import DynoformError
from provisioner.plan.units import parse_unit_name

PROBLEMS = ("missing", "edited", "stopped")


@dataclass(frozen=True)
class UnitDrift:
    """A dyno unit on a host that is not as the rollout started it (problem: one of PROBLEMS)."""

    host: str
    unit: str
    app: str
    problem: str


def parse_unit_drift(text: str, host: str) -> list[UnitDrift]:
    """The output of check-units on `host`; a line it cannot read is an error, not silence."""
    result = []
    for line in text.splitlines():
        if not line.strip():
            continue
        unit, _, problem = line.strip().partition(" ")
        instance = parse_unit_name(unit)
        if instance is None or problem not in PROBLEMS:
            raise DynoformError(f"check-units on host {host} printed an unexpected line: {line!r}")
        result.append(UnitDrift(host, unit, instance.app, problem))
    return sorted(result, key=lambda d: (d.app, d.unit))
