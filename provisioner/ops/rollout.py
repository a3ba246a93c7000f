"""Rolling an app's dynos across the fleet: the executor of provisioner.plan.rollout.

Reads what runs (systemctl on every host, over the pooled SSH edge), asks the pure core where
dynos go (placement) and what to do (rollout plan), and does it: hosts get the release (slug
fetched through a presigned URL and checked by sha256, env file root-only), units start, the
router table follows. If a new web dyno never answers, the new ones stop and the old keep
serving.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from provisioner.aws import instances
from provisioner.aws.blobs import Blobs
from provisioner.aws.router import RouterTable, RouterTarget
from provisioner.context import Context
from provisioner.errors import DynoformError
from provisioner.fleet import Fleet, pin_key
from provisioner.model.formation import Formation
from provisioner.model.release import Release
from provisioner.ops.buildhost import build_paths, ensure_app_user, ensure_node, needs_node
from provisioner.plan.placement import DynoRef, HostSpace, held_formations, place
from provisioner.plan.ports import (
    PortCheck,
    parse_port_checks,
    parse_reserved,
    reserve_ports_argv,
    wait_ports_argv,
)
from provisioner.plan.rollout import (
    Action,
    RolloutOptions,
    RolloutPlan,
    plan_converge,
    releases_to_prune,
)
from provisioner.plan.units import (
    RUNNING_STATES,
    DynoInstance,
    DynoState,
    app_user,
    dyno_facts_argv,
    env_file,
    journal_tail_argv,
    parse_dyno_facts,
    release_dir,
)
from provisioner.remote.fanout import fan_out
from provisioner.remote.ssh import Connection
from provisioner.render import (
    LAUNCHER_PATH,
    launcher_source,
    ports_tool_source,
    render_dyno_unit,
    render_env_document,
)
from provisioner.store import Store

Say = Callable[[str], None]

# Memory of the EC2 types dynoform launches; placement packs dynos by it.
INSTANCE_MEMORY_MB = {
    "t3.nano": 512,
    "t3.micro": 1024,
    "t3.small": 2048,
    "t3.medium": 4096,
    "t3.large": 8192,
    "t3.xlarge": 16384,
    "t3.2xlarge": 32768,
    "m5.large": 8192,
    "m5.xlarge": 16384,
    "m7i.large": 8192,
    "c5.large": 4096,
}
DEFAULT_MEMORY_MB = 2048
UNIT_DIR = "/etc/systemd/system"

# Fetch the slug once per host and release, check it, unpack it read-only for the app's user.
# A release with the same slug as one already on the host is copied locally, not fetched.
# Also makes the app's env directory (root only), in the same round trip.
_UNPACK = r"""
set -e
dir="$1"; sha="$2"; user="$3"; envdir="$4"
install -d -m 0700 "$envdir"
if [ "$(cat "$dir/.dynoform-slug" 2>/dev/null)" = "$sha" ]; then exit 0; fi
parent=$(dirname "$dir"); mkdir -p "$parent"; chmod 0755 "$parent" "$(dirname "$parent")"
tmp="$dir.tmp.$$"; rm -rf "$tmp"
twin=$(grep -lx "$sha" "$parent"/v*/.dynoform-slug 2>/dev/null | head -n 1 || true)
if [ -n "$twin" ]; then
  cp -a "$(dirname "$twin")" "$tmp"
else
  mkdir -p "$tmp"
  curl -fsS --retry 3 -K - -o "$tmp.tgz"
  echo "$sha  $tmp.tgz" | sha256sum -c --quiet - || { rm -rf "$tmp" "$tmp.tgz"; echo "slug checksum mismatch" >&2; exit 3; }
  tar -xzf "$tmp.tgz" -C "$tmp" --no-same-owner
  rm -f "$tmp.tgz"
  echo "$sha" > "$tmp/.dynoform-slug"
  chown -R "root:$user" "$tmp"; chmod -R g+rX,g-w,o-rwx "$tmp"; chmod 0750 "$tmp"
