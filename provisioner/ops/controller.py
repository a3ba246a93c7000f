"""The controller: keeps the platform in its declared state while nobody runs a command.

Every runner runs one (`dynoform-controller.service`, installed by the runner's bootstrap);
the one that holds the leader lease in the state store acts, the others wait to take over
(a leader's host that dies loses the lease LEADER_TTL seconds after its last renewal). Each
loop, the leader:

1. looks at the runners (EC2, their records, a probe of each one's sshd) and declares lost those
   EC2 reports terminated or stopped and those silent for plan.controller.GRACE seconds: nothing
   is placed on them again, their targets leave the router at once, their instances go;
2. looks at what runs on the hosts that answered, and records where each dyno is (so `ps` can
   say `lost` for the dynos of a host that went away, until they run elsewhere);
3. converges every idle app whose dynos differ from its formation (the lost host's dynos start on
   live hosts; a dyno stopped by hand starts again), under the app's lease like any command;
4. restores dyno units edited or stopped by hand, reports crash loops with their last lines;
5. launches hosts until the declared number of runners is alive again.

Every action is an event (`dynoform[controller]` in `dynoform logs`, and `controller:status`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from provisioner import events
from provisioner.aws import instances
from provisioner.aws.state import Documents
from provisioner.context import Context
from provisioner.errors import DynoformError
from provisioner.fleet import Fleet
from provisioner.model.formation import default_formation
from provisioner.ops import repair
from provisioner.ops.rollout import Observed, Rollout, open_rollout
from provisioner.plan import controller as plan
from provisioner.plan.units import RUNNING_STATES, journal_tail_argv
from provisioner.remote.fanout import fan_out
from provisioner.store import CONTROLLER_OPERATION, Lease, LeaseBusy, now_iso

SOURCE = "controller"
LOOP_SECONDS = 2.0
LEADER_TTL = 6.0  # a dead leader is replaced this long after its last renewal (every 1 s)
LEADER_KEY = "controller/leader.json"
STATUS_KEY = "controller/status.json"
SETTINGS_KEY = "controller/settings.json"
PLACEMENT_KEY = "controller/placement.json"
PROBE_TIMEOUT = 1.0
RETRY_AFTER = 30.0  # a heal that failed is tried again this much later, doubling to RETRY_MAX
RETRY_MAX = 600.0
SWEEP_EVERY = 10.0  # seconds between sweeps of router targets that no live host backs
PRUNE_EVERY = 600.0


# what users read ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ControllerStatus:
    leader: str | None  # the host whose controller leads
    leader_since: str | None
    lease_expires_in: float | None
    last_loop_at: str | None
    last_loop_seconds: float | None
    paused: bool
    declared_hosts: int | None
    alive_hosts: int | None
    lost_hosts: list[str]
    recent: list[events.Event] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["recent"] = [e.to_dict() for e in self.recent]
        return data


def status(ctx: Context, recent: int = 10) -> ControllerStatus:
    """The leader, its last loop and the newest controller events."""
    docs = ctx.store.docs
    leader = docs.get(LEADER_KEY)
    lease = leader.data if leader else {}
    expires = float(lease.get("expires_at", 0)) - time.time() if lease else None
    live = expires is not None and expires > 0
    loop = docs.get(STATUS_KEY)
    last = loop.data if loop else {}
    return ControllerStatus(
        leader=str(lease.get("holder")) if live else None,
        leader_since=lease.get("acquired_at") if live else None,
        lease_expires_in=round(expires, 1) if live and expires is not None else None,
        last_loop_at=last.get("at"),
        last_loop_seconds=last.get("seconds"),
        paused=is_paused(ctx),
        declared_hosts=last.get("declared"),
        alive_hosts=last.get("alive"),
        lost_hosts=list(last.get("lost", [])),
        recent=events.recent(docs, recent),
    )


def is_paused(ctx: Context) -> bool:
    doc = ctx.store.docs.get(SETTINGS_KEY)
    return bool(doc and doc.data.get("paused"))


def set_paused(ctx: Context, paused: bool) -> bool:
    """Pause (the leader keeps its lease and acts on nothing) or resume the controller."""
    ctx.store.docs.put(SETTINGS_KEY, {"paused": paused, "updated_at": now_iso()})
    events.record(ctx.store.docs, SOURCE, "paused by a user" if paused else "resumed")
    return paused


def quiesce(ctx: Context, timeout: float = 30.0) -> bool:
    """Pause the controller and wait until its leader has seen it with no launch in flight
    (before `platform:destroy` terminates hosts it would otherwise replace). True when it
    acknowledged; also True when no controller leads."""
    paused_at = time.time()
    set_paused(ctx, True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if status(ctx, recent=0).leader is None:
            return True
        doc = ctx.store.docs.get(STATUS_KEY)
        loop = doc.data if doc else {}
        at = datetime.fromisoformat(str(loop.get("at", "1970-01-01T00:00:00+00:00")))
        if loop.get("paused") and not loop.get("launching") and at.timestamp() > paused_at:
            return True
        time.sleep(0.5)
    return False


def placement(ctx: Context) -> plan.Placement:
    """Where the controller last saw each dyno (host id -> dynos)."""
    doc = ctx.store.docs.get(PLACEMENT_KEY)
    return plan.placement_from_dict(doc.data) if doc else {}


# the loop -------------------------------------------------------------------------------------
def probe_ssh(address: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Does sshd answer with its banner? (A dead host's address drops packets: the connect
    times out; a host that is shutting down refuses.)"""
    try:
        with socket.create_connection((address, 22), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def _age(launched_at: str, now: float) -> float:
    try:
        return now - datetime.fromisoformat(launched_at).timestamp()
    except ValueError:
        return 0.0


class Controller:
    """One host's controller: leads when it holds the lease, else waits to."""

    def __init__(
        self,
        ctx: Context,
        host_id: str,
        clock: Callable[[], float] = time.time,
        probe: Callable[[str], bool] = probe_ssh,
    ) -> None:
        self.ctx = ctx
        self.host_id = host_id
        self.clock = clock
        self.probe = probe
        self.stop = threading.Event()
        self.lease: Lease | None = None
        self.silent_since: dict[str, float] = {}
        self.retry_at: dict[str, float] = {}  # app -> when a failed heal may be tried again
        self.failed: dict[str, tuple[str, float]] = {}  # app -> (last failure, its backoff)
        self.reported: dict[str, tuple[int, int]] = {}  # unit -> (main pid, crash threshold)
        self.launching = 0
        self.launch_lock = threading.Lock()
        self.last_sweep = 0.0
        self.last_prune = 0.0

    @property
    def docs(self) -> Documents:
        return self.ctx.store.docs

    def say(self, message: str, app: str | None = None) -> None:
        events.record(self.docs, SOURCE, message, app)
        self.ctx.say(f"{app}: {message}" if app else message)

    # leadership -----------------------------------------------------------------------------
    def run(self) -> None:
        """Until `stop` is set: lead when possible, one loop every LOOP_SECONDS."""
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                if self._lead():
                    self._loop_guarded(started)
                self.stop.wait(max(0.2, LOOP_SECONDS - (time.monotonic() - started)))
        finally:
            if self.lease is not None:
                self.lease.release()  # a successor need not wait for the lease to expire

    def _lead(self) -> bool:
        if self.lease is not None and self.lease.lost is None:
            return True
        if self.lease is not None:
            self.ctx.say(f"lost the leader lease: {self.lease.lost}")
            self.lease = None
        lease = Lease(
            self.docs,
            SOURCE,
            CONTROLLER_OPERATION,
            LEADER_TTL,
            key=LEADER_KEY,
            holder=f"{self.host_id}:{os.getpid()}",
        )
        try:
            lease.acquire()
        except LeaseBusy:
            return False
        self.lease = lease
        self.silent_since = {}  # a new leader judges silence afresh
        self.ctx.refresh_platform()  # read it anew: platform:init may have changed it
        taken = f" (took over from {lease.took_over.holder})" if lease.took_over else ""
        self.say(f"{self.host_id} leads{taken}")
        return True

    def _loop_guarded(self, started: float) -> None:
        try:
            self.loop()
        except Exception as exc:  # noqa: BLE001 - one bad loop must not end the controller
            message = exc.message if isinstance(exc, DynoformError) else repr(exc)
            self.ctx.say(f"loop failed: {message}")
        self._write_status(time.monotonic() - started)

    # one loop -------------------------------------------------------------------------------
    def loop(self) -> None:
        if is_paused(self.ctx):
            return
        self.ctx.platform(create=False)  # never made from here: only `platform:init` makes it
        fleet = self.ctx.fleet()
        views, hosts = self._look(fleet)
        for verdict in plan.judge(list(views.values()), self.silent_since, self.clock()):
            self._lost(fleet, hosts.get(verdict.host), verdict)
            views[verdict.host] = _with_lost(views[verdict.host], verdict.reason)
        self._forget_gone(fleet, views, hosts)
        self._sweep_router(fleet)
        answered = [h for h in fleet.ready() if h.id in hosts and h.id not in self.silent_since]
        rollout = open_rollout(self.ctx)
        observed = rollout.observe(answered)
        where = self._record_placement(observed)
        self._report_crashes(rollout, observed)
        # An app with dynos on a silent host waits for the verdict: the host may come back.
        waiting = {d.app for host in self.silent_since for d in where.get(host, [])}
        for app in self.ctx.store.apps():
            if app not in waiting:
                self._keep_app(rollout, observed, app, where, answered)
        self._keep_size(fleet, list(views.values()))
        self._prune()

    def _look(self, fleet: Fleet) -> tuple[dict[str, plan.HostView], dict[str, instances.Host]]:
        """Every runner as a HostView, probing the sshd of those that should answer."""
        now = self.clock()
        hosts = {h.id: h for h in fleet.hosts()}
        pins = {
            i: p for i, p in fleet.pins().items() if p.get("role", instances.RUNNER) == "runner"
        }
        views = {}
        for host_id, host in hosts.items():
            pin = pins.get(host_id, {})
            views[host_id] = plan.HostView(
                host_id,
                host.state,
                bool(pin.get("bootstrapped")),
                _age(host.launched_at, now),
                pin.get("lost"),
            )
        for host_id, pin in pins.items():
            if host_id not in hosts and pin.get("bootstrapped"):
                views[host_id] = plan.HostView(host_id, "terminated", True, 0.0, pin.get("lost"))
        to_probe = [
            h for h in hosts.values()
            if h.state == "running" and views[h.id].bootstrapped and not views[h.id].lost
            and h.private_ip
        ]  # fmt: skip
        answered = {
            o.item.id: bool(o.ok and o.value)
            for o in fan_out(to_probe, lambda h: self.probe(str(h.private_ip)), timeout=10)
        }
        self.silent_since = plan.track_silence(self.silent_since, answered, now)
        return views, hosts

    def _lost(self, fleet: Fleet, host: instances.Host | None, verdict: plan.Verdict) -> None:
        """Nothing goes on the host again, its targets leave the router, its instance goes."""
        fleet.mark_lost(verdict.host, verdict.reason)
        self.silent_since.pop(verdict.host, None)
        self.say(f"host {verdict.host} is lost: {verdict.reason}")
        if host is not None and host.private_ip:
            self._deregister_ip(host.private_ip, f"host {verdict.host} is lost")
        if host is not None and host.state not in ("terminated", "shutting-down"):
            instances.terminate(self.ctx.aws, [verdict.host])
            self.say(f"terminated host {verdict.host}")

    def _deregister_ip(self, ip: str, why: str) -> None:
        router = self.ctx.router()
        for app in self.ctx.store.apps():
            dead = {t for t in router.targets(app) if t.ip == ip}
            if dead:
                router.deregister(app, dead)
                names = ", ".join(f"{t.ip}:{t.port}" for t in sorted(dead, key=str))
                self.say(f"router: removed {names} ({why})", app)

    def _sweep_router(self, fleet: Fleet) -> None:
        """Targets on no live runner leave (a host that went while no controller led)."""
        now = self.clock()
        if now - self.last_sweep < SWEEP_EVERY:
            return
        self.last_sweep = now
        live = {h.private_ip for h in fleet.alive() if h.private_ip}
        router = self.ctx.router()
        for app in self.ctx.store.apps():
            dead = {t for t in router.targets(app) if t.ip not in live}
            if dead:
                router.deregister(app, dead)
                names = ", ".join(f"{t.ip}:{t.port}" for t in sorted(dead, key=str))
                self.say(f"router: removed {names} (no live host has them)", app)

    def _forget_gone(
        self, fleet: Fleet, views: dict[str, plan.HostView], hosts: dict[str, instances.Host]
    ) -> None:
        """A lost host EC2 no longer lists is terminated: its record goes."""
        for host_id, view in views.items():
            if view.lost and host_id not in hosts:
                fleet.forget(host_id)

    def _record_placement(self, observed: Observed) -> plan.Placement:
        seen = {
            host: [
                plan.Placed(s.instance.app, s.instance.name, s.instance.release)
                for s in states
                if s.active in RUNNING_STATES and not s.instance.is_oneoff
            ]
            for host, states in observed.dynos.items()
        }
        before = placement(self.ctx)
        unseen = set(before) - set(seen)
        after = plan.next_placement(before, seen, unseen)
        if after != before:
            self.docs.put(PLACEMENT_KEY, plan.placement_to_dict(after))
        return before

    def _report_crashes(self, rollout: Rollout[Any], observed: Observed) -> None:
        for host_id, states in observed.dynos.items():
            for state in states:
                unit = state.instance.unit
                reached = plan.crash_threshold(state.restarts)
                if reached == 0 or self.reported.get(unit, (0, 0))[1] >= reached:
                    continue
                self.reported[unit] = (state.main_pid, reached)
                tail = self._tail(rollout, observed, host_id, unit)
                self.say(
                    f"{state.instance.name} keeps crashing on {host_id}: restarted "
                    f"{state.restarts} times; last lines: {tail}",
                    state.instance.app,
                )

    def _tail(self, rollout: Rollout[Any], observed: Observed, host_id: str, unit: str) -> str:
        try:
            result = rollout.conn(host_id, observed).run(journal_tail_argv(unit, 5), sudo=True)
        except Exception as exc:  # noqa: BLE001 - the report goes out without its lines
            return f"(unreadable: {exc})"
        return " | ".join(line.strip() for line in result.stdout.splitlines()[-5:])

    # apps -----------------------------------------------------------------------------------
    def _keep_app(
        self,
        rollout: Rollout[Any],
        observed: Observed,
        app: str,
        where: plan.Placement,
        answered: list[instances.Host],
    ) -> None:
        """Converge an idle app whose dynos differ from its formation."""
        if self.clock() < self.retry_at.get(app, 0.0) or not self._differs(rollout, observed, app):
            return
        try:
            with repair.changing(self.ctx, app, f"{CONTROLLER_OPERATION}: heal"):
                fresh = settled(rollout.observe(answered))
                running = [
                    s.instance
                    for s in fresh.of_app(app)
                    if s.active in RUNNING_STATES and not s.instance.is_oneoff
                ]
                converged, (added, removed) = repair.converge_app(rollout, fresh, app, running)
        except LeaseBusy:
            return  # a command is changing it: look again next loop
        except Exception as exc:  # noqa: BLE001 - said, and tried again later
            self._heal_failed(app, exc.message if isinstance(exc, DynoformError) else repr(exc))
            return
        self.retry_at.pop(app, None)
        self.failed.pop(app, None)
        for dyno in converged.started if converged else []:
            origin = plan.moved_from(where, app, dyno.name)
            if origin and origin != dyno.host:
                self.say(f"{dyno.name} moved from host {origin} to {dyno.host}", app)
            else:
                self.say(f"{dyno.name} started again on host {dyno.host}", app)
        for dyno in converged.stopped if converged else []:
            self.say(f"stopped {dyno.name} of v{dyno.release} on host {dyno.host}", app)
        for target in sorted(removed, key=str):
            self.say(f"router: removed {target.ip}:{target.port} (no dyno behind it)", app)

    def _heal_failed(self, app: str, message: str) -> None:
        """Try again later, less often each time; say it when the reason is new."""
        last, delay = self.failed.get(app, ("", RETRY_AFTER / 2))
        delay = min(RETRY_MAX, delay * 2)
        self.failed[app] = (message, delay)
        self.retry_at[app] = self.clock() + delay
        if message != last:
            self.say(f"could not heal: {message} (trying again in {delay:.0f} s)", app)

    def _differs(self, rollout: Rollout[Any], observed: Observed, app: str) -> bool:
        """Whether the app, idle and serving, runs other dynos than its formation asks."""
        store = self.ctx.store
        if store.lease_holder(app) is not None:
            return False
        current = store.current_release(app)
        if current is None or not current.slug_key:
            return False
        stored, _ = store.formation(app)
        formation = default_formation(list(current.process_types), stored)
        try:
            return not rollout.plan(settled(observed), app, current.version, formation).is_empty()
        except DynoformError:
            return True  # e.g. no room on the live hosts: converging says so

    # the fleet's size -----------------------------------------------------------------------
    def _keep_size(self, fleet: Fleet, views: list[plan.HostView]) -> None:
        with self.launch_lock:
            short = plan.shortfall(fleet.declared_size(), views, self.launching)
            if short == 0:
                return
            self.launching += short
        declared = fleet.declared_size()
        self.say(f"launching {short} host(s): the fleet is declared at {declared} runners")
        kind = _common_type([h for h in fleet.hosts()]) or instances.DEFAULT_TYPE
        thread = threading.Thread(target=self._launch, args=(fleet, short, kind), daemon=True)
        thread.start()

    def _launch(self, fleet: Fleet, count: int, kind: str) -> None:
        try:
            for outcome in fleet.add(count, kind):
                if outcome.ok and outcome.value is not None:
                    self.say(f"host {outcome.value.id} is ready ({kind})")
                else:
                    self.say(f"a new host failed: {outcome.error}")
        except Exception as exc:  # noqa: BLE001 - said; the next loop launches again
            self.say(f"launching hosts failed: {exc}")
        finally:
            with self.launch_lock:
                self.launching -= count

    # bookkeeping ----------------------------------------------------------------------------
    def _prune(self) -> None:
        now = self.clock()
        if now - self.last_prune < PRUNE_EVERY:
            return
        self.last_prune = now
        events.prune(self.docs, events.PLATFORM_PREFIX)
        for app in self.ctx.store.apps():
            events.prune(self.docs, events.app_prefix(app))

    def _write_status(self, seconds: float) -> None:
        try:
            fleet = self.ctx.fleet()
            pins = fleet.pins()
            self.docs.put(
                STATUS_KEY,
                {
                    "at": now_iso(),
                    "seconds": round(seconds, 3),
                    "leader": self.host_id,
                    "declared": fleet.declared_size(),
                    "alive": len(fleet.alive()),
                    "lost": sorted(i for i, p in pins.items() if p.get("lost")),
                    "paused": is_paused(self.ctx),
                    "launching": self.launching,
                },
            )
        except Exception as exc:  # noqa: BLE001 - status is for people; the loop goes on
            self.ctx.say(f"could not write the status: {exc}")


def settled(observed: Observed) -> Observed:
    """What runs, less the dynos on their way out (stopping after a drain): those are gone
    already as far as healing goes; counting them would stop them again every loop."""
    dynos = {
        host: [s for s in states if s.active != "deactivating"]
        for host, states in observed.dynos.items()
    }
    return Observed(observed.hosts, dynos, observed.unreachable)


def _with_lost(view: plan.HostView, reason: str) -> plan.HostView:
    return plan.HostView(view.id, view.state, view.bootstrapped, view.age, reason)


def _common_type(hosts: list[instances.Host]) -> str | None:
    kinds = [h.type for h in hosts if h.type]
    return max(sorted(set(kinds)), key=kinds.count) if kinds else None
