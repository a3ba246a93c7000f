"""An app's logs: journald on every host over SSH, the local router's log, release events and
the controller's events, merged as Heroku shows them (`history`), or followed as they come
(`Tail`)."""

from __future__ import annotations

import json
import select
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from provisioner import events
from provisioner import logs as lg
from provisioner.aws import instances
from provisioner.context import Context
from provisioner.errors import DynoformError
from provisioner.model.release import Release
from provisioner.ops.rollout import Observed, open_rollout
from provisioner.remote.fanout import fan_out
from provisioner.store import Store
from provisioner.targets import Target

Emit = Callable[[lg.LogLine], None]


def router_log_path(target: Target) -> Path | None:
    """The local router's log (the local cloud writes it; AWS has none)."""
    path = target.local.router_log if target.local is not None else None
    return path if path is not None and path.exists() else None


def hostnames(store: Store, app: str, domain: str) -> list[str]:
    """The names the router serves the app by: its own, and its custom domains."""
    return [f"{app}.{domain}", *store.app(app).domains]


def dyno_servers(observed: Observed, app: str) -> dict[str, str]:
    """Router server names (ip:port) -> dyno names, for the app's web dynos now."""
    result = {}
    for state in observed.of_app(app):
        inst = state.instance
        if inst.port:
            result[lg.server_name(observed.address(inst.host), inst.port)] = inst.name
    return result


def release_events(store: Store, app: str) -> list[lg.LogLine]:
    return [release_line(release) for release in store.releases(app)]


def release_line(release: Release) -> lg.LogLine:
    """`dynoform[api]: Release v4 created by me@laptop: Set GREETING config var`"""
    from datetime import datetime

    ts = datetime.fromisoformat(release.created_at).timestamp()
    text = f"Release v{release.version} created by {release.created_by}: {release.description}"
    if release.status != "succeeded":
        text += f" ({release.status})"
    return lg.LogLine(ts, "dynoform", "api", lg.clean(text))


def read_router(
    path: Path | None, names: list[str], servers: dict[str, str], max_bytes: int = 4 << 20
) -> list[lg.LogLine]:
    if path is None:
        return []
    newest = _tail(path, max_bytes)
    # Just after a rotation the newest lines are few: the rest are in router.log.1.
    older = _tail(path.with_name(path.name + ".1"), max_bytes - len(newest))
    text = (older + newest).decode("utf-8", errors="replace")
    parsed = (lg.parse_router_line(line, names, servers) for line in text.splitlines())
    return [line for line in parsed if line is not None]


def _tail(path: Path, max_bytes: int) -> bytes:
    """The last `max_bytes` of the file, from a line's start (nothing if it is missing)."""
    if max_bytes <= 0:
        return b""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - max_bytes))
            data = handle.read(max_bytes)
    except FileNotFoundError:
        return b""
    if size > max_bytes:
        data = data[data.find(b"\n") + 1 :]  # the cut line is not a line
    # A writer that went on at its old offset after a rotation leaves a hole of zeros.
    return data.replace(b"\0", b"")


def history(
    ctx: Context,
    app: str,
    lines: int = lg.DEFAULT_LINES,
    ps: str | None = None,
    source: str | None = None,
) -> list[lg.LogLine]:
    """The app's newest `lines` log lines, oldest first: only dyno (web.1) or process type
    (web) `ps`, only `source` (app, router, dynoform) when given. A host that does not
    answer is said and skipped."""
    lg.check_options(lines, source)
    ctx.store.app(app)  # NotFound before any host is asked
    collected = _collect(ctx, app, lines)
    return lg.merge(lg.select(collected, ps, source), lines)


def _collect(ctx: Context, app: str, lines: int) -> list[lg.LogLine]:
    observed = open_rollout(ctx).observe()

    def journal(host: instances.Host) -> list[lg.LogLine]:
        result = ctx.fleet().connect(host).run(lg.journal_argv(app, lines), sudo=True, timeout=60)
        return list(_parse_journal(result.stdout, app, host.id))

    collected: list[lg.LogLine] = []
    for outcome in fan_out(observed.hosts, journal, timeout=90):
        if outcome.ok and outcome.value is not None:
            collected += outcome.value
        else:
            ctx.say(f"warning: no logs from host {outcome.item.id}: {outcome.error}")
    names = hostnames(ctx.store, app, ctx.target.app_domain)
    collected += read_router(router_log_path(ctx.target), names, dyno_servers(observed, app))
    collected += release_events(ctx.store, app)
    collected += platform_events(ctx.store, app, lines)
    return collected


def platform_events(store: Store, app: str, lines: int) -> list[lg.LogLine]:
    """What the controller did to the app: `dynoform[controller]` lines."""
    return [event_line(e) for e in events.recent(store.docs, lines, app=app)]


def event_line(event: events.Event) -> lg.LogLine:
    return lg.LogLine(event.at, "dynoform", event.source, lg.clean(event.message))


def _parse_journal(text: str, app: str, host: str) -> Iterator[lg.LogLine]:
    for raw in text.splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        line = lg.parse_journal_entry(entry, app, host)
        if line is not None:
            yield line


