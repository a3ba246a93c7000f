"""Rolling an app's dynos across the fleet: the executor of provisioner.plan.rollout.

Reads what runs (systemctl on every host, over the pooled SSH edge), asks the pure core where
dynos go (placement) and what to do (rollout plan), and does it: hosts get the release (slug
fetched through a presigned URL and checked by sha256, env file root-only), units start, the
router table follows. If a new web dyno never answers, or anything else goes wrong before the
new release serves (an API error, Ctrl-C), the new ones stop and the old keep serving.

The executor talks to hosts only through a `HostRunner` (run, put: the SSH Connection in real
use) that a `HostSource` (the Fleet) hands out, and to the router through `Router` (the ELBv2
RouterTable): tests give fakes of both and read the exact commands a converge sends. Each
ActionKind of the plan has one method here; the shell programs hosts run are files under
templates/dyno/.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Protocol, TypeVar

from provisioner.aws import instances
from provisioner.aws.blobs import Blobs
from provisioner.aws.router import RouterTarget
from provisioner.context import Context
from provisioner.errors import DynoformError
from provisioner.model.formation import Formation
from provisioner.model.release import Release
from provisioner.model.sizes import instance_memory_mb
from provisioner.ops.buildhost import build_paths, ensure_node, needs_node
from provisioner.plan.batch import (
    PORT_MARK,
    HostBatch,
    batch_argv,
    batch_document,
    parse_batch,
    start_document,
)
from provisioner.plan.batch import Release as BatchRelease
from provisioner.plan.placement import (
    DynoRef,
    HostSpace,
    desired_dynos,
    held_formations,
    place,
)
from provisioner.plan.ports import PortCheck
from provisioner.plan.rollout import (
    Action,
    ActionKind,
    RolloutOptions,
    RolloutPlan,
    plan_converge,
    releases_to_prune,
)
from provisioner.plan.units import (
    RUNNING_STATES,
    DynoState,
    app_user,
    dyno_facts_argv,
    ensure_app_user_argv,
    env_file,
    journal_tail_argv,
    parse_dyno_facts,
    release_dir,
)
from provisioner.remote.fanout import fan_out
from provisioner.remote.runner import HostRunner
from provisioner.remote.ssh import Connection
from provisioner.render import (
    LAUNCHER_PATH,
    host_program,
    launcher_source,
    ports_tool_source,
    render_dyno_unit,
    render_env_document,
)
from provisioner.store import Store

Say = Callable[[str], None]

# Shell programs hosts run (templates/dyno/), as `sh -c PROGRAM sh ARGS...`.
UNPACK_RELEASE = "unpack-release"
# How often a rollout asks the router whether its new targets passed their checks (one
# describe_target_health call): often in the first second, when a new target usually passes
# (the local router admits one on its first check), then seldom (an ALB takes 10 s or more).
HEALTH_POLL_S = 0.02
HEALTH_POLL_FAST_S = 1.0
HEALTH_POLL_SLOW_S = 0.5
START_UNITS = "start-units"
STOP_UNITS = "stop-units"
FORGET_BUILDS = "forget-builds"
REMOVE_USER = "remove-user"


# Creating the app's user, where another command of the app may be creating it too: the user
# exists afterwards either way.
_USER_RACE = 'user=$1; shift; "$@" || getent passwd "$user" >/dev/null'


def program_argv(name: str, *args: str) -> list[str]:
    """argv running the host program templates/dyno/NAME with these arguments."""
    return ["sh", "-c", host_program(name), "sh", *args]


# How long the router takes to stop sending an app's requests once its rule is deleted (the
# local cloud's router follows at once; an ALB within a second or two).
ROUTER_SETTLE_S = 1.5

# Progress after each kind of step (boot and start have their own line before they run).
_DONE = {
    ActionKind.BOOT: "{dynos} answering on $PORT",
    ActionKind.WAIT_HEALTHY: "{dynos} healthy in the router",
    ActionKind.DEREGISTER: "{dynos} (old) deregistered, draining",
    ActionKind.WAIT_RUNNING: "{dynos} running",
}


def dyno_names(actions: Sequence[Action]) -> str:
    """`web.1, web.2`; with dynos of several releases (old ones still draining from the deploys
    before, retired again), each release's own: `web.1, web.2 of v3; web.1, web.2 of v2`."""
    by_release: dict[int, list[str]] = defaultdict(list)
    for action in actions:
        by_release[action.release].append(action.dyno)
    if len(by_release) == 1:
        return ", ".join(*by_release.values())
    return "; ".join(f"{', '.join(names)} of v{v}" for v, names in sorted(by_release.items())[::-1])


