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

Duties on their own clocks run beside the loop, each in its own thread while this host leads
(a converge of many seconds in the loop must not make a cron run late): see DUTIES.

Every action is an event (`dynoform[controller]` in `dynoform logs`, and `controller:status`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from provisioner import events
from provisioner.aws import instances
from provisioner.aws.state import Documents
from provisioner.context import Context
from provisioner.errors import DynoformError, NotFound
from provisioner.fleet import Fleet
from provisioner.model.formation import default_formation
from provisioner.ops import (
    autoscale,
    backups,
    cron,
    drainship,
    drift,
    manifest_drift,
    metrics,
    repair,
)
from provisioner.ops.rollout import Observed, Rollout, open_rollout
from provisioner.plan import controller as plan
from provisioner.plan.units import RUNNING_STATES, journal_tail_argv, parse_unit_name
from provisioner.remote.fanout import fan_out
from provisioner.store import CONTROLLER_OPERATION, Lease, LeaseBusy, LeaseInfo, now_iso

SOURCE = "controller"
LOOP_SECONDS = 2.0
LEADER_TTL = 6.0  # a dead leader is replaced this long after its last renewal (every 1 s)
LEADER_KEY = "controller/leader.json"
STATUS_KEY = "controller/status.json"
SETTINGS_KEY = "controller/settings.json"
PLACEMENT_KEY = plan.PLACEMENT_KEY
PROBE_TIMEOUT = 1.0
RETRY_AFTER = 30.0  # a heal that failed is tried again this much later, doubling to RETRY_MAX
RETRY_MAX = 600.0
SWEEP_EVERY = 10.0  # seconds between sweeps of router targets that no live host backs
STATUS_EVERY = 10.0  # the status document is written at least this often, else on a change
PRUNE_EVERY = 600.0


@dataclass(frozen=True)
class Duty:
    """Work the leader does every `every` seconds in a thread of its own. `tick(ctx, guard)`
    calls `guard()` right before each change it makes: it raises once the lease is not ours."""

    name: str
    every: float
    tick: Callable[[Context, Callable[[], None]], None]


DUTIES: tuple[Duty, ...] = (
    Duty("cron", cron.TICK_SECONDS, cron.tick),
    Duty("autoscale", autoscale.EVERY, autoscale.tick),
    Duty("drift", manifest_drift.TICK_SECONDS, manifest_drift.tick),
    Duty("backups", backups.EVERY, backups.tick),
    Duty("metrics", metrics.EVERY, metrics.tick),
)


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
    lease = LeaseInfo.from_record(leader.data) if leader else None
    expires = lease.expires_at - time.time() if lease else 0.0
    live = lease if lease and expires > 0 else None
    loop = docs.get(STATUS_KEY)
    last = loop.data if loop else {}
    return ControllerStatus(
        leader=live.holder if live else None,
        leader_since=live.acquired_at if live else None,
        lease_expires_in=round(expires, 1) if live else None,
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
        self.observed_at: float | None = None  # the last look at what runs on the hosts
        self.observed_hosts: list[str] = []  # the hosts that answered then
        self.retry_at: dict[str, float] = {}  # app -> when a failed heal may be tried again
        self.failed: dict[str, tuple[str, float]] = {}  # app -> (last failure, its backoff)
        self.reported: dict[str, tuple[int, int]] = {}  # unit -> (main pid, crash threshold)
        self.launching = 0
        self.launch_lock = threading.Lock()
        self.last_sweep = 0.0
        self.last_prune = 0.0
        self.launch_backoff = 0.0
        self.launch_retry_at = 0.0
        self._status: dict[str, Any] = {}  # the last loop's figures, for the status document
        self._written: dict[str, Any] = {}
        self._written_at = 0.0
        self.paused = False  # the loop reads it; duties do nothing while it is set
        # Drains: this host's journal in every controller, events and router lines in the leader's.
        self.shipper = drainship.Shipper(lambda: ctx.store.docs, host_id)
        drains = drainship.LeaderLines(self.shipper)
        self.duties = (*DUTIES, Duty("drains", drainship.EVERY, drains.tick))
        self._duty_threads: list[threading.Thread] = []

    @property
    def docs(self) -> Documents:
        return self.ctx.store.docs

    def say(self, message: str, app: str | None = None, detail: str = "") -> None:
        events.record(self.docs, SOURCE, message, app, detail)
        self.ctx.say(f"{app}: {message}" if app else message)

    def _holding(self, lease: Lease) -> None:
        """A duty's guard: the lease it started under is surely still ours."""
        if self.lease is not lease:
            raise DynoformError("not the leader any more")
        lease.ensure()

    def still_leading(self) -> None:
        """Before anything that changes the fleet: raise unless the lease is surely ours."""
        if self.lease is None:
            raise DynoformError("not the leader")
        self.lease.ensure()

    # leadership -----------------------------------------------------------------------------
    def run(self) -> None:
        """Until `stop` is set: lead when possible, one loop every LOOP_SECONDS."""
        if self.ctx.on_fleet is not None:  # on a runner: its dynos' lines go to their drains
            drainship.HostJournal(self.shipper, self.host_id, self.stop, self.ctx.say).start()
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                if self._lead():
                    self._loop_guarded(started)
                self.stop.wait(max(0.2, LOOP_SECONDS - (time.monotonic() - started)))
        finally:
            self.stop.set()
            for thread in self._duty_threads:
                thread.join(timeout=5)
            self.shipper.close()
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
            lease.acquire(patient=False)  # the leader's lease is not an app's: never wait
        except LeaseBusy:
            return False
        self.lease = lease
        self.silent_since = {}  # a new leader judges silence afresh
        self.observed_at = None  # and looks at what runs at once
        self.ctx.refresh_platform()  # read it anew: platform:init may have changed it
        taken = f" (took over from {lease.took_over.holder})" if lease.took_over else ""
        self.say(f"{self.host_id} leads{taken}")
        self.paused = is_paused(self.ctx)
        self._start_duties(lease)
        return True

    def _start_duties(self, lease: Lease) -> None:
        # A lease lost and taken again: the old lease's duties end (their guard fails) before
        # the new ones start, so no duty ever runs twice at once.
        for thread in self._duty_threads:
            thread.join(timeout=10)
        self._duty_threads = [t for t in self._duty_threads if t.is_alive()]
        for duty in self.duties:
            thread = threading.Thread(
                target=self._run_duty, args=(duty, lease), name=f"duty-{duty.name}", daemon=True
            )
            thread.start()
            self._duty_threads.append(thread)

    def _run_duty(self, duty: Duty, lease: Lease) -> None:
        """Until the lease is lost or the controller stops: one tick every duty.every s."""
        while not self.stop.is_set() and self.lease is lease and lease.lost is None:
            started = time.monotonic()
            if not self.paused:
                self._guard(duty.name, duty.tick, self.ctx, lambda: self._holding(lease))
            self.stop.wait(max(0.1, duty.every - (time.monotonic() - started)))

    def _loop_guarded(self, started: float) -> None:
        try:
            self.loop()
        except Exception as exc:  # noqa: BLE001 - one bad loop must not end the controller
            message = exc.message if isinstance(exc, DynoformError) else repr(exc)
            self.ctx.say(f"loop failed: {message}")
        self._write_status(time.monotonic() - started)

    # one loop -------------------------------------------------------------------------------
    def loop(self) -> None:
        self.paused = is_paused(self.ctx)
        if self.paused:
            return
        self.ctx.platform(create=False)  # never made from here: only `platform:init` makes it
        fleet = self.ctx.fleet()
        pins = self._runner_pins(fleet)
        views, hosts = self._look(fleet, pins)
        verdicts = plan.judge(list(views.values()), self.silent_since, self.clock())
        for verdict in verdicts:
            host = hosts.get(verdict.host)
            if self._guard(f"declaring {verdict.host} lost", self._lost, fleet, host, verdict):
                views[verdict.host] = _with_lost(views[verdict.host], verdict.reason)
        self._guard("forgetting gone hosts", self._forget_gone, fleet, views, hosts, pins)
        self._guard("sweeping the router", self._sweep_router, hosts, views)
        answered = [h for h in hosts.values() if _usable(h, views.get(h.id), self.silent_since)]
        ids = [h.id for h in answered]
        # The monotonic clock: a wall clock set back must not hold the next look back.
        now = time.monotonic()
        due = plan.observation_due(self.observed_at, now, ids, self.observed_hosts)
        if due or verdicts:  # a host lost now: its dynos move at once
            self.observed_at, self.observed_hosts = now, ids
            self._tend_apps(hosts, pins, answered)
        declared = fleet.declared_size()
        if not _is_lost(views.get(self.host_id)):  # else its launch would die with its host
            self._guard(
                "keeping the fleet's size",
                self._keep_size,
                fleet,
                list(views.values()),
                hosts,
                declared,
            )
        self._status = {
            "declared": declared,
            "alive": sum(1 for v in views.values() if v.lost is None and v.state in plan.ALIVE),
            "lost": sorted(i for i, v in views.items() if v.lost),
        }
        self._prune()

    def _tend_apps(
        self,
        hosts: dict[str, instances.Host],
        pins: dict[str, dict[str, Any]],
        answered: list[instances.Host],
    ) -> None:
        """What runs on the hosts that answered: recorded, crash loops reported, units edited
        by hand restored, and every idle app that lacks dynos converged."""
        rollout = open_rollout(self.ctx)
        observed = rollout.observe(answered)
        apps = self.ctx.store.apps()
        where = self._record_placement(observed, apps, set(hosts) | set(pins))
        self._report_crashes(rollout, observed)
        drifted = self._drifted(rollout, observed)
        # An app with dynos on a silent host waits for the verdict: the host may come back.
        waiting = {d.app for host in self.silent_since for d in where.get(host, [])}
        for app in apps:
            if app not in waiting:
                self._guard(
                    f"checking {app}",
                    self._keep_app,
                    rollout,
                    observed,
                    app,
                    where,
                    answered,
                    drifted.get(app, set()),
                )

    def _guard(self, what: str, step: Callable[..., object], *args: object) -> bool:
        """One step's failure is said and the loop goes on (the next loop tries again)."""
        try:
            step(*args)
            return True
        except Exception as exc:  # noqa: BLE001 - one host or app must not stop the others
            message = exc.message if isinstance(exc, DynoformError) else repr(exc)
            self.ctx.say(f"{what} failed: {message}")
            return False

    def _runner_pins(self, fleet: Fleet) -> dict[str, dict[str, Any]]:
        """The records of runners dynoform launched (the controller judges no other host)."""
        return {
            i: p
            for i, p in fleet.pins().items()
            if p.get("role", instances.RUNNER) == instances.RUNNER
        }

    def _look(
        self, fleet: Fleet, pins: dict[str, dict[str, Any]]
    ) -> tuple[dict[str, plan.HostView], dict[str, instances.Host]]:
        """Every runner dynoform launched as a HostView (a host without a record is being
        launched right now, or was removed by `hosts:remove`: not the controller's to judge),
        probing the sshd of those that should answer."""
        now = self.clock()
        me = self.lease.holder if self.lease else None
        hosts = {h.id: h for h in fleet.hosts()}
        running = [i for i, h in hosts.items() if h.state == "running" and i in pins]
        failing = instances.impaired(self.ctx.aws, running) if running else set()
        views = {}
        for host_id, host in hosts.items():
            pin = pins.get(host_id)
            if pin is None:
                continue
            views[host_id] = plan.HostView(
                host_id,
                host.state,
                bool(pin.get("bootstrapped")),
                _age(host.launched_at, now),
                pin.get("lost"),
                by_controller=bool(pin.get("launched_by")),
                impaired=host_id in failing,
                orphaned=pin.get("launched_by") not in (None, me),
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
            for o in fan_out(to_probe, lambda h: self.probe(str(h.private_ip)), timeout=30)
        }
        self.silent_since = plan.track_silence(self.silent_since, answered, now)
        return views, hosts

    def _lost(self, fleet: Fleet, host: instances.Host | None, verdict: plan.Verdict) -> None:
        """Nothing goes on the host again, its targets leave the router, its instance goes."""
        self.still_leading()
        fleet.mark_lost(verdict.host, verdict.reason)
        self.silent_since.pop(verdict.host, None)
        self.say(f"host {verdict.host} is lost: {verdict.reason}")
        if host is not None and host.private_ip:
            lost_ip = host.private_ip
            self._remove_targets(lambda ip: ip == lost_ip, f"host {verdict.host} is lost")
        if host is not None:
            self._terminate(host)

    def _terminate(self, host: instances.Host) -> None:
        if host.state in ("terminated", "shutting-down"):
            return
        self.still_leading()
        instances.terminate(self.ctx.aws, [host.id])
        self.say(f"terminated host {host.id}")

    def _remove_targets(self, dead: Callable[[str], bool], why: str) -> None:
        """Every app's targets whose address is `dead` leave the router, each app said."""
        router = self.ctx.router()
        for app in self.ctx.store.apps():
            gone = {t for t in router.targets(app) if dead(t.ip)}
            if gone:
                router.deregister(app, gone)
                names = ", ".join(f"{t.ip}:{t.port}" for t in sorted(gone, key=str))
                self.say(f"router: removed {names} ({why})", app)

    def _sweep_router(
        self, hosts: dict[str, instances.Host], views: dict[str, plan.HostView]
    ) -> None:
        """Targets on no live runner leave (a host that went while no controller led)."""
        now = self.clock()
        if now - self.last_sweep < SWEEP_EVERY:
            return
        self.last_sweep = now
        live = {
            h.private_ip
            for h in hosts.values()
            if h.private_ip and h.state in plan.ALIVE and not _is_lost(views.get(h.id))
        }
        self._remove_targets(lambda ip: ip not in live, "no live host has them")

    def _forget_gone(
        self,
        fleet: Fleet,
        views: dict[str, plan.HostView],
        hosts: dict[str, instances.Host],
        pins: dict[str, dict[str, Any]],
    ) -> None:
        """A lost host EC2 still runs is terminated again (the last call failed), as is a failed
        launch's; one EC2 no longer lists is gone, and its record with it, as are records of
        failed launches."""
        for host_id, view in views.items():
            if view.lost and host_id in hosts:
                self._terminate(hosts[host_id])
            elif view.lost:
                fleet.forget(host_id)
        for host_id, pin in pins.items():
            if pin.get("failed") and host_id not in hosts:
                fleet.forget(host_id)
            elif pin.get("failed") and not pin.get("bootstrapped"):
                # A failed launch whose terminate failed too: unmanaged, it would bill forever.
                self._terminate(hosts[host_id])

    def _record_placement(
        self, observed: Observed, apps: list[str], known_hosts: set[str]
    ) -> plan.Placement:
        seen = {
            host: [
                plan.Placed(s.instance.app, s.instance.name, s.instance.release)
                for s in states
                if s.active in RUNNING_STATES and not s.instance.is_oneoff
            ]
            for host, states in observed.dynos.items()
        }
        before = placement(self.ctx)
        unseen = (set(before) - set(seen)) & known_hosts  # hosts gone for good are forgotten
        after = plan.next_placement(before, seen, unseen)
        after = {h: [d for d in ds if d.app in apps] for h, ds in after.items()}
        after = {h: ds for h, ds in after.items() if ds or h in seen}
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
                    f"{state.restarts} times",
                    state.instance.app,
                    detail=f"; last lines: {tail}",  # the app's own events only: may hold secrets
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
        drifted: set[str],
    ) -> None:
        """Put back the app's units edited or stopped by hand on `drifted` hosts (in place: same
        port, same router target), then converge it if its dynos still differ from its
        formation; both under its lease, like any command."""
        if self.clock() < self.retry_at.get(app, 0.0):
            return
        if not drifted and not self._differs(rollout, observed, app):
            return
        try:
            self.still_leading()
            with repair.changing(self.ctx, app, f"{CONTROLLER_OPERATION}: heal", patient=False):
                self._restore(rollout, observed, app, drifted)
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
            if isinstance(exc, NotFound) and not self.ctx.store.app_exists(app):
                return  # destroyed since this loop listed it: nothing to heal, nothing to say
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

    def _drifted(self, rollout: Rollout[Any], observed: Observed) -> dict[str, set[str]]:
        """app -> the hosts where some of its units were edited or stopped by hand."""
        found: dict[str, set[str]] = {}

        def check(host: instances.Host) -> list[drift.UnitDrift]:
            return drift.check_units(rollout.conn(host.id, observed), host.id)

        for outcome in fan_out(observed.hosts, check, timeout=30):
            for unit in outcome.value or []:
                found.setdefault(unit.app, set()).add(unit.host)
        return found

    def _restore(
        self, rollout: Rollout[Any], observed: Observed, app: str, hosts: set[str]
    ) -> None:
        for host in sorted(hosts):
            for line in drift.restore_units(rollout.conn(host, observed), app):
                unit, _, outcome = line.partition(" ")
                dyno = parse_unit_name(unit, host, None)
                self.say(f"{dyno.name if dyno else unit} {outcome} on host {host}", app)

    def _heal_failed(self, app: str, message: str) -> None:
        """Try again later, less often each time; say it when the reason is new."""
        last, delay = self.failed.get(app, ("", RETRY_AFTER / 2))
        delay = min(RETRY_MAX, delay * 2)
        self.failed[app] = (message, delay)
        self.retry_at[app] = self.clock() + delay
        if message != last:
            self.say(f"could not heal: {message} (trying again in {delay:.0f} s)", app)

    def _differs(self, rollout: Rollout[Any], observed: Observed, app: str) -> bool:
        """Whether the app, idle and serving, lacks dynos its formation asks for. Surplus alone
        is no reason to act: an old release's dynos drain after a deploy (deregistered, still
        running until their delayed stop), and stopping them early would cut their requests."""
        store = self.ctx.store
        if store.lease_holder(app) is not None:
            return False
        if any(s.active == "deactivating" for s in observed.of_app(app)):
            return False  # on its way out (a drain ending, a stop by hand): judge it once gone
        current = store.current_release(app)
        if current is None or not current.slug_key:
            return False
        stored, _ = store.formation(app)
        formation = default_formation(list(current.process_types), stored)
        try:
            return bool(rollout.plan(observed, app, current.version, formation).started)
        except DynoformError:
            return True  # e.g. no room on the live hosts: converging says so

    # the fleet's size -----------------------------------------------------------------------
    def _keep_size(
        self,
        fleet: Fleet,
        views: list[plan.HostView],
        hosts: dict[str, instances.Host],
        declared: int | None,
    ) -> None:
        if self.clock() < self.launch_retry_at:
            return
        with self.launch_lock:
            short = plan.shortfall(declared, views, self.launching)
            if short == 0:
                return
            self.launching += short
        self.say(f"launching {short} host(s): the fleet is declared at {declared}")
        kind = _common_type(list(hosts.values())) or instances.DEFAULT_TYPE
        thread = threading.Thread(target=self._launch, args=(fleet, short, kind), daemon=True)
        thread.start()

    def _launch(self, fleet: Fleet, count: int, kind: str) -> None:
        holder = self.lease.holder if self.lease else self.host_id
        failed = False
        try:
            outcomes = fleet.add(count, kind, launched_by=holder, before_launch=self.still_leading)
            for outcome in outcomes:
                if outcome.ok and outcome.value is not None:
                    self.say(f"host {outcome.value.id} is ready ({kind})")
                else:
                    failed = True
                    self.say(f"a new host failed: {outcome.error}")
        except Exception as exc:  # noqa: BLE001 - said; launched again after a pause
            failed = True
            self.say(f"launching hosts failed: {exc}")
        finally:
            with self.launch_lock:
                self.launching -= count
                # A quota, a capacity or a broken bootstrap: each try costs an instance-minute.
                if failed:
                    self.launch_backoff = min(RETRY_MAX, max(RETRY_AFTER, self.launch_backoff * 2))
                else:
                    self.launch_backoff = 0.0
                self.launch_retry_at = self.clock() + self.launch_backoff

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
        """The loop's figures, when they changed or every STATUS_EVERY s (a write costs)."""
        state = {
            **self._status,
            "leader": self.host_id,
            "paused": is_paused(self.ctx),
            "launching": self.launching,
        }
        now = self.clock()
        if state == self._written and now - self._written_at < STATUS_EVERY:
            return
        try:
            self.docs.put(STATUS_KEY, {**state, "at": now_iso(), "seconds": round(seconds, 3)})
            self._written, self._written_at = state, now
        except Exception as exc:  # noqa: BLE001 - status is for people; the loop goes on
            self.ctx.say(f"could not write the status: {exc}")


def settled(observed: Observed) -> Observed:
    """What runs, less the dynos on their way out (stopping after a drain): those are gone
    already as far as healing goes; counting them would stop them again every loop."""
    dynos = {
        host: [s for s in states if s.active != "deactivating"]
        for host, states in observed.dynos.items()
    }
    return replace(observed, dynos=dynos)


def _is_lost(view: plan.HostView | None) -> bool:
    return view is not None and view.lost is not None


def _usable(host: instances.Host, view: plan.HostView | None, silent: dict[str, float]) -> bool:
    """A host to look at and place on: running, bootstrapped, not lost, answering."""
    return (
        host.state == "running"
        and view is not None
        and view.bootstrapped
        and view.lost is None
        and host.id not in silent
    )


def _with_lost(view: plan.HostView, reason: str) -> plan.HostView:
    return replace(view, lost=reason)


def _common_type(hosts: list[instances.Host]) -> str | None:
    kinds = [h.type for h in hosts if h.type]
    return max(sorted(set(kinds)), key=kinds.count) if kinds else None
