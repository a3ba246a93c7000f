"""Placement: which dynos run on which hosts (pure, deterministic, stable).

Rules, in order of importance:
1. never exceed a host's memory (sum of dyno sizes <= capacity - reserve);
2. keep every existing dyno where it is, unless its host is gone or can no longer hold it;
3. spread each process type over hosts (counts per host differ by at most 1 when capacity
   allows), then over zones, then prefer hosts without other dynos of the app, then the host
   with the most free memory, then the smallest host id (determinism);
4. scaling down removes the highest-numbered dynos first; if that leaves a type unbalanced,
   the fewest dynos move to restore the spread.

The search is built for fleets of hundreds of hosts: hosts that hold no dyno of an app all look
alike to that app except for zone and free memory, so one max-heap of free memory per zone finds
the best of them without scanning every host.
"""

from __future__ import annotations

import heapq
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from provisioner.errors import DynoformError
from provisioner.model.formation import Formation, ProcessFormation
from provisioner.model.sizes import dyno_size

DEFAULT_RESERVE_MB = 512  # kept free on every host for systemd, journald, sshd and builds


@dataclass(frozen=True)
class HostSpace:
    """A fleet host as placement sees it."""

    id: str
    zone: str
    memory_mb: int


@dataclass(frozen=True, order=True)
class DynoRef:
    """One dyno of one app: `web.1` is DynoRef(app, "web", 1)."""

    app: str
    type: str
    index: int

    @property
    def name(self) -> str:
        return f"{self.type}.{self.index}"


Placement = dict[DynoRef, str]  # dyno -> host id


def parse_dyno_name(name: str) -> tuple[str, int]:
    """`web.12` -> ("web", 12)."""
    kind, sep, number = name.rpartition(".")
    if not sep or not kind or not number.isdigit() or int(number) < 1:
        raise DynoformError(f"dyno name {name!r}: expected TYPE.N such as web.1")
    return kind, int(number)


def desired_dynos(formations: Mapping[str, Formation]) -> dict[DynoRef, int]:
    """Every dyno the formations ask for, with its memory in MB."""
    wanted: dict[DynoRef, int] = {}
    for app, formation in formations.items():
        for kind, pf in formation.items():
            memory = dyno_size(pf.size).memory_mb
            for index in range(1, pf.quantity + 1):
                wanted[DynoRef(app, kind, index)] = memory
    return wanted


class _State:
    """Mutable bookkeeping while one placement is computed."""

    def __init__(self, hosts: Sequence[HostSpace], reserve_mb: int) -> None:
        self.hosts = {h.id: h for h in hosts}
        self.free = {h.id: h.memory_mb - reserve_mb for h in hosts}
        self.assign: Placement = {}
        self.memory: dict[DynoRef, int] = {}
        # per (app, type): host -> count, zone -> count; per app: host -> count
        self.type_on_host: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        self.type_in_zone: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        self.app_on_host: dict[str, dict[str, int]] = defaultdict(dict)
        self.by_zone: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for h in hosts:
            self.by_zone[h.zone].append((-self.free[h.id], h.id))
        for heap in self.by_zone.values():
            heapq.heapify(heap)

    def add(self, dyno: DynoRef, host_id: str, memory: int) -> None:
        group = (dyno.app, dyno.type)
        zone = self.hosts[host_id].zone
        self.assign[dyno] = host_id
        self.memory[dyno] = memory
        self.free[host_id] -= memory
        _bump(self.type_on_host[group], host_id, 1)
        _bump(self.type_in_zone[group], zone, 1)
        _bump(self.app_on_host[dyno.app], host_id, 1)
        heapq.heappush(self.by_zone[zone], (-self.free[host_id], host_id))

    def remove(self, dyno: DynoRef) -> None:
        host_id = self.assign.pop(dyno)
        memory = self.memory.pop(dyno)
        group = (dyno.app, dyno.type)
        self.free[host_id] += memory
        _bump(self.type_on_host[group], host_id, -1)
        _bump(self.type_in_zone[group], self.hosts[host_id].zone, -1)
        _bump(self.app_on_host[dyno.app], host_id, -1)
        heapq.heappush(self.by_zone[self.hosts[host_id].zone], (-self.free[host_id], host_id))

    def key(self, dyno: DynoRef, host_id: str) -> tuple[int, int, int, int, str]:
        group = (dyno.app, dyno.type)
        zone = self.hosts[host_id].zone
        return (
            self.type_on_host[group].get(host_id, 0),
            self.type_in_zone[group].get(zone, 0),
            self.app_on_host[dyno.app].get(host_id, 0),
            -self.free[host_id],
            host_id,
        )

    def best_host(self, dyno: DynoRef, memory: int, exclude: str | None = None) -> str | None:
        """The best host with room for `memory` MB, or None."""
        touched = self.app_on_host[dyno.app]
        candidates = [h for h in touched if h != exclude and self.free[h] >= memory]
        for heap in self.by_zone.values():
            host = self._top_untouched(heap, touched, exclude)
            if host is not None and self.free[host] >= memory:
                candidates.append(host)
        if not candidates:
            return None
        return min(candidates, key=lambda h: self.key(dyno, h))

    def _top_untouched(
        self, heap: list[tuple[int, str]], touched: Mapping[str, int], exclude: str | None
    ) -> str | None:
        """Most free host of one zone that holds no dyno of the app (lazy heap cleanup)."""
        skipped: list[tuple[int, str]] = []
        found = None
        while heap:
            neg_free, host = heap[0]
            if -neg_free != self.free[host]:
                heapq.heappop(heap)  # stale entry; a fresh one was pushed when free changed
                continue
            if host in touched or host == exclude:
                skipped.append(heapq.heappop(heap))
                continue
            found = host
            break
        for entry in skipped:
            heapq.heappush(heap, entry)
        return found


