"""What an interrupted command left behind, judged from the records and the fleet (pure).

A release is `pending` from its creation until its rollout is proven; a command killed half-way
(kill -9, a lost connection, Ctrl-C) leaves it so. The next command on the app judges it by
what runs: if every dyno the formation asks of it is up (web dynos healthy in the router), its
rollout got that far and it serves: `succeeded`. Otherwise it never served: `failed`, and the
app converges back to the release before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from provisioner.model.formation import Formation, default_formation
from provisioner.model.release import Release
from provisioner.plan.units import DynoInstance


def wanted_dynos(release: Release, formation: Formation) -> set[str]:
    """The dyno names (`web.1`) the formation asks of this release's process types."""
    effective = default_formation(list(release.process_types), formation)
    return {f"{kind}.{i}" for kind, pf in effective.items() for i in range(1, pf.quantity + 1)}


def judge_pending(
    pending: Sequence[Release],
    formation: Formation,
    running: Iterable[DynoInstance],
    healthy_units: set[str],
    current: int | None = None,
) -> dict[int, str]:
    """version -> the status each pending release gets.

    running: the app's dynos that are active on reachable hosts; healthy_units: units of web
    dynos the router reports healthy; current: the newest succeeded release. The newest pending
    release after `current` whose wanted dynos all run succeeded (a release with no slug or
    nothing to run has nothing to prove); every other pending release failed.
    """
    up: dict[int, set[str]] = {}
    for dyno in running:
        if not dyno.is_web or dyno.unit in healthy_units:
            up.setdefault(dyno.release, set()).add(dyno.name)
    result: dict[int, str] = {}
    winner: int | None = None
    for release in sorted(pending, key=lambda r: r.version, reverse=True):
        needed = wanted_dynos(release, formation) if release.slug_key else set()
        newer = current is None or release.version > current
        if winner is None and newer and needed <= up.get(release.version, set()):
            winner = release.version
        result[release.version] = "succeeded" if release.version == winner else "failed"
    return result
