"""Per-host PORT allocation for web dynos (pure).

Every web dyno instance on a host gets its own port from one range shared by all apps, so apps
never collide. Existing instances keep their port; a deploy's new instances get fresh ports next
to the old ones (preboot), the lowest free first, so the result is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

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
