"""Rollout plans: ordered actions that take running dynos to the desired ones (pure).

One path for deploys, config changes, rollbacks, restarts and scaling (Heroku's preboot):

web dynos that must be replaced or added (all at once, next to the old ones)
  step 1 boot         each host's batch (plan/batch.py), one round trip with the release:
                      fresh ports reserved under the host's lock, the new units started, and
                      each waited for until its own unit listens on its $PORT (no other
                      process does) and answers HTTP there (boot timeout, 60 s)
  step 2 register     new targets in the app's target group: only now, so that the router
                      never sends the app's users to a port some other process holds
  step 3 wait_healthy each new target healthy
other process types, one dyno at a time: stop old, start new, wait_running
then the old web dynos retire (the plan's `commit_step`)
  deregister          old targets
  drain               wait out the deregistration delay
  stop                old units

Actions of one step may run in parallel; steps run in order. If an action before
`commit_step` fails, the executor runs `on_failure` (deregister and stop the new dynos, start
again the old non-web ones that were stopped for them, best effort): the old web dynos never
stopped serving. From `commit_step` on the new release serves: a failure there only leaves old
dynos behind, which the next rollout of the app stops.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from provisioner.model.formation import Formation
from provisioner.model.sizes import DEFAULT_SIZE
from provisioner.plan.placement import DynoRef
from provisioner.plan.ports import PORT_HIGH, PORT_LOW, assign_ports
from provisioner.plan.units import DynoInstance


class ActionKind(StrEnum):
    """What an action does; the executor (provisioner.ops.rollout) has one method for each.

    A StrEnum: plans print and serialise as the plain words (`boot`, `register`, ...).
    """

    BOOT = "boot"  # a new web dyno: started by its host's batch and answering on its $PORT
    START = "start"  # a non-web dyno: write the unit file, enable and start the unit
    REGISTER = "register"  # add the dyno's target to the router
    WAIT_HEALTHY = "wait_healthy"  # the router's health check passes
    DEREGISTER = "deregister"  # remove the dyno's target from the router
    DRAIN = "drain"  # the router's deregistration delay (the stop waits it out on the host)
    STOP = "stop"  # stop and disable the unit, remove its file and port reservation
    WAIT_RUNNING = "wait_running"  # a non-web dyno stays up for a moment


@dataclass(frozen=True)
class RolloutOptions:
    boot_timeout_s: float = 60.0  # Heroku: a web dyno must bind $PORT within 60 s
    health_timeout_s: float = 60.0
    drain_s: float = 30.0  # the target group's deregistration delay
    settle_s: float = 5.0  # a non-web dyno must stay up this long after start
    stop_timeout_s: float = 30.0  # SIGTERM, then SIGKILL (the unit's TimeoutStopSec=)
    port_low: int = PORT_LOW
    port_high: int = PORT_HIGH


@dataclass(frozen=True)
class Action:
    """One thing the executor does on one host for one dyno instance."""

    kind: ActionKind
    step: int
    instance: DynoInstance
    timeout_s: float | None = None

    @property
    def host(self) -> str:
        return self.instance.host

    @property
    def dyno(self) -> str:
        return self.instance.name

    @property
    def unit(self) -> str:
        return self.instance.unit

    @property
    def port(self) -> int | None:
        return self.instance.port

    @property
    def release(self) -> int:
        return self.instance.release

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "kind": self.kind.value,
            "host": self.host,
            "dyno": self.dyno,
            "unit": self.unit,
            "release": self.release,
            "port": self.port,
            "timeout_s": self.timeout_s,
        }

    def describe(self) -> str:
        port = f" port {self.port}" if self.port else ""
        return (
            f"{self.step:>2} {self.kind:<12} {self.dyno:<12} v{self.release} on {self.host}{port}"
        )


@dataclass(frozen=True)
class RolloutPlan:
    app: str
    release: int
    actions: list[Action] = field(default_factory=list)
    on_failure: list[Action] = field(default_factory=list)
    keep: list[DynoInstance] = field(default_factory=list)  # running and left alone
    final: list[DynoInstance] = field(default_factory=list)  # what runs when done
    commit_step: int | None = None  # from this step on the new release serves: no undo

    @property
    def started(self) -> list[DynoInstance]:
        """The new dynos: web ones booted by their hosts' batches, the others started."""
        kinds = (ActionKind.BOOT, ActionKind.START)
        return [a.instance for a in self.actions if a.kind in kinds]

    @property
    def stopped(self) -> list[DynoInstance]:
        return [a.instance for a in self.actions if a.kind is ActionKind.STOP]

    def booting(self) -> list[Action]:
        """The new web dynos' BOOT actions, which the hosts' batches do (plan/batch.py)."""
        return [a for a in self.actions if a.kind is ActionKind.BOOT]

    def steps(self) -> list[list[Action]]:
        """Actions grouped by step, in order; each group may run in parallel."""
        groups: dict[int, list[Action]] = defaultdict(list)
        for action in self.actions:
            groups[action.step].append(action)
        return [groups[s] for s in sorted(groups)]

    def split_at_commit(self) -> tuple[list[list[Action]], list[list[Action]]]:
        """steps() cut at commit_step: (the steps a failure undoes, those after it)."""
        groups = self.steps()
        if self.commit_step is None:
            return groups, []
        cut = next(i for i, g in enumerate(groups) if g[0].step >= self.commit_step)
        return groups[:cut], groups[cut:]

    def with_ports(self, ports: Mapping[str, int]) -> RolloutPlan:
        """The same plan with the ports the hosts reserved (unit -> port) for new dynos."""

        def ported(dyno: DynoInstance) -> DynoInstance:
            return dyno.with_port(ports[dyno.unit]) if dyno.unit in ports else dyno

        def moved(actions: list[Action]) -> list[Action]:
            return [replace(a, instance=ported(a.instance)) for a in actions]

        final = sorted(ported(d) for d in self.final)
        # An old dyno stopped since it was observed may have freed its port for a new one on
        # the same host: its target is now the new dyno's, and deregistering it would take the
        # new dyno out of the router. It goes with its unit; its target stays.
        serving = {(d.host, d.port) for d in final if d.is_web and d.port}

        def taken_over(action: Action) -> bool:
            return action.kind is ActionKind.DEREGISTER and (action.host, action.port) in serving

        return replace(
            self,
            actions=[a for a in moved(self.actions) if not taken_over(a)],
            on_failure=moved(self.on_failure),
            final=final,
        )

    def is_empty(self) -> bool:
        return not self.actions

    def describe(self) -> str:
        return "\n".join(a.describe() for a in self.actions) or "nothing to do"