fi
rm -rf "$dir"; mv "$tmp" "$dir"
"""

# Enable and start the new units. systemd (246+) loads a unit file it has not loaded yet on
# `start`, so `daemon-reload` (0.1 s of PID 1's CPU per host, and hosts share cores in the local
# cloud) runs only when a loaded unit's file changed: a unit name written again (a scale back up
# of the same release) with other contents.
_RELOAD_START = (
    'systemctl enable --no-reload --quiet "$@" && '
    'if systemctl show -p NeedDaemonReload --value "$@" | grep -qx yes; '
    "then systemctl daemon-reload; fi && "
    'systemctl start "$@"'
)

# Stop units after the drain, on the host itself, so the deploy command need not wait for it.
# Their port reservations (templates/dyno/dyno-ports) go with the unit files.
_STOP_LATER = (
    'sleep "$1"; shift; systemctl disable --now "$@" >/dev/null 2>&1 || true; '
    'for u in "$@"; do rm -f "/etc/systemd/system/$u" "/run/dynoform/ports/$u"; done; '
    "systemctl daemon-reload"
)


# How long the router takes to stop sending an app's requests once its rule is deleted (the
# local cloud's router follows at once; an ALB within a second or two).
ROUTER_SETTLE_S = 1.5

# Progress after each kind of step (start has its own line before it runs).
_DONE = {
    "wait_port": "{dynos} answering on $PORT",
    "wait_healthy": "{dynos} healthy in the router",
    "deregister": "{dynos} (old) deregistered, draining",
    "wait_running": "{dynos} running",
}


@dataclass
class Observed:
    hosts: list[instances.Host]
    dynos: dict[str, list[DynoState]] = field(default_factory=dict)  # host id -> states
    unreachable: dict[str, str] = field(default_factory=dict)

    def of_app(self, app: str) -> list[DynoState]:
        return [s for states in self.dynos.values() for s in states if s.instance.app == app]

    def address(self, host_id: str) -> str:
        for host in self.hosts:
            if host.id == host_id and host.private_ip:
                return host.private_ip
        raise DynoformError(f"host {host_id} has no address")


@dataclass
class Rollout:
    fleet: Fleet
    store: Store
    router: RouterTable
    blobs: Blobs
    say: Say
    options: RolloutOptions = field(default_factory=RolloutOptions)

    # observing --------------------------------------------------------------------------------
    def usable_hosts(self) -> list[instances.Host]:
        hosts = []
        for host in self.fleet.hosts():
            doc = self.fleet.docs.get(pin_key(host.id))
            if host.state == "running" and doc and doc.data.get("bootstrapped"):
                hosts.append(host)
        return hosts

    def observe(self) -> Observed:
        hosts = self.usable_hosts()
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

    def conn(self, host_id: str, observed: Observed) -> Connection:
        for host in observed.hosts:
            if host.id == host_id:
                return self.fleet.connect(host)
        raise DynoformError(f"host {host_id} is not usable")

    # planning ---------------------------------------------------------------------------------
    def placement(self, observed: Observed, app: str, formation: Formation) -> dict[DynoRef, str]:
        if not observed.hosts and any(pf.quantity for pf in formation.values()):
            raise DynoformError("no usable hosts", "add some: dynoform hosts:add --count 2")
        hosts = [
            HostSpace(h.id, h.zone, INSTANCE_MEMORY_MB.get(h.type, DEFAULT_MEMORY_MB))
            for h in observed.hosts
        ]
        existing = {}
        others = []  # other apps hold the capacity of what runs, not of their formations
        for host_id, states in observed.dynos.items():
            for state in sorted(states, key=lambda s: s.instance.release):
                inst = state.instance
                if state.active in RUNNING_STATES:
                    ref = DynoRef(inst.app, inst.type, inst.index)
                    existing[ref] = host_id
                    if inst.app != app:
                        others.append((ref, inst.size))
        formations = held_formations(others)
        formations[app] = formation
        return place(formations, hosts, existing)

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
        observed = observed or self.observe()
        plan = self.plan(observed, app, release.version, formation, restart)
        if plan.is_empty():
            return plan
        started = plan.started
        if started:
            self.router.ensure_rule(
                app, self._domains(app), self._maintenance(app), self._plain_http(app)
            )
            hosts = {d.host for d in started}
            ports = self.prepare_hosts(observed, app, release, config, hosts, started)
            plan = plan.with_ports(ports)
        undoable, retiring = plan.split_at_commit()
        try:
            for group in undoable:
                self._run_step(observed, app, group)
        except BaseException as exc:
            # Ctrl-C and cloud API errors too: the new dynos go, the old keep serving.
            self.say(f"rolling back: {_reason(exc)}")
            self._undo(observed, app, plan)
            raise
        self._retire(observed, app, retiring)
        self._prune(observed, app, {d.host for d in started}, plan)
        return plan

    def _retire(self, observed: Observed, app: str, groups: list[list[Action]]) -> None:
        """The old web dynos go; the new release serves already, so a failure here is no
        reason to undo it: the next rollout of the app stops what is left."""
        try:
            for group in groups:
                self._run_step(observed, app, group)
        except DynoformError as exc:
            self.say(f"warning: retiring the old dynos failed: {exc.message}")

    def _domains(self, app: str) -> list[str]:
        return list(self.store.app(app).domains)

    def _maintenance(self, app: str) -> bool:
        return self.store.app(app).maintenance

    def _plain_http(self, app: str) -> bool:
        """The app record's `plain_http`: serve plain HTTP instead of redirecting to HTTPS."""
        return self.store.app(app).plain_http

    def prepare_hosts(
        self,
        observed: Observed,
        app: str,
        release: Release,
        config: dict[str, str],
        hosts: set[str],
        started: Sequence[DynoInstance] = (),
    ) -> dict[str, int]:
        """Put the release on `hosts` and reserve ports there for the web dynos in `started`.

        Returns unit -> port as each host reserved it (under its lock, so that apps rolling out
        at the same moment never get the same port).
        """
        if not release.slug_key or not release.slug_sha256:
            raise DynoformError(f"v{release.version} of {app} has no slug", "deploy code first")
        url = self.blobs.get_url(release.slug_key)
        document = render_env_document(config, release.process_types).encode()
        launcher = launcher_source().encode()

        node = needs_node(commands=list(release.process_types.values()))

        web: dict[str, list[str]] = defaultdict(list)
        for dyno in started:
            if dyno.is_web:
                web[dyno.host].append(dyno.unit)

        def prepare(host_id: str) -> dict[str, int]:
            conn = self.conn(host_id, observed)
            if node:
                ensure_node(conn, self.say)
            user = ensure_app_user(conn, app)
            env_path = env_file(app, release.version)
            have = conn.run(["cat", LAUNCHER_PATH])
            if have.stdout.encode() != launcher:
                conn.run(["mkdir", "-p", LAUNCHER_PATH.rsplit("/", 1)[0]], sudo=True, check=True)
                conn.put(launcher, LAUNCHER_PATH, mode="0755")
            argv = [
                "sh",
                "-c",
                _UNPACK,
                "sh",
                release_dir(app, release.version),
                str(release.slug_sha256),
                user,
                env_path.rsplit("/", 1)[0],
            ]
            conn.run(argv, sudo=True, stdin=f'url = "{url}"\n'.encode(), timeout=600, check=True)
            conn.put(document, env_path, mode="0600")
            return self._reserve_ports(conn, web[host_id])

        ports: dict[str, int] = {}
        for got in self._fan(sorted(hosts), prepare, "preparing hosts"):
            ports.update(got)
        return ports

    def _reserve_ports(self, conn: Connection, units: list[str]) -> dict[str, int]:
        """Ports for these web units, reserved by the host under its lock (one round trip)."""
        if not units:
            return {}
        argv = reserve_ports_argv(units, self.options.port_low, self.options.port_high)
        result = conn.run(argv, sudo=True, stdin=ports_tool_source().encode(), check=True)
        reserved = parse_reserved(result.stdout)
        if set(reserved) != set(units):
            raise DynoformError(f"on host {conn.endpoint.name}: no ports reserved for {units}")
        return reserved

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

    def _run_step(self, observed: Observed, app: str, group: list[Action]) -> None:
        by_kind: dict[str, list[Action]] = defaultdict(list)
        for action in group:
            by_kind[action.kind].append(action)
        for kind, actions in by_kind.items():
            getattr(self, f"_do_{kind}")(observed, app, actions)
            if kind in _DONE:
                self.say(_DONE[kind].format(dynos=", ".join(a.dyno for a in actions)))

    def _by_host(self, actions: list[Action]) -> dict[str, list[Action]]:
        result: dict[str, list[Action]] = defaultdict(list)
        for action in actions:
            result[action.host].append(action)
        return result

    def _do_start(self, observed: Observed, app: str, actions: list[Action]) -> None:
        def start(item: tuple[str, list[Action]]) -> None:
            host_id, host_actions = item
            conn = self.conn(host_id, observed)
            for action in host_actions:
                conn.put(render_dyno_unit(action.instance).encode(), f"{UNIT_DIR}/{action.unit}")
            units = [a.unit for a in host_actions]
            conn.run(["sh", "-c", _RELOAD_START, "sh", *units], sudo=True, check=True)

        self.say(f"starting {', '.join(a.dyno for a in actions)}")
        self._fan(sorted(self._by_host(actions).items()), start, "starting dynos")

    def _do_wait_port(self, observed: Observed, app: str, actions: list[Action]) -> None:
        tool = ports_tool_source().encode()

        def wait(item: tuple[str, list[Action]]) -> None:
            host_id, host_actions = item
            conn = self.conn(host_id, observed)
            timeout = int(max(a.timeout_s or 60 for a in host_actions))
            targets = {a.unit: int(a.port) for a in host_actions if a.port}
            argv = wait_ports_argv(observed.address(host_id), timeout, targets)
            result = conn.run(argv, sudo=True, stdin=tool, timeout=timeout + 30)
            if not result.ok:
                checks = parse_port_checks(result.stdout)
                raise DynoformError(*self._boot_failure(conn, host_actions, checks, timeout))

        self._fan(sorted(self._by_host(actions).items()), wait, "booting dynos")

    def _boot_failure(
        self, conn: Connection, actions: list[Action], checks: dict[int, PortCheck], timeout: int
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

    def _do_register(self, observed: Observed, app: str, actions: list[Action]) -> None:
        self.router.register(app, self._targets(observed, actions))

    def _do_wait_healthy(self, observed: Observed, app: str, actions: list[Action]) -> None:
        wanted = set(self._targets(observed, actions))
        timeout = max(a.timeout_s or 60 for a in actions)
        deadline = time.monotonic() + timeout
        while True:
            states = self.router.health(app, wanted)
            if all(states.get(t) == "healthy" for t in wanted):
                return
            if time.monotonic() > deadline:
                bad = sorted(
                    f"{t.ip}:{t.port}={states.get(t)}" for t in wanted if states.get(t) != "healthy"
                )
                raise DynoformError(f"new dynos of {app} never became healthy: {', '.join(bad)}")
            time.sleep(0.1)

    def _do_deregister(self, observed: Observed, app: str, actions: list[Action]) -> None:
        self.router.deregister(app, self._targets(observed, actions))

    def _do_drain(self, observed: Observed, app: str, actions: list[Action]) -> None:
        """The drain happens on the hosts: `_do_stop` stops drained units after the delay."""

    def _do_stop(self, observed: Observed, app: str, actions: list[Action]) -> None:
        drained = {a.unit for a in actions if a.instance.is_web and a.port}
        delay = self.router.drain_seconds(app) if drained else 0

        def stop(item: tuple[str, list[Action]]) -> None:
            host_id, host_actions = item
            conn = self.conn(host_id, observed)
            units = [a.unit for a in host_actions]
            if delay and all(u in drained for u in units):
                argv = [
                    "systemd-run",
                    "--quiet",
                    "--collect",
                    "--no-block",
                    f"--unit=dynoform-stop-{int(time.time() * 1000)}-{host_id}",
                    "sh",
                    "-c",
                    _STOP_LATER,
                    "sh",
                    str(delay),
                    *units,
                ]
                conn.run(argv, sudo=True, check=True)
            else:
                conn.run(
                    ["sh", "-c", _STOP_LATER, "sh", "0", *units], sudo=True, timeout=60, check=True
                )

        if observed.hosts:
            self._fan(sorted(self._by_host(actions).items()), stop, "stopping dynos")

    def _do_wait_running(self, observed: Observed, app: str, actions: list[Action]) -> None:
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

        self._fan(sorted(self._by_host(actions).items()), wait, "starting dynos")

    def _undo(self, observed: Observed, app: str, plan: RolloutPlan) -> None:
        try:
            for group in sorted({a.step for a in plan.on_failure}):
                actions = [a for a in plan.on_failure if a.step == group]
                kinds = {a.kind for a in actions}
                if "deregister" in kinds:
                    self._do_deregister(
                        observed, app, [a for a in actions if a.kind == "deregister"]
                    )
                if "stop" in kinds:
                    self._stop_now(observed, [a for a in actions if a.kind == "stop"])
                if "start" in kinds:
                    self._do_start(observed, app, [a for a in actions if a.kind == "start"])
        except DynoformError as exc:
            self.say(f"warning: cleaning up the new dynos failed: {exc.message}")

    def _stop_now(self, observed: Observed, actions: list[Action]) -> None:
        def stop(item: tuple[str, list[Action]]) -> None:
            host_id, host_actions = item
            units = [a.unit for a in host_actions]
            self.conn(host_id, observed).run(
                ["sh", "-c", _STOP_LATER, "sh", "0", *units], sudo=True, timeout=60
            )

        fan_out(sorted(self._by_host(actions).items()), stop, timeout=120)

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
                conn.run(["sh", "-c", _STOP_LATER, "sh", "0", *units], sudo=True, timeout=60)
            conn.run(["rm", "-rf", "--", release_dir(app, 1).rsplit("/", 2)[0]], sudo=True)
            # Its build cache and any build left behind: an app made later under this name
            # must not start from them.
            conn.run(["sh", "-c", _FORGET_BUILDS, "sh", *build_paths(app)], sudo=True)
            conn.run(
                ["sh", "-c", 'userdel "$1" 2>/dev/null || true', "sh", app_user(app)], sudo=True
            )

        fan_out(observed.hosts, clean, timeout=300)


# $1 the app's cache tarball (${1%.tar}: the cache directory builds used before), $2 its builds.
_FORGET_BUILDS = (
    'rm -rf -- "$1" "${1%.tar}"; for old in "$2"/*; do umount -l -- "$old" 2>/dev/null; done; '
    'rm -rf -- "$2"'
)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DynoformError):
        return exc.message
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"{type(exc).__name__}: {exc}"


def open_rollout(ctx: Context, options: RolloutOptions | None = None) -> Rollout:
    """A Rollout on the Context's target: its fleet, state store and router table."""
    return Rollout(
        ctx.fleet(), ctx.store, ctx.router(), ctx.blobs(), ctx.say, options or RolloutOptions()
    )


def current_formation(store: Store, app: str, release: Release) -> Formation:
    """The app's formation, with Heroku's defaults for process types seen the first time."""
    from provisioner.model.formation import default_formation

    formation, etag = store.formation(app)
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