R = TypeVar("R", bound=HostRunner)
R_co = TypeVar("R_co", bound=HostRunner, covariant=True)


class HostSource(Protocol[R_co]):
    """The runner hosts (provisioner.fleet.Fleet): which are ready, and a runner for each."""

    def ready(self) -> list[instances.Host]:
        """Running hosts whose bootstrap finished."""
        ...

    def connect(self, host: instances.Host) -> R_co: ...

    def close(self) -> None:
        """Close the connections (the Context does for the real fleet)."""
        ...


class Router(Protocol):
    """The app's routing (provisioner.aws.router.RouterTable over ELBv2)."""

    def ensure_rule(
        self, app: str, domains: Iterable[str], maintenance: bool, plain_http: bool | None
    ) -> None: ...

    def register(self, app: str, targets: Iterable[RouterTarget]) -> None: ...

    def deregister(self, app: str, targets: Iterable[RouterTarget]) -> None: ...

    def health(self, app: str, targets: Iterable[RouterTarget]) -> dict[RouterTarget, str]: ...

    def drain_seconds(self, app: str) -> int: ...

    def sync_targets(
        self, app: str, wanted: set[RouterTarget]
    ) -> tuple[set[RouterTarget], set[RouterTarget]]: ...

    def remove_app(self, app: str) -> None: ...

    def pinned(self, app: str) -> AbstractContextManager[None]:
        """Within: the app's target group is looked up once."""
        ...


Step = Callable[["Observed", str, list[Action]], None]


@dataclass
class Observed:
    hosts: list[instances.Host]
    dynos: dict[str, list[DynoState]] = field(default_factory=dict)  # host id -> states
    unreachable: dict[str, str] = field(default_factory=dict)
    # Only these hosts were looked at (an app's recorded hosts: Store.dyno_hosts); None: every
    # ready host was.
    scope: frozenset[str] | None = None

    def of_app(self, app: str) -> list[DynoState]:
        return [s for states in self.dynos.values() for s in states if s.instance.app == app]

    def address(self, host_id: str) -> str:
        for host in self.hosts:
            if host.id == host_id and host.private_ip:
                return host.private_ip
        raise DynoformError(f"host {host_id} has no address")