def plan_converge(
    app: str,
    release: int,
    formation: Formation,
    placement: Mapping[DynoRef, str],
    running: Sequence[DynoInstance],
    ports_in_use: Mapping[str, Iterable[int]] | None = None,
    restart: Iterable[str] = (),
    options: RolloutOptions | None = None,
) -> RolloutPlan:
    """Take one app's running dynos to `release` with the formation, placed as `placement`.

    running: this app's dyno instances now on the hosts (any release), with their ports.
    ports_in_use: host -> ports used there by anything else (other apps' dynos).
    restart: dyno names (`web.1`) or types (`web`) to replace even if they already match.
    Deploy, rollback and config change: a new release, so every dyno is replaced.
    Scale, ps:type and host changes: only the dynos that differ are started or stopped.
    """
    opts = options or RolloutOptions()
    # One-off dynos are not in the formation: a rollout neither keeps nor stops them.
    running = [d for d in running if not d.is_oneoff]
    desired = _desired(app, release, formation, placement)
    restart_set = set(restart)
    # The newest generation of each dyno of this release is the one that may be kept.
    current = {d.name: d for d in sorted(running, key=lambda d: (d.gen, d)) if d.release == release}
    keep: list[DynoInstance] = []
    start: list[DynoInstance] = []
    for want in desired:
        have = current.get(want.name)
        if have and _matches(have, want) and not _restarting(want, restart_set):
            keep.append(have)
        else:
            gen = max((d.gen + 1 for d in running if _same_dyno(d, want)), default=0)
            start.append(DynoInstance(app, release, want.name, want.host, None, gen, want.size))
    kept_units = {d.unit for d in keep}
    stop = sorted(d for d in running if d.unit not in kept_units)
    start = _with_ports(start, running, ports_in_use or {}, opts)
    actions, on_failure = _actions(start, stop, opts)
    commit = min((a.step for a in actions if a.kind is ActionKind.DEREGISTER), default=None)
    final = sorted([*keep, *start])
    return RolloutPlan(app, release, actions, on_failure, sorted(keep), final, commit)


def _desired(
    app: str, release: int, formation: Formation, placement: Mapping[DynoRef, str]
) -> list[DynoInstance]:
    result = []
    for dyno, host in sorted(placement.items()):
        if dyno.app != app or dyno.type not in formation:
            continue
        if dyno.index > formation[dyno.type].quantity:
            continue
        size = formation[dyno.type].size or DEFAULT_SIZE
        result.append(DynoInstance(app, release, dyno.name, host, None, 0, size))
    return result


def _matches(have: DynoInstance, want: DynoInstance) -> bool:
    return have.host == want.host and have.size == want.size


def _restarting(want: DynoInstance, restart: set[str]) -> bool:
    return want.name in restart or want.type in restart


def _same_dyno(a: DynoInstance, b: DynoInstance) -> bool:
    return a.release == b.release and a.name == b.name