def _bump(counts: dict[str, int], key: str, delta: int) -> None:
    value = counts.get(key, 0) + delta
    if value:
        counts[key] = value
    else:
        counts.pop(key, None)


def held_formations(running: Iterable[tuple[DynoRef, str]]) -> dict[str, Formation]:
    """The formations other apps hold on the fleet: what runs, not what they wish for.

    `running` is (dyno, size) of each dyno that runs or is starting. An app whose release
    failed, or whose wishes never fitted, holds nothing, so it cannot block another app's
    rollout. Per type the quantity is the highest index that runs, with its largest size.
    """
    quantity: dict[tuple[str, str], int] = defaultdict(int)
    size: dict[tuple[str, str], str] = {}
    for dyno, dyno_size_name in running:
        key = (dyno.app, dyno.type)
        quantity[key] = max(quantity[key], dyno.index)
        if key not in size or _memory(dyno_size_name) > _memory(size[key]):
            size[key] = dyno_size_name
    result: dict[str, Formation] = defaultdict(dict)
    for (app, kind), count in sorted(quantity.items()):
        result[app][kind] = ProcessFormation(count, size[(app, kind)])
    return dict(result)


def _memory(size: str) -> int:
    return dyno_size(size).memory_mb


def place(
    formations: Mapping[str, Formation],
    hosts: Sequence[HostSpace],
    existing: Mapping[DynoRef, str] | None = None,
    reserve_mb: int = DEFAULT_RESERVE_MB,
    rebalance: bool = True,
) -> Placement:
    """Place every dyno the formations ask for; raises DynoformError when capacity is short.

    `existing` is the current placement: dynos still wanted stay on their host when it still
    exists and has room; dynos no longer wanted (scaled down, type removed) are dropped.
    """
    _check_hosts(hosts)
    wanted = desired_dynos(formations)
    state = _State(sorted(hosts, key=lambda h: h.id), reserve_mb)
    kept = _keep_existing(state, wanted, existing or {})
    missing = [d for d in wanted if d not in kept]
    # Big dynos first (less fragmentation), then a fixed order for determinism.
    missing.sort(key=lambda d: (-wanted[d], d))
    unplaced = [d for d in missing if not _place_one(state, d, wanted[d])]
    if unplaced:
        raise _capacity_error(state, unplaced, wanted)
    if rebalance:
        _rebalance(state, wanted)
    return dict(sorted(state.assign.items()))


def _check_hosts(hosts: Sequence[HostSpace]) -> None:
    seen: set[str] = set()
    for host in hosts:
        if host.id in seen:
            raise DynoformError(f"host {host.id!r} is listed twice")
        seen.add(host.id)


def _keep_existing(
    state: _State, wanted: Mapping[DynoRef, int], existing: Mapping[DynoRef, str]
) -> set[DynoRef]:
    kept: set[DynoRef] = set()
    for dyno in sorted(existing):
        host = existing[dyno]
        memory = wanted.get(dyno)
        if memory is None or host not in state.hosts or state.free[host] < memory:
            continue
        state.add(dyno, host, memory)
        kept.add(dyno)
    return kept


def _place_one(state: _State, dyno: DynoRef, memory: int) -> bool:
    host = state.best_host(dyno, memory)
    if host is None:
        return False
    state.add(dyno, host, memory)
    return True