@dataclass
class Rollout(Generic[R]):
    """The executor. Generic in the runner its fleet hands out: with the real Fleet, `conn()`
    gives callers an SSH Connection (one-off dynos and logs stream over its transport); tests
    give a fleet of fake hosts."""

    fleet: HostSource[R]
    store: Store
    router: Router
    blobs: Blobs
    say: Say
    options: RolloutOptions = field(default_factory=RolloutOptions)
    clock: Callable[[], float] = time.time  # names the hosts' delayed-stop units

    # observing --------------------------------------------------------------------------------
    def observe(self, hosts: list[instances.Host] | None = None) -> Observed:
        """What runs on the ready hosts (or on `hosts`: the controller asks only those that
        answered its probe, so a silent host costs no SSH timeout)."""
        hosts = self.fleet.ready() if hosts is None else hosts
        observed = Observed(hosts)

        def facts(host: instances.Host) -> list[DynoState]:
            result = self.conn(host.id, observed).run(dyno_facts_argv(), timeout=30)
            return parse_dyno_facts(result.stdout, host.id)

        for outcome in fan_out(hosts, facts, timeout=60):
            if outcome.ok and outcome.value is not None:
                observed.dynos[outcome.item.id] = outcome.value
            else:
                observed.unreachable[outcome.item.id] = outcome.error or "unreachable"
                self.say(f"warning: host {outcome.item.id} is unreachable: {outcome.error}")
        observed.hosts = [h for h in hosts if h.id not in observed.unreachable]
        return observed

    def observe_app(self, app: str) -> Observed:
        """What runs on the hosts that may hold the app's dynos (observe_scope)."""
        return self.observe_scope(self.store.dyno_hosts(app))

    def observe_scope(self, recorded: frozenset[str] | None) -> Observed:
        """What runs on the `recorded` hosts of an app (Store.dyno_hosts), when each of them is
        ready; else, or with no record, on every ready host. A rollout of an app whose dynos
        all stay where they are then costs no SSH to the rest of the fleet."""
        ready = self.fleet.ready()
        if recorded is None or not recorded <= {h.id for h in ready}:
            return self.observe(ready)
        observed = self.observe([h for h in ready if h.id in recorded])
        observed.scope = recorded
        return observed

    def reachable(self, hosts: list[instances.Host] | None = None) -> list[instances.Host]:
        """The ready hosts (or `hosts`) that accept a connection, kept in the pool for what
        follows: enough to choose a host to build on. What runs on them (observe) is asked when
        it matters."""
        answered = []
        hosts = self.fleet.ready() if hosts is None else hosts
        for outcome in fan_out(hosts, self.fleet.connect, timeout=60):
            if outcome.ok:
                answered.append(outcome.item)
            else:
                self.say(f"warning: host {outcome.item.id} is unreachable: {outcome.error}")
        return answered

    def conn(self, host_id: str, observed: Observed) -> R:
        for host in observed.hosts:
            if host.id == host_id:
                return self.fleet.connect(host)
        raise DynoformError(f"host {host_id} is not usable")

    # planning ---------------------------------------------------------------------------------
    def placement(self, observed: Observed, app: str, formation: Formation) -> dict[DynoRef, str]:
        if not observed.hosts and any(pf.quantity for pf in formation.values()):
            raise DynoformError("no usable hosts", "add some: dynoform hosts:add --count 2")
        hosts = [HostSpace(h.id, h.zone, instance_memory_mb(h.type)) for h in observed.hosts]
        existing = _existing(observed)
        # other apps hold the capacity of what runs, not of their formations
        others = [(ref, size) for ref, (_, size) in existing.items() if ref.app != app]
        formations = held_formations(others)
        formations[app] = formation
        return place(formations, hosts, {ref: host for ref, (host, _) in existing.items()})

    def _decides(
        self,
        observed: Observed,
        recorded: frozenset[str] | None,
        app: str,
        formation: Formation,
    ) -> bool:
        """Whether a look at only the app's recorded hosts (observe_scope) decides its rollout:
        the record, read again under the app's lease, names no host beyond those looked at;
        every dyno of the formation runs there; and placement keeps each where it is. Those
        hosts were looked at in full, so their room is known. New dynos, or too little room on
        these hosts alone, need the whole fleet."""
        if observed.scope is None or recorded is None or not recorded <= observed.scope:
            return False
        existing = _existing(observed)
        wanted = list(desired_dynos({app: formation}))
        if any(ref not in existing for ref in wanted):
            return False
        try:
            placed = self.placement(observed, app, formation)
        except DynoformError:  # no room on these hosts: the rest of the fleet may have some
            return False
        return all(placed.get(ref) == existing[ref][0] for ref in wanted)

    def plan(
        self,
        observed: Observed,
        app: str,
        release: int,
        formation: Formation,
        restart: Iterable[str] = (),
    ) -> RolloutPlan:
        running = [s.instance for s in observed.of_app(app) if s.active != "inactive"]
        others: dict[str, list[int]] = defaultdict(list)
        for host_id, states in observed.dynos.items():
            others[host_id] += [
                s.instance.port for s in states if s.instance.port and s.instance.app != app
            ]
        placement = self.placement(observed, app, formation)
        return plan_converge(
            app, release, formation, placement, running, others, restart, self.options
        )

    # executing --------------------------------------------------------------------------------
    def converge(
        self,
        app: str,
        release: Release,
        config: dict[str, str],
        formation: Formation,
        restart: Iterable[str] = (),
        observed: Observed | None = None,
    ) -> RolloutPlan:
        with self.router.pinned(app):  # one target group lookup for the whole rollout
            return self._converge(app, release, config, formation, restart, observed)

    def _converge(
        self,
        app: str,
        release: Release,
        config: dict[str, str],
        formation: Formation,
        restart: Iterable[str],
        observed: Observed | None,
    ) -> RolloutPlan:
        observed = observed or self.observe_app(app)
        # Read under the app's lease: a record read before it (a deploy reaches its hosts
        # while it waits for the lease) may lack a host that a heal added meanwhile.
        recorded = self.store.dyno_hosts(app)
        if observed.scope is not None and not self._decides(observed, recorded, app, formation):
            observed = self.observe()
        plan = self.plan(observed, app, release.version, formation, restart)
        started = plan.started
        # Before any dyno starts, the record names every host that holds or will hold one
        # (with no record yet, a host that did not answer may hold some too). An empty plan
        # still adds what this look found.
        before = _app_hosts(observed, app) | {d.host for d in started}
        before |= set(observed.unreachable) if recorded is None else recorded
        if before != recorded:
            self.store.save_dyno_hosts(app, frozenset(before))
        if plan.is_empty():
            return plan
        reserved: dict[str, int] = {}
        try:
            if started:
                # The release on every host that starts a dyno, and the plan's BOOT actions
                # (the new web dynos) done there: one round trip per host (plan/batch.py).
                boot = plan.booting()
                if boot:
                    self.say(f"starting {dyno_names(boot)}")
                hosts = {d.host for d in started}
                self._prepare_and_route(observed, app, release, config, hosts, boot, reserved)
                plan = plan.with_ports(reserved)
            undoable, retiring = plan.split_at_commit()
            for group in undoable:
                self._run_step(observed, app, group)
        except BaseException as exc:
            # Ctrl-C and cloud API errors too: the new dynos go, the old keep serving.
            self.say(f"rolling back: {_reason(exc)}")
            self._undo(observed, app, plan.with_ports(reserved))
            raise
        if self._retire(observed, app, retiring):
            self._narrow(observed, app, plan, frozenset(before))
        self._prune(observed, app, {d.host for d in started}, plan)
        return plan

    def _retire(self, observed: Observed, app: str, groups: list[list[Action]]) -> bool:
        """The old web dynos go; the new release serves already, so a failure here is no
        reason to undo it: the next rollout of the app stops what is left. Whether all went."""
        try:
            for group in groups:
                self._run_step(observed, app, group)
        except Exception as exc:  # noqa: BLE001 - reported; the new release serves
            self.say(f"warning: retiring the old dynos failed: {_reason(exc)}")
            return False
        return True

    def _narrow(
        self, observed: Observed, app: str, plan: RolloutPlan, before: frozenset[str]
    ) -> None:
        """The app's record keeps the hosts its dynos run on now, those where this look found
        a unit of the app in any state (a stopped one goes by its host's timer, after this
        command, and one stopped by hand may be restored: the next rollout that finds none
        there drops the host), and those that did not answer (what they hold is unknown). A
        host no longer ready goes: it is lost, and the controller terminates it. A failed
        write leaves the wider set, which is safe."""
        after = {d.host for d in (*plan.final, *plan.keep, *plan.stopped)}
        after |= _app_hosts(observed, app) | (before & set(observed.unreachable))
        if after == before:
            return
        try:
            self.store.save_dyno_hosts(app, frozenset(after))
        except Exception as exc:  # noqa: BLE001 - the wider record only costs a look
            self.say(f"warning: recording the app's hosts failed: {_reason(exc)}")

    def _prepare_and_route(
        self,
        observed: Observed,
        app: str,
        release: Release,
        config: dict[str, str],
        hosts: set[str],
        boot: Sequence[Action],
        reserved: dict[str, int],
    ) -> None:
        """prepare_hosts, while the app's router rule is made: neither waits for the other
        (the rule's API calls took ~0.03 s of every deploy). The hosts' error comes first."""
        pool = futures.ThreadPoolExecutor(max_workers=1)
        ruled = pool.submit(self._ensure_rule, app)
        pool.shutdown(wait=False)
        try:
            self.prepare_hosts(observed, app, release, config, hosts, boot, reserved)
        finally:
            futures.wait([ruled])
        ruled.result()

    def _ensure_rule(self, app: str) -> None:
        """The app's router rule as its record says now (domains, maintenance)."""
        record = self.store.app(app)
        self.router.ensure_rule(app, list(record.domains), record.maintenance, record.plain_http)

    def prepare_hosts(
        self,
        observed: Observed,
        app: str,
        release: Release,
        config: dict[str, str],
        hosts: set[str],
        boot: Sequence[Action] = (),
        reserved: dict[str, int] | None = None,
    ) -> dict[str, int]:
        """Put the release on `hosts` and boot there the new web dynos of `boot` (their BOOT
        actions): ports reserved under each host's lock (apps rolling out at the same moment
        never get the same port), units written and started, and each waited for until its
        own process answers on its port. One round trip per host (plan/batch.py).

        Returns unit -> port as the hosts reserved them; `reserved` gets them as each host
        answers, also when another failed (the undo deregisters what may have been reserved).
        """
        if not release.slug_key or not release.slug_sha256:
            raise DynoformError(f"v{release.version} of {app} has no slug", "deploy code first")
        url = self.blobs.get_url(release.slug_key)
        document = render_env_document(config, release.process_types)
        node = needs_node(commands=list(release.process_types.values()))
        got: dict[str, int] = {} if reserved is None else reserved
        by_host: dict[str, list[Action]] = defaultdict(list)
        for action in boot:
            by_host[action.host].append(action)

        def prepare(host_id: str) -> None:
            conn = self.conn(host_id, observed)
            if node:
                ensure_node(conn, self.say)
            actions = by_host[host_id]
            batch = self._host_batch(observed, app, release, url, document, host_id, actions)
            argv = batch_argv(ports_tool_source())
            result = conn.run(
                argv,
                sudo=True,
                stdin=batch_document(batch),
                timeout=batch_timeout,
                label="dyno-ports batch",  # not the tool's source, in an error message
            )
            done = parse_batch(result.stdout)
            got.update(done.reserved)
            if result.ok and set(done.reserved) == {a.unit for a in actions}:
                return
            if result.exit_code == 1 and done.checks:  # a new dyno never answered on its port
                ported = [replace(a, instance=a.instance.with_port(got[a.unit])) for a in actions]
                failure = self._boot_failure(conn, ported, done.checks, batch.boot_timeout_s)
                raise DynoformError(*failure)
            why = (result.stderr or result.stdout).strip()[-400:] or f"exit {result.exit_code}"
            raise DynoformError(f"v{release.version} of {app}: {why}")

        # The hosts' own deadline nests inside the fan-out's: a late host is never left to start
        # units after the undo has stopped them.
        batch_timeout = 600 + int(self.options.boot_timeout_s)  # the slug's fetch, then the boot
        what = "booting dynos" if boot else "preparing hosts"
        self._fan(sorted(hosts), prepare, what, timeout=batch_timeout + 60)
        return dict(got)

    def _host_batch(
        self,
        observed: Observed,
        app: str,
        release: Release,
        url: str,
        document: str,
        host_id: str,
        boot: list[Action],
    ) -> HostBatch:
        """What one host is sent: the release, and the new web dynos of `boot` on it."""
        env_path = env_file(app, release.version)
        unpack = program_argv(
            UNPACK_RELEASE,
            release_dir(app, release.version),
            str(release.slug_sha256),
            app_user(app),
            env_path.rsplit("/", 1)[0],
        )
        units = {a.unit: render_dyno_unit(a.instance, port=PORT_MARK) for a in boot}
        return HostBatch(
            user_argv=["sh", "-c", _USER_RACE, "sh", app_user(app), *ensure_app_user_argv(app)],
            launcher_path=LAUNCHER_PATH,
            launcher=launcher_source(),
            release=BatchRelease(unpack, url),
            env_path=env_path,
            env_document=document,
            units=units,
            start_argv=program_argv(START_UNITS, *sorted(units)),
            port_range=(self.options.port_low, self.options.port_high),
            addr=observed.address(host_id) if boot else "",
            boot_timeout_s=int(self.options.boot_timeout_s),
        )

    def _fan(
        self, items: Sequence[Any], fn: Callable[[Any], Any], what: str, timeout: float = 900
    ) -> list[Any]:
        outcomes = fan_out(list(items), fn, timeout=timeout)
        failed = [o for o in outcomes if not o.ok]
        if failed:
            first = failed[0]
            # Items are host ids, or (host id, that host's actions): name the host only.
            host = first.item[0] if isinstance(first.item, tuple) else first.item
            raise DynoformError(f"{what} failed on host {host}: {first.error}")
        return [o.value for o in outcomes]

    def steps(self) -> dict[ActionKind, Step]:
        """The method that does each kind of action (all of a step's actions of that kind)."""
        return {
            ActionKind.BOOT: self._booted,
            ActionKind.START: self._start,
            ActionKind.REGISTER: self._register,
            ActionKind.WAIT_HEALTHY: self._wait_healthy,
            ActionKind.DEREGISTER: self._deregister,
            ActionKind.DRAIN: self._drain,
            ActionKind.STOP: self._stop,
            ActionKind.WAIT_RUNNING: self._wait_running,
        }

    def _run_step(self, observed: Observed, app: str, group: list[Action]) -> None:
        steps = self.steps()
        for kind, actions in _by_kind(group).items():
            steps[kind](observed, app, actions)
            if kind in _DONE:
                self.say(_DONE[kind].format(dynos=dyno_names(actions)))

    def _by_host(self, actions: list[Action]) -> list[tuple[str, list[Action]]]:
        result: dict[str, list[Action]] = defaultdict(list)
        for action in actions:
            result[action.host].append(action)
        return sorted(result.items())

    def _start(self, observed: Observed, app: str, actions: list[Action]) -> None:
        def start(item: tuple[str, list[Action]]) -> None:
            host_id, host_actions = item
            conn = self.conn(host_id, observed)
            units = {a.unit: render_dyno_unit(a.instance) for a in host_actions}
            document = start_document(units, program_argv(START_UNITS, *sorted(units)))
            argv = batch_argv(ports_tool_source())
            conn.run(argv, sudo=True, stdin=document, check=True, label="dyno-ports batch")

        self.say(f"starting {dyno_names(actions)}")
        self._fan(self._by_host(actions), start, "starting dynos")

    def _booted(self, observed: Observed, app: str, actions: list[Action]) -> None:
        """The boot happened in the hosts' batches, with the release, before the first step
        (`prepare_hosts`): each new web dyno answers on its port, or the rollout stopped there."""

    def _boot_failure(
        self, conn: HostRunner, actions: list[Action], checks: dict[int, PortCheck], timeout: int
    ) -> tuple[str, str | None]:
        """The first dyno that failed its boot check, as (message, hint)."""
        seen = {a.unit: checks.get(int(a.port or 0), PortCheck("", 0)).state for a in actions}
        order = {"foreign": 0, "crashed": 1, "timeout": 2, "": 3, "ok": 4}  # held by others first
        action = min(actions, key=lambda a: order.get(seen[a.unit], 2))
        check = checks.get(int(action.port or 0))
        if check and check.state == "foreign":
            pid, _, owner = check.holder.partition(" ")
            return (
                f"{action.dyno} of v{action.release}: port {action.port} on host {action.host} "
                f"is held by another process (pid {pid}, {owner or 'unknown'}), not by "
                f"{action.unit}; it was not registered with the router",
                "something on the host binds dyno ports that are not its own; deploying "
                "again reserves a free port",
            )
        tail = conn.run(journal_tail_argv(action.unit, 10), sudo=True).stdout.strip()
        lines = " | ".join(tail.splitlines()[-10:]) or "no output"
        if check and check.state == "crashed":
            return (
                f"{action.dyno} of v{action.release} keeps exiting before it listens on $PORT "
                f"({action.port}); its last log lines: {lines}",
                "run the command with `dynoform run` to see why it exits",
            )
        return (
            f"{action.dyno} of v{action.release} did not answer on $PORT ({action.port}) within "
            f"{timeout} s; its last log lines: {lines}",
            None,
        )

    def _targets(self, observed: Observed, actions: list[Action]) -> list[RouterTarget]:
        return [RouterTarget(observed.address(a.host), int(a.port)) for a in actions if a.port]

    def _register(self, observed: Observed, app: str, actions: list[Action]) -> None:
        self.router.register(app, self._targets(observed, actions))

    def _wait_healthy(self, observed: Observed, app: str, actions: list[Action]) -> None:
        wanted = set(self._targets(observed, actions))
        timeout = max(a.timeout_s or 60 for a in actions)
        started = time.monotonic()
        deadline = started + timeout
        while True:
            states = self.router.health(app, wanted)
            if all(states.get(t) == "healthy" for t in wanted):
                return
            if time.monotonic() > deadline:
                bad = sorted(
                    f"{t.ip}:{t.port}={states.get(t)}" for t in wanted if states.get(t) != "healthy"
                )
                raise DynoformError(f"new dynos of {app} never became healthy: {', '.join(bad)}")
            fast = time.monotonic() - started < HEALTH_POLL_FAST_S
            time.sleep(HEALTH_POLL_S if fast else HEALTH_POLL_SLOW_S)

    def _deregister(self, observed: Observed, app: str, actions: list[Action]) -> None:
        self.router.deregister(app, self._targets(observed, actions))

    def _drain(self, observed: Observed, app: str, actions: list[Action]) -> None:
        """The drain happens on the hosts: `_stop` stops drained units after the delay."""

    def _stop(self, observed: Observed, app: str, actions: list[Action]) -> None:
        drained = {a.unit for a in actions if a.instance.is_web and a.port}
        delay = self.router.drain_seconds(app) if drained else 0

        def stop(item: tuple[str, list[Action]]) -> None:
            host_id, host_actions = item
            conn = self.conn(host_id, observed)
            units = [a.unit for a in host_actions]
            if delay and all(u in drained for u in units):
                # On the host, in a transient unit: the command need not wait out the drain.
                unit = f"--unit=dynoform-stop-{int(self.clock() * 1000)}-{host_id}"
                run = ["systemd-run", "--quiet", "--collect", "--no-block", unit]
                conn.run(
                    [*run, *program_argv(STOP_UNITS, str(delay), *units)], sudo=True, check=True
                )
            else:
                argv = program_argv(STOP_UNITS, "0", *units)
                conn.run(argv, sudo=True, timeout=60, check=True)

        if observed.hosts:
            self._fan(self._by_host(actions), stop, "stopping dynos")

    def _wait_running(self, observed: Observed, app: str, actions: list[Action]) -> None:
        def wait(item: tuple[str, list[Action]]) -> None:
            host_id, host_actions = item
            conn = self.conn(host_id, observed)
            settle = max(a.timeout_s or 1 for a in host_actions)
            time.sleep(settle)
            for action in host_actions:
                state = conn.run(["systemctl", "is-active", action.unit]).stdout.strip()
                if state != "active":
                    tail = conn.run(journal_tail_argv(action.unit, 10), sudo=True).stdout
                    raise DynoformError(
                        f"{action.dyno} is {state}: {' | '.join(tail.splitlines()[-5:])}"
                    )

        self._fan(self._by_host(actions), wait, "starting dynos")

    # undoing ----------------------------------------------------------------------------------
    def undo_steps(self) -> dict[ActionKind, Step]:
        """What undoes a plan's `on_failure` actions: no drain (the new dynos served nobody),
        and a stop that goes on past hosts it cannot reach."""
        return {
            ActionKind.DEREGISTER: self._deregister,
            ActionKind.STOP: self._stop_now,
            ActionKind.START: self._start,
        }

    def _undo(self, observed: Observed, app: str, plan: RolloutPlan) -> None:
        """Best effort, step by step: one failure (a host or the router API) does not keep the
        next steps from running. A second Ctrl-C stops the undo."""
        undo = self.undo_steps()
        for step in sorted({a.step for a in plan.on_failure}):
            group = [a for a in plan.on_failure if a.step == step]
            for kind, actions in _by_kind(group).items():
                try:
                    undo[kind](observed, app, actions)
                except Exception as exc:  # noqa: BLE001 - reported; the first error is raised
                    self.say(f"warning: cleaning up the new dynos failed: {_reason(exc)}")

    def _stop_now(self, observed: Observed, app: str, actions: list[Action]) -> None:
        def stop(item: tuple[str, list[Action]]) -> None:
            host_id, host_actions = item
            units = [a.unit for a in host_actions]
            argv = program_argv(STOP_UNITS, "0", *units)
            self.conn(host_id, observed).run(argv, sudo=True, timeout=60, check=True)

        # Raises when a host could not stop them: the undo says so instead of going quiet.
        self._fan(self._by_host(actions), stop, "stopping the new dynos", timeout=120)

    def _prune(self, observed: Observed, app: str, hosts: set[str], plan: RolloutPlan) -> None:
        """Keep the newest releases on each host (instant rollbacks), drop older ones."""
        in_use = {d.release for d in plan.final} | {d.release for d in plan.keep}
        in_use |= {s.instance.release for s in observed.of_app(app) if s.instance.is_oneoff}

        def prune(host_id: str) -> None:
            conn = self.conn(host_id, observed)
            listing = conn.run(["ls", release_dir(app, 1).rsplit("/", 1)[0]], sudo=True).stdout
            versions = [
                int(n[1:]) for n in listing.split() if n[1:].isdigit() and n.startswith("v")
            ]
            old = releases_to_prune(versions, in_use | {d.release for d in plan.stopped})
            paths = [p for v in old for p in (release_dir(app, v), env_file(app, v))]
            if paths:
                conn.run(["rm", "-rf", "--", *paths], sudo=True)

        fan_out(sorted(hosts), prune, timeout=120)

    # removal ----------------------------------------------------------------------------------
    def remove_app(self, app: str) -> None:
        """The app's router entries first (its name then answers 404, not 502 or 503 from
        dynos going away), then, a moment later, its dynos, files and user on every host."""
        self.router.remove_app(app)
        observed = self.observe()
        if observed.of_app(app):
            time.sleep(ROUTER_SETTLE_S)

        def clean(host: instances.Host) -> None:
            conn = self.fleet.connect(host)
            units = [
                s.instance.unit for s in observed.dynos.get(host.id, []) if s.instance.app == app
            ]
            if units:
                conn.run(program_argv(STOP_UNITS, "0", *units), sudo=True, timeout=60)
            conn.run(["rm", "-rf", "--", release_dir(app, 1).rsplit("/", 2)[0]], sudo=True)
            # Its build cache and any build left behind: an app made later under this name
            # must not start from them.
            conn.run(program_argv(FORGET_BUILDS, *build_paths(app)), sudo=True)
            conn.run(program_argv(REMOVE_USER, app_user(app), app), sudo=True)

        fan_out(observed.hosts, clean, timeout=300)