def _with_ports(
    start: list[DynoInstance],
    running: Sequence[DynoInstance],
    ports_in_use: Mapping[str, Iterable[int]],
    opts: RolloutOptions,
) -> list[DynoInstance]:
    """Fresh ports for new web dynos, avoiding every port in use on their host."""
    by_host: dict[str, list[DynoInstance]] = defaultdict(list)
    for dyno in start:
        if dyno.is_web:
            by_host[dyno.host].append(dyno)
    ported: dict[str, int] = {}
    for host, dynos in sorted(by_host.items()):
        taken = [
            *ports_in_use.get(host, ()),
            *(d.port for d in running if d.host == host and d.port),
        ]
        ported.update(
            assign_ports({}, [d.unit for d in dynos], taken, opts.port_low, opts.port_high, host)
        )
    return [d.with_port(ported.get(d.unit)) for d in start]


def _actions(
    start: list[DynoInstance], stop: list[DynoInstance], opts: RolloutOptions
) -> tuple[list[Action], list[Action]]:
    web_new = [d for d in start if d.is_web]
    web_old = [d for d in stop if d.is_web]
    others_new = [d for d in start if not d.is_web]
    others_old = [d for d in stop if not d.is_web]
    actions = _bring_up(web_new, 1, opts)
    on_failure = [Action(ActionKind.DEREGISTER, 1, d) for d in web_new] + [
        Action(ActionKind.STOP, 2, d, opts.stop_timeout_s) for d in web_new
    ]
    actions += _rolling_actions(others_new, others_old, _last(actions), opts)
    # The old web dynos retire last: until then any failure can be undone while they serve.
    actions += _stop_old(web_old, _last(actions) + 1, opts)
    # Undone, other types are left as they were: the new ones (a crash-looping worker) stop,
    # the old ones that rolling stopped start again (starting a running unit is a no-op).
    last = _last(on_failure)
    on_failure += [Action(ActionKind.STOP, last + 1, d, opts.stop_timeout_s) for d in others_new]
    on_failure += [Action(ActionKind.START, last + 2, d) for d in others_old]
    return actions, on_failure


def _last(actions: list[Action]) -> int:
    return max((a.step for a in actions), default=0)


def _bring_up(new: list[DynoInstance], first: int, opts: RolloutOptions) -> list[Action]:
    return (
        [Action(ActionKind.BOOT, first, d, opts.boot_timeout_s) for d in new]
        + [Action(ActionKind.REGISTER, first + 1, d) for d in new]
        + [Action(ActionKind.WAIT_HEALTHY, first + 2, d, opts.health_timeout_s) for d in new]
    )


def _stop_old(old: list[DynoInstance], first: int, opts: RolloutOptions) -> list[Action]:
    ported = [d for d in old if d.port]
    return (
        [Action(ActionKind.DEREGISTER, first, d) for d in ported]
        + [Action(ActionKind.DRAIN, first + 1, d, opts.drain_s) for d in ported]
        + [Action(ActionKind.STOP, first + 2, d, opts.stop_timeout_s) for d in old]
    )


def _rolling_actions(
    new: list[DynoInstance], old: list[DynoInstance], after: int, opts: RolloutOptions
) -> list[Action]:
    """Non-web types: one dyno at a time; the old instance of a name stops before the new one."""
    old_by_name: dict[tuple[str, str], list[DynoInstance]] = defaultdict(list)
    for dyno in old:
        old_by_name[(dyno.type, dyno.name)].append(dyno)
    actions: list[Action] = []
    step = after
    for dyno in sorted(new, key=lambda d: (d.type, d.index)):
        step += 1
        for previous in old_by_name.pop((dyno.type, dyno.name), []):
            actions.append(Action(ActionKind.STOP, step, previous, opts.stop_timeout_s))
        actions.append(Action(ActionKind.START, step + 1, dyno))
        actions.append(Action(ActionKind.WAIT_RUNNING, step + 2, dyno, opts.settle_s))
        step += 2
    leftovers = sorted(d for group in old_by_name.values() for d in group)
    if leftovers:
        step += 1
        actions += [Action(ActionKind.STOP, step, d, opts.stop_timeout_s) for d in leftovers]
    return actions


KEEP_RELEASES = 5


def releases_to_prune(
    on_disk: Iterable[int], in_use: Iterable[int], keep: int = KEEP_RELEASES
) -> list[int]:
    """Release versions a host may delete: all but the newest `keep`, never one in use.

    Delete both releases/v<N> and env/v<N>.json; rollbacks to a kept release start instantly.
    """
    versions = sorted(set(on_disk), reverse=True)
    busy = set(in_use)
    return sorted(v for v in versions[keep:] if v not in busy)
