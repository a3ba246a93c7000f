"""Per-host PORT allocation for web dynos (pure).

Every web dyno instance on a host gets its own port from one range shared by all apps, so apps
never collide. Existing instances keep their port; a deploy's new instances get fresh ports next
to the old ones (preboot), the lowest free first, so the result is deterministic.

What is planned here is a first guess from an earlier look at the hosts. The ports a rollout
uses are reserved on each host under a lock (templates/dyno/dyno-ports, run by the host's batch:
plan/batch.py), so rollouts of different apps at the same moment never share one, and a dyno is
registered with the router only once the socket on its port belongs to its own unit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from provisioner.errors import DynoformError

PORT_LOW = 20000
PORT_HIGH = 29999


def allocate_ports(
    taken: Iterable[int],
    count: int,
    low: int = PORT_LOW,
    high: int = PORT_HIGH,
    host: str = "",
) -> list[int]:
    """`count` free ports in [low, high], lowest first, none of them in `taken`."""
    used = {p for p in taken if low <= p <= high}
    free = high - low + 1 - len(used)
    if count > free:
        where = f" on host {host}" if host else ""
        raise DynoformError(
            f"no free dyno ports{where}: {count} needed, {free} free in {low}-{high}",
            "stop old dynos or add hosts",
        )
    result: list[int] = []
    port = low
    while len(result) < count:
        if port not in used:
            result.append(port)
        port += 1
    return result


def assign_ports(
    existing: Mapping[str, int],
    wanted: Sequence[str],
    taken: Iterable[int] = (),
    low: int = PORT_LOW,
    high: int = PORT_HIGH,
    host: str = "",
) -> dict[str, int]:
    """Ports for the units in `wanted` on one host.

    existing: unit -> port of the instances already on the host (all apps); those keep theirs.
    taken: other ports in use on the host (anything else listening).
    """
    result = {unit: existing[unit] for unit in wanted if unit in existing}
    fresh = [unit for unit in wanted if unit not in existing]
    ports = allocate_ports([*existing.values(), *taken], len(fresh), low, high, host)
    result.update(zip(fresh, ports, strict=True))
    return result


# The host side: templates/dyno/dyno-ports, run as root by each host's batch. The planner's ports
# above come from an earlier look at the hosts; the host's reservation, taken under its lock at
# the moment of the rollout, is the one that counts (two apps may roll out at the same moment).
PORTS_TOOL = "dyno/dyno-ports"


@dataclass(frozen=True)
class PortCheck:
    """One line of the batch's `wait`: ok, timeout, crashed (the dyno's process keeps exiting
    before it listens), or foreign (another process listens on the port)."""

    state: str
    port: int
    holder: str = ""  # foreign: "PID UNIT-OR-COMMAND"


def parse_port_checks(text: str) -> dict[int, PortCheck]:
    result = {}
    for line in text.splitlines():
        state, _, rest = line.strip().partition(" ")
        port, _, holder = rest.partition(" ")
        if state in ("ok", "timeout", "crashed", "foreign") and port.isdigit():
            result[int(port)] = PortCheck(state, int(port), holder)
    return result