class Tail:
    """Follow every host at once; picks up new hosts, survives hosts that go away.

    `emit` hears each new line (only those of `ps` and `source` when given), one at a time,
    until `run` ends: after `seconds`, or once `stop` is set."""

    def __init__(
        self,
        ctx: Context,
        app: str,
        emit: Emit,
        ps: str | None = None,
        source: str | None = None,
        rescan: float = 3.0,
    ) -> None:
        lg.check_options(0, source)
        self.ctx = ctx
        self.rollout = open_rollout(ctx)
        self.fleet = ctx.fleet()
        self.app = app
        self.emit_line = emit
        self.ps, self.source = ps, source
        self.names = hostnames(ctx.store, app, ctx.target.app_domain)
        self.rescan = rescan
        self.stop = threading.Event()
        self.followers: dict[str, threading.Thread] = {}
        self.servers: dict[str, str] = {}
        self.events_seen: str | None = None  # the newest controller event emitted
        self.lock = threading.Lock()

    def emit(self, line: lg.LogLine) -> None:
        if not lg.select([line], self.ps, self.source):
            return
        with self.lock:
            self.emit_line(line)

    def run(self, seconds: float | None = None) -> None:
        """Ends with `stop` set, whatever happens: a reader waiting on it must not wait forever.
        An unexpected error is the last line emitted (whatever `ps` and `source`), then raised."""
        end = None if seconds is None else time.monotonic() + seconds
        try:
            router = threading.Thread(target=self._follow_router, daemon=True)
            router.start()
            while not self.stop.is_set() and (end is None or time.monotonic() < end):
                self._scan()
                self.stop.wait(
                    self.rescan
                    if end is None
                    else min(self.rescan, max(0.0, end - time.monotonic()))
                )
        except Exception as exc:
            failed = f"the tail stopped: {type(exc).__name__}: {exc}"
            with self.lock:
                self.emit_line(lg.LogLine(time.time(), "dynoform", "logs", failed))
            raise
        finally:
            self.stop.set()

    def _scan(self) -> None:
        try:
            observed = self.rollout.observe()
        except DynoformError as exc:
            self.emit(
                lg.LogLine(time.time(), "dynoform", "logs", f"cannot list hosts: {exc.message}")
            )
            return
        self.servers = dyno_servers(observed, self.app)
        self._follow_events()
        for host in observed.hosts:
            follower = self.followers.get(host.id)
            if follower is None or not follower.is_alive():
                thread = threading.Thread(target=self._follow_host, args=(host,), daemon=True)
                self.followers[host.id] = thread
                thread.start()

    def _follow_events(self) -> None:
        docs = self.ctx.store.docs
        if self.events_seen is None:
            self.events_seen = events.newest_key(docs, self.app)  # from now on, as `tail -f`
            return
        for key in events.keys_after(docs, self.app, self.events_seen):
            doc = docs.get(key)
            if doc is not None:
                self.emit(event_line(events.Event.from_dict(doc.data)))
            self.events_seen = key

    def _follow_host(self, host: instances.Host) -> None:
        try:
            conn = self.fleet.connect(host)
            chan = conn.transport.open_session(timeout=10)
            argv = lg.follow_argv(self.app)
            chan.exec_command(shlex.join(["sudo", "-n", "--", *argv] if conn.sudo else argv))
            pending = b""
            while not self.stop.is_set() and not chan.exit_status_ready():
                select.select([chan], [], [], 0.5)
                while chan.recv_ready():
                    pending += chan.recv(65536)
                    *complete, pending = pending.split(b"\n")
                    for line in _parse_journal(
                        b"\n".join(complete).decode(errors="replace"), self.app, host.id
                    ):
                        self.emit(line)
            chan.close()
        except Exception as exc:  # noqa: BLE001 - a host going away must not end the tail
            if not self.stop.is_set():
                self.emit(
                    lg.LogLine(
                        time.time(), "dynoform", "logs", f"lost host {host.id}: {exc}; going on"
                    )
                )
        if not self.stop.is_set():
            self.emit(
                lg.LogLine(time.time(), "dynoform", "logs", f"host {host.id} went away; going on")
            )

    def _follow_router(self) -> None:
        path = router_log_path(self.ctx.target)
        if path is None:
            return
        for raw in follow_lines(path, self.stop):
            line = lg.parse_router_line(raw.decode(errors="replace"), self.names, self.servers)
            if line is not None:
                self.emit(line)


def follow_lines(path: Path, stop: threading.Event, poll: float = 0.2) -> Iterator[bytes]:
    """The complete lines added to `path` from now until `stop`, across its rotations: the
    local cloud empties router.log past its size (copy and truncate), and then its lines
    start again at 0."""
    with path.open("rb") as handle:
        handle.seek(0, 2)
        pending = b""
        while not stop.is_set():
            chunk = handle.read(65536)
            if chunk:
                pending += chunk
                *complete, pending = pending.split(b"\n")
                yield from (line.lstrip(b"\0") for line in complete)  # see _tail
            elif _shrunk(path, handle.tell()):
                handle.seek(0)
                pending = b""
            else:
                stop.wait(poll)


def _shrunk(path: Path, offset: int) -> bool:
    try:
        return path.stat().st_size < offset
    except FileNotFoundError:
        return False
