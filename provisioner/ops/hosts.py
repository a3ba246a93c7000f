"""The hosts dynos run on: list, add, bootstrap, run a command on one, remove.

Every operation goes through the Context's one fleet (inventory and SSH pool). Only `add`
creates the platform when there is none; the others need one (NoPlatform otherwise).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from provisioner.aws import instances
from provisioner.context import Context
from provisioner.fleet import Fleet, HostRow, Progress
from provisioner.playbook import StepReport
from provisioner.remote.fanout import Outcome

DEFAULT_TYPE = instances.DEFAULT_TYPE  # what `add` launches unless told


@dataclass(frozen=True)
class HostsAdded:
    """What `add` did: one outcome per slot (the ready host, or why it failed)."""

    count: int
    outcomes: list[Outcome[int, instances.Host]]
    seconds: float

    @property
    def ready(self) -> list[instances.Host]:
        return [o.value for o in self.outcomes if o.ok and o.value is not None]

    @property
    def failed(self) -> list[Outcome[int, instances.Host]]:
        return [o for o in self.outcomes if not o.ok]


@dataclass(frozen=True)
class Bootstrapped:
    """One host's bootstrap (or --check): the steps that changed, or would."""

    id: str
    ok: bool
    changes: list[StepReport] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        changes = [c.as_dict() for c in self.changes]
        return {"id": self.id, "ok": self.ok, "changes": changes, "error": self.error}


@dataclass(frozen=True)
class Executed:
    exit_code: int
    stdout: str
    stderr: str


def _fleet(ctx: Context) -> Fleet:
    ctx.platform(create=False)  # an existing platform: ctx.fleet() alone would make one
    return ctx.fleet()


def list_hosts(ctx: Context) -> list[HostRow]:
    """Every host of the platform, with how many dynos each runs (None: unknown)."""
    return _fleet(ctx).rows()


def add(
    ctx: Context,
    count: int = 1,
    instance_type: str = DEFAULT_TYPE,
    progress: Progress | None = None,
) -> HostsAdded:
    """Launch and bootstrap `count` hosts in parallel (the platform made first if need be);
    `progress(slot, host_id, state)` hears each host's steps. Failed hosts are terminated."""
    started = time.monotonic()
    fleet = ctx.fleet()
    outcomes = fleet.add(count, instance_type, progress)
    added = sum(1 for o in outcomes if o.ok)
    if added:
        fleet.declare_size(added, counted=True)  # the controller keeps this many
    return HostsAdded(count, outcomes, time.monotonic() - started)


def bootstrap(ctx: Context, ids: list[str], check: bool = False) -> list[Bootstrapped]:
    """Converge the given hosts (default: every runner) to their role; check: change nothing."""
    result = []
    for outcome in _fleet(ctx).bootstrap_many(ids, check):
        changes = outcome.value.changes if outcome.value else []
        result.append(Bootstrapped(outcome.item.id, outcome.ok, changes, outcome.error))
    return result


def exec_command(ctx: Context, host_id: str, argv: list[str], timeout: float) -> Executed:
    """Run a command on a host as the login user (NotFound for a host the platform lacks)."""
    code, stdout, stderr = _fleet(ctx).exec(host_id, argv, timeout)
    return Executed(code, stdout, stderr)


def remove(ctx: Context, host_id: str, force: bool = False) -> None:
    """Terminate a host that runs no dynos; force: even when it cannot be checked. The declared
    fleet size shrinks by one (unless the host was lost: its replacement took its place)."""
    _fleet(ctx).remove(host_id, force=force)
