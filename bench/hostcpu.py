"""CPU seconds spent on each local-cloud host, by kind of work, read from /proc.

Each host is a systemd-nspawn container; every process in it shows its systemd unit in its
`name=systemd` cgroup line. A process's total is its own CPU and that of the children it
reaped (utime, stime, cutime, cstime), so over an interval the sum over the host's process
tree counts the work of processes that came and went (ssh sessions, sudo, unpacking) too.
Kinds: `dyno` (units in dynoform.slice: the dynos' own boot and work), `controller` (the
platform's controller, which runs whether or not anything is deployed) and `platform` (the
rest: sshd, sudo, systemd starting units, the unpack, journald: the deploy's own work).
A dyno that stops meanwhile is reaped by the host's PID 1: its CPU before the interval moves
into PID 1's children's time, so the platform's figure leaves it out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Proc:
    kind: str
    total: float  # CPU seconds, own and reaped children's


def hosts() -> dict[str, int]:
    """Machine name (df-<instance>) -> PID of the container's init, for every running host."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"systemd-nspawn") or b"-M" not in argv:
            continue
        name = argv[argv.index(b"-M") + 1].decode()
        children = _children(int(entry.name))
        if children:
            found[name] = children[0]
    return found


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in (Path("/proc") / str(pid) / "task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return out


def snapshot(root: int) -> dict[int, Proc]:
    """Every process of one host's tree, with its kind and total CPU."""
    found: dict[int, Proc] = {}
    stack = [root]
    while stack:
        pid = stack.pop()
        proc = _read(pid)
        if proc is not None:
            found[pid] = proc
            stack += _children(pid)
    return found


def _read(pid: int) -> Proc | None:
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        cgroup = (Path("/proc") / str(pid) / "cgroup").read_text()
    except OSError:
        return None
    total = sum(int(x) for x in stat[11:15]) / TICK
    return Proc(kind_of(cgroup), total)


def kind_of(cgroup: str) -> str:
    for line in cgroup.splitlines():
        if ":name=systemd:" in line or line.startswith("0::"):
            path = line.split(":", 2)[2]
            if "/dynoform.slice/dyno-" in path:
                return "dyno"
            if "/dynoform-controller.service" in path:
                return "controller"
    return "platform"


def usage(before: dict[int, Proc], after: dict[int, Proc]) -> dict[str, float]:
    """CPU seconds by kind between two snapshots of one host."""
    by_kind = {"platform": 0.0, "dyno": 0.0, "controller": 0.0}
    for pid, proc in after.items():
        was = before.get(pid)
        # A pid seen before with another kind is another process (reused pid): all of it new.
        start = was.total if was is not None and was.kind == proc.kind else 0.0
        by_kind[proc.kind] += proc.total - start
    # What vanished was reaped by a process still there (a stopped dyno by PID 1, counted as
    # platform): its CPU before the interval is in that process's growth; take it back out.
    for pid, proc in before.items():
        now = after.get(pid)
        if now is None or now.kind != proc.kind:
            by_kind["platform"] -= proc.total
    return {kind: round(max(0.0, seconds), 3) for kind, seconds in by_kind.items()}


def snapshot_all() -> dict[str, dict[int, Proc]]:
    return {name: snapshot(root) for name, root in hosts().items()}


def usage_all(
    before: dict[str, dict[int, Proc]], after: dict[str, dict[int, Proc]]
) -> dict[str, dict[str, float]]:
    return {name: usage(before[name], after[name]) for name in after if name in before}