def _rebalance(state: _State, wanted: Mapping[DynoRef, int]) -> None:
    """Move the fewest dynos needed so each type's counts per host differ by at most 1."""
    groups: dict[tuple[str, str], list[DynoRef]] = defaultdict(list)
    for dyno in wanted:
        groups[(dyno.app, dyno.type)].append(dyno)
    for group, dynos in sorted(groups.items()):
        counts = state.type_on_host[group]
        # With fewer dynos than hosts some host has none, so balance means at most 1 each.
        while counts and max(counts.values()) > 1 or len(dynos) >= len(state.hosts):
            if not _move_one(state, group, dynos):
                break


def _move_one(state: _State, group: tuple[str, str], dynos: list[DynoRef]) -> bool:
    counts = state.type_on_host[group]
    if not counts:
        return False
    busiest = max(sorted(counts), key=lambda h: counts[h])
    victim = max(d for d in dynos if state.assign.get(d) == busiest)
    memory = state.memory[victim]
    target = state.best_host(victim, memory, exclude=busiest)
    if target is None or counts.get(target, 0) + 1 >= counts[busiest]:
        return False
    state.remove(victim)
    state.add(victim, target, memory)
    return True


def _capacity_error(
    state: _State, unplaced: list[DynoRef], wanted: Mapping[DynoRef, int]
) -> DynoformError:
    need = sum(wanted[d] for d in unplaced)
    free_total = sum(max(0, f) for f in state.free.values())
    free_max = max((f for f in state.free.values()), default=0)
    biggest = max(wanted[d] for d in unplaced)
    names = ", ".join(f"{d.app}/{d.name}" for d in sorted(unplaced)[:5])
    more = f" and {len(unplaced) - 5} more" if len(unplaced) > 5 else ""
    short = max(need - free_total, biggest - max(0, free_max))
    return DynoformError(
        f"not enough host memory: {len(unplaced)} dynos ({names}{more}) need {need} MB; "
        f"the hosts have {free_total} MB free in total and {max(0, free_max)} MB at most on "
        f"one host, so at least {short} MB more is missing",
        "add hosts (dynoform hosts:add), use bigger instance types, or scale down",
    )


def moved_dynos(before: Mapping[DynoRef, str], after: Mapping[DynoRef, str]) -> list[DynoRef]:
    """Dynos present in both placements whose host changed."""
    return sorted(d for d, h in after.items() if d in before and before[d] != h)


def by_host(placement: Mapping[DynoRef, str]) -> dict[str, list[DynoRef]]:
    result: dict[str, list[DynoRef]] = defaultdict(list)
    for dyno, host in sorted(placement.items()):
        result[host].append(dyno)
    return dict(result)


def placement_to_dict(placement: Mapping[DynoRef, str]) -> dict[str, dict[str, str]]:
    """{app: {"web.1": host_id}} for JSON state documents."""
    result: dict[str, dict[str, str]] = defaultdict(dict)
    for dyno, host in sorted(placement.items()):
        result[dyno.app][dyno.name] = host
    return dict(result)


def placement_from_dict(data: Mapping[str, Mapping[str, str]]) -> Placement:
    result: Placement = {}
    for app, dynos in data.items():
        for name, host in dynos.items():
            kind, index = parse_dyno_name(name)
            result[DynoRef(app, kind, index)] = host
    return result


def synthetic_fleet(
    apps: int, hosts: int, zones: int = 3, host_memory_mb: int = 16384
) -> tuple[dict[str, Formation], list[HostSpace]]:
    """A deterministic fleet for benchmarks: 10 dynos per app on average (web, worker, clock)."""
    fleet = [HostSpace(f"i-{n:05d}", f"zone-{n % zones}", host_memory_mb) for n in range(hosts)]
    sizes = ("standard-1x", "standard-2x", "basic")
    formations: dict[str, Formation] = {}
    for n in range(apps):
        formations[f"app-{n:04d}"] = {
            "web": ProcessFormation(4 + n % 5, sizes[n % 3]),
            "worker": ProcessFormation(2 + (n * 7) % 4, sizes[(n + 1) % 3]),
            "clock": ProcessFormation(n % 2, "basic"),
        }
    return formations, fleet


def placement_benchmark(apps: int = 1000, hosts: int = 500) -> float:
    """Seconds to place about 10 dynos per app from scratch (10,000 dynos for the default)."""
    formations, fleet = synthetic_fleet(apps, hosts)
    start = time.perf_counter()
    place(formations, fleet)
    return time.perf_counter() - start


def count_dynos(formations: Mapping[str, Formation]) -> int:
    return sum(pf.quantity for f in formations.values() for pf in f.values())


def host_usage(
    placement: Mapping[DynoRef, str], memory: Mapping[DynoRef, int], hosts: Iterable[HostSpace]
) -> dict[str, int]:
    """MB used per host by the placed dynos (every host listed, 0 when empty)."""
    used = {h.id: 0 for h in hosts}
    for dyno, host in placement.items():
        used[host] += memory[dyno]
    return used