def _existing(observed: Observed) -> dict[DynoRef, tuple[str, str]]:
    """Every running dyno: its host and size (of its newest release)."""
    existing: dict[DynoRef, tuple[str, str]] = {}
    for host_id, states in observed.dynos.items():
        for state in sorted(states, key=lambda s: s.instance.release):
            inst = state.instance
            if state.active in RUNNING_STATES:
                existing[DynoRef(inst.app, inst.type, inst.index)] = (host_id, inst.size)
    return existing


def _app_hosts(observed: Observed, app: str) -> set[str]:
    """The hosts that hold a unit of the app's dynos in any state (one-offs apart)."""
    return {s.instance.host for s in observed.of_app(app) if not s.instance.is_oneoff}


def _by_kind(group: list[Action]) -> dict[ActionKind, list[Action]]:
    """A step's actions by kind, kinds in the order they first appear."""
    result: dict[ActionKind, list[Action]] = defaultdict(list)
    for action in group:
        result[action.kind].append(action)
    return result


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DynoformError):
        return exc.message
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"{type(exc).__name__}: {exc}"


def open_rollout(ctx: Context, options: RolloutOptions | None = None) -> Rollout[Connection]:
    """A Rollout on the Context's target: its fleet, state store and router table."""
    return Rollout(
        ctx.fleet(), ctx.store, ctx.router(), ctx.blobs(), ctx.say, options or RolloutOptions()
    )


def current_formation(
    store: Store, app: str, release: Release, read: tuple[Formation, str | None] | None = None
) -> Formation:
    """The app's formation, with Heroku's defaults for process types seen the first time.
    `read`: the formation and its etag as read already under the app's lease."""
    from provisioner.model.formation import default_formation

    formation, etag = read or store.formation(app)
    wanted = default_formation(list(release.process_types), formation)
    if wanted != formation:
        store.save_formation(app, wanted, etag)
    return wanted


def activator(
    ctx: Context, options: RolloutOptions | None = None
) -> Callable[[str, Release, dict[str, str]], None]:
    """Roll the app's dynos to a release (used by deploys, config changes and rollbacks)."""

    def activate(app: str, release: Release, config: dict[str, str]) -> None:
        if not release.slug_key:
            return  # nothing built yet: the release only records config
        rollout = open_rollout(ctx, options)
        formation = current_formation(rollout.store, app, release)
        rollout.converge(app, release, config, formation)

    return activate
