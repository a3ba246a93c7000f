"""Shipping log lines to drains, from the controller on every runner.

Where the lines are, they are shipped from:
- dyno lines (`app[web.1]`, and systemd's words about dyno units as `dynoform[web.1]`): every
  runner's controller follows its own host's journal (`HostJournal`, a thread of every
  controller, not only the leader's);
- platform lines (`dynoform[controller]`, `dynoform[scheduler]`, …: events in the store) and
  router lines (the load balancer's access logs in the bucket, see aws/accesslogs.py): the
  leader's `drains` duty (`LeaderLines`), so each is shipped once.

One `Shipper` per controller: which drains an app has (its record, read again after
CACHE_SECONDS), an `Outlet` per drain (a thread, a bounded buffer, retries with backoff), and
its figures written under `drains/stats/<app>/` now and then. Shippers send log lines only
and read no config vars (the controller reads them only to start dynos when it heals an app,
into their 0600 env files; no unit, command line or journal entry carries them).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import IO, Any

from botocore.exceptions import ClientError

from provisioner import events
from provisioner import logs as lg
from provisioner.aws import accesslogs
from provisioner.aws.state import Documents, StaleWrite
from provisioner.context import Context
from provisioner.errors import DynoformError, NotFound, ValidationError
from provisioner.model import drains as m
from provisioner.ops import drains as records
from provisioner.ops import logs as applogs
from provisioner.ops.rollout import open_rollout
from provisioner.plan.units import parse_unit_name
from provisioner.store import Store, now_iso

EVERY = 2.0  # the leader's duty: platform events and router lines
CACHE_SECONDS = 5.0  # the index of apps with drains, and an app's drains, are read this often
REINDEX_SECONDS = 60.0  # the leader checks the index against the apps' records this often
REPORT_SECONDS = 5.0  # figures are written at most this often (when they changed)
REFRESH_SECONDS = 60.0  # and at least this often (unchanged): a live shipper's are fresh
SERVERS_SECONDS = 10.0  # the router's ip:port -> dyno map is looked up again at most this often
CONNECT_TIMEOUT = 10.0
PENDING_SECONDS = 600.0  # a release pending longer (its deploy was cut off) is shipped as such
# Where this host's journal was read up to: a controller restarted (a new version of its code)
# goes on from there instead of from its start.
CURSOR_FILE = "/var/lib/dynoform/controller/drains.cursor"
JOURNAL_FIELDS = "MESSAGE,DYNOFORM_APP,DYNOFORM_DYNO,SYSLOG_IDENTIFIER,_PID,UNIT,USER_UNIT"


class Outlet:
    """One drain of one shipper: lines wait in a bounded buffer; a thread sends them, and on a
    failure keeps them and tries again later, waiting longer each time."""

    def __init__(self, drain: m.Drain, ca: str, stop: threading.Event) -> None:
        self.drain = drain
        self.url = m.parse_url(drain.url)
        self.ca = ca
        self.buffer = m.Buffer()
        self.error = ""
        self.stop = threading.Event()
        self.parent_stop = stop
        self.sock: socket.socket | ssl.SSLSocket | None = None
        self.thread = threading.Thread(target=self._run, name="drain-outlet", daemon=True)
        self.thread.start()

    def counts(self) -> m.Counts:
        return m.Counts(self.buffer.sent, self.buffer.dropped, len(self.buffer), self.error)

    def close(self) -> None:
        self.stop.set()
        self.buffer.ready.set()
        self._disconnect()

    def _stopped(self) -> bool:
        return self.stop.is_set() or self.parent_stop.is_set()

    def _run(self) -> None:
        failures = 0
        size = m.HTTPS_BATCH if self.url.scheme == "https" else 200
        while not self._stopped():
            self.buffer.ready.wait(1.0)
            batch = self.buffer.batch(size)
            if not batch or self._stopped():
                continue
            try:
                self._send([line for _, line in batch])
            except Exception as exc:  # noqa: BLE001 - any failure (IncompleteRead, a bug): retry later
                failures += 1
                self.error = f"{now_iso()} {_reason(exc)}"
                self._disconnect()
                self.stop.wait(m.backoff(failures))
                continue
            failures = 0
            self.error = ""
            self.buffer.ack(batch[-1][0])

    def _send(self, lines: list[m.Line]) -> None:
        if self.url.scheme == "https":
            self._post(lines)
            return
        if self.sock is None:
            self.sock = self._connect()
        self.sock.sendall(m.stream(lines, self.drain.token))

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()  # the system's CAs, names checked
        if self.ca:
            context.load_verify_locations(cadata=self.ca)
        return context

    def _connect(self) -> socket.socket | ssl.SSLSocket:
        raw = socket.create_connection((self.url.host, self.url.port), timeout=CONNECT_TIMEOUT)
        if not self.url.tls:
            return raw
        try:
            return self._context().wrap_socket(raw, server_hostname=self.url.host)
        except OSError:
            raw.close()
            raise

    def _disconnect(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _post(self, lines: list[m.Line]) -> None:
        body = m.https_body(lines)
        headers = m.https_headers(len(lines), self.drain.token, str(uuid.uuid4()), self.url.url)
        request = urllib.request.Request(
            m.without_credentials(self.url.url), data=body, headers=headers, method="POST"
        )
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=self._context()), _NoRedirect()
        )
        try:
            with opener.open(request, timeout=CONNECT_TIMEOUT) as resp:
                resp.read()
        except urllib.error.HTTPError as exc:
            raise DynoformError(f"HTTP {exc.code} from {self.url.masked}") from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx is a failure, retried later: followed, urllib would turn the POST into a GET to
    its Location, with Authorization and the drain's token, and count the batch as sent."""

    def redirect_request(self, *_: Any, **__: Any) -> None:
        return None


def _reason(exc: Exception) -> str:
    """Why a send failed, without the URL's credentials (urllib's messages hold no URL)."""
    return exc.message if isinstance(exc, DynoformError) else f"{type(exc).__name__}: {exc}"


class Shipper:
    """A controller's drains: lines in, to every drain of their app."""

    def __init__(
        self,
        docs: Callable[[], Documents],
        name: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._docs = docs  # the store, reached on first use
        self.name = name  # the host: one figures document per app and host
        self.clock = clock
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.index: set[str] = set()
        self.index_at = -CACHE_SECONDS
        self.known: dict[str, tuple[float, records.AppDrains]] = {}
        self.outlets: dict[tuple[str, str], Outlet] = {}  # (app, token) -> outlet
        self.reported: dict[str, tuple[float, dict[str, Any]]] = {}  # app -> (when, figures)
        self.reported_at = 0.0

    @property
    def docs(self) -> Documents:
        return self._docs()

    def apps(self) -> list[str]:
        """The apps with drains (the index), read again once CACHE_SECONDS old."""
        if self.clock() - self.index_at >= CACHE_SECONDS:
            try:
                self.index = set(records.indexed(self.docs))
                self._close_gone()
            except Exception:  # noqa: BLE001 - the store is away: keep what we knew
                pass
            self.index_at = self.clock()
        return sorted(self.index)

    def _close_gone(self) -> None:
        """An app out of the index (its last drain removed, or destroyed): its senders stop."""
        with self.lock:
            for app in [a for a in self.known if a not in self.index]:
                del self.known[app]
            for key in [k for k in self.outlets if k[0] not in self.index]:
                self.outlets.pop(key).close()

    def drains(self, app: str) -> list[m.Drain]:
        """The app's drains, read again once CACHE_SECONDS old (none unless it is indexed)."""
        if app not in self.apps():
            return []
        with self.lock:
            seen = self.known.get(app)
        if seen is None or self.clock() - seen[0] >= CACHE_SECONDS:
            try:
                fresh = records.read(self.docs, app)
            except Exception:  # noqa: BLE001 - the store is away: keep what we knew
                fresh = seen[1] if seen else records.AppDrains([], "")
            with self.lock:
                self.known[app] = (self.clock(), fresh)
                self._close_removed(app, fresh)
            seen = self.known[app]
        return seen[1].drains

    def _close_removed(self, app: str, now: records.AppDrains) -> None:
        tokens = {d.token for d in now.drains}
        for key in [k for k in self.outlets if k[0] == app and k[1] not in tokens]:
            self.outlets.pop(key).close()

    def ship(self, line: m.Line) -> None:
        for drain in self.drains(line.app):
            try:
                outlet = self._outlet(line.app, drain)
            except ValidationError:  # stored before parse_url refused such URLs: no lines
                continue
            outlet.buffer.add(line)

    def _outlet(self, app: str, drain: m.Drain) -> Outlet:
        with self.lock:
            outlet = self.outlets.get((app, drain.token))
            if outlet is None:
                outlet = Outlet(drain, self.known[app][1].ca, self.stop)
                self.outlets[(app, drain.token)] = outlet
            return outlet

    def figures(self) -> dict[str, dict[str, Any]]:
        """app -> {token: counts} of this shipper's outlets."""
        result: dict[str, dict[str, Any]] = {}
        with self.lock:
            outlets = list(self.outlets.items())
        for (app, token), outlet in outlets:
            c = outlet.counts()
            result.setdefault(app, {})[token] = {
                "sent": c.sent,
                "dropped": c.dropped,
                "buffered": c.buffered,
                "error": c.error,
            }
        return result

    def report(self) -> None:
        """Write the figures that changed since the last report, at most every REPORT_SECONDS."""
        if self.clock() - self.reported_at < REPORT_SECONDS:
            return
        self.reported_at = self.clock()
        for app, figures in self.figures().items():
            when, before = self.reported.get(app, (0.0, None))
            if before == figures and self.clock() - when < REFRESH_SECONDS:
                continue
            try:
                key = f"{records.stats_prefix(app)}{self.name}.json"
                self.docs.put(key, {"drains": figures, "at": now_iso()})
                self.reported[app] = (self.clock(), figures)
            except Exception:  # noqa: BLE001 - figures wait for the next report
                pass

    def close(self) -> None:
        self.stop.set()
        with self.lock:
            for outlet in self.outlets.values():
                outlet.close()


# dyno lines: every host's own journal ---------------------------------------------------------
def journal_follow_argv(cursor_file: str = CURSOR_FILE) -> list[str]:
    """Every new journal entry of this host, after the one read last (dyno units' and
    systemd's are picked out later: `-u` with a pattern would miss units that start after
    it). journalctl writes the cursor file when it ends."""
    return [
        "journalctl",
        "--no-pager",
        "-o",
        "json",
        f"--output-fields={JOURNAL_FIELDS}",
        f"--cursor-file={cursor_file}",
        "-f",
        "-n",
        "0",
    ]


def journal_line(entry: dict[str, Any], host: str) -> m.Line | None:
    """A journal entry of a dyno unit (its output, or systemd's words about it) -> a line."""
    app = entry.get("DYNOFORM_APP")
    if str(entry.get("_PID")) == "1":
        instance = parse_unit_name(str(entry.get("UNIT") or entry.get("USER_UNIT") or ""))
        app = instance.app if instance else None
    if not app:
        return None
    line = lg.parse_journal_entry(entry, str(app), host)
    return to_line(line, str(app)) if line else None


def to_line(line: lg.LogLine, app: str) -> m.Line:
    return m.Line(line.ts, app, line.source, line.dyno or line.source, line.message)


def journal_lines(stream: IO[bytes], host: str) -> Iterator[m.Line]:
    for raw in stream:
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict) and (line := journal_line(entry, host)) is not None:
            yield line


class HostJournal:
    """Follows this host's journal for as long as the controller runs."""

    def __init__(
        self, shipper: Shipper, host: str, stop: threading.Event, say: Callable[[str], None]
    ) -> None:
        self.shipper = shipper
        self.host = host
        self.stop = stop
        self.say = say

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="drains-journal", daemon=True)
        thread.start()
        reporter = threading.Thread(target=self._report, name="drains-report", daemon=True)
        reporter.start()
        return thread

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self._follow()
            except Exception as exc:  # noqa: BLE001 - journalctl went away: start it again
                self.say(f"drains: reading the journal failed: {exc}")
            self.stop.wait(2.0)

    def _follow(self) -> None:
        os.makedirs(os.path.dirname(CURSOR_FILE), mode=0o700, exist_ok=True)
        with subprocess.Popen(
            journal_follow_argv(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        ) as proc:
            assert proc.stdout is not None
            try:
                for line in journal_lines(proc.stdout, self.host):
                    self.shipper.ship(line)
                    if self.stop.is_set():
                        break
            finally:
                ended = proc.poll()
                proc.terminate()
        if ended is not None and not self.stop.is_set():
            # It stopped by itself (a cursor it cannot seek to?): from now on, next time.
            self.say(f"drains: journalctl ended with status {ended}; following it again")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(CURSOR_FILE)

    def _report(self) -> None:
        while not self.stop.wait(REPORT_SECONDS):
            self.shipper.report()


# platform and router lines: the leader ---------------------------------------------------------
class LeaderLines:
    """The `drains` duty: the controller's events and the router's lines, to the drains of
    their apps. A new leader starts from its first tick's events (a few seconds of events
    around a change of leader may be missed); router lines wait in the bucket until shipped."""

    def __init__(self, shipper: Shipper) -> None:
        self.shipper = shipper
        self.seen: dict[str, str] = {}  # app -> its newest event key shipped
        self.released: dict[str, int] = {}  # app -> its newest release shipped
        self.names: dict[str, str] = {}  # hostname -> app
        self.servers: dict[str, dict[str, str]] = {}  # app -> router server -> dyno
        self.servers_at = -SERVERS_SECONDS
        self.done: set[str] = set()  # access-log objects shipped (if deleting them failed)
        self.reindexed_at = -REINDEX_SECONDS

    def tick(self, ctx: Context, guard: Callable[[], None]) -> None:
        reindexed = time.monotonic() - self.reindexed_at >= REINDEX_SECONDS
        if reindexed:
            self.reindexed_at = time.monotonic()
            self._reindex(ctx, guard)
        apps = [app for app in self.shipper.apps() if self.shipper.drains(app)]
        if not apps and not reindexed:
            return  # what the router left meanwhile goes once a minute (below, no app reads it)
        for app in apps:
            try:
                self._events(ctx.store.docs, app)
                self._releases(ctx.store, app)
            except Exception as exc:  # noqa: BLE001 - one app's trouble stops no other's lines
                ctx.say(f"drains: {app}'s platform lines failed: {type(exc).__name__}: {exc}")
        try:
            self._router(ctx, apps, guard)
        except DynoformError:
            raise  # the guard: not the leader any more
        except Exception as exc:  # noqa: BLE001 - the bucket is away: next tick
            ctx.say(f"drains: router lines failed: {type(exc).__name__}: {exc}")
        self.shipper.report()

    def _reindex(self, ctx: Context, guard: Callable[[], None]) -> None:
        """The index made again, and every load balancer's access logs on while it names an
        app, off once it is empty (a drains:add and a drains:remove of two apps at once, an
        apps:destroy of the last app with drains, a shard added since)."""
        guard()
        try:
            found = records.reindex(ctx.store.docs, ctx.store.apps())
        except StaleWrite:  # a drain added meanwhile: next time
            return
        platform = ctx.platform(create=False)
        guard()
        try:
            changed = accesslogs.ensure(ctx.aws, platform, bool(found), ctx.target.is_local, False)
        except ClientError as exc:  # a policy from before (platform:init adds the calls)
            ctx.say(f"drains: could not set the load balancers' access logs: {exc}")
            return
        if changed:
            state = "on" if found else "off"
            events.record(ctx.store.docs, "drains", f"the load balancers' access logs are {state}")

    def _events(self, docs: Documents, app: str) -> None:
        if app not in self.seen:
            self.seen[app] = events.newest_key(docs, app)  # from now on
            return
        for key in events.keys_after(docs, app, self.seen[app]):
            doc = docs.get(key)
            if doc is not None:
                event = events.Event.from_dict(doc.data)
                line = m.Line(event.at, app, "dynoform", event.source, lg.clean(event.message))
                self.shipper.ship(line)
            self.seen[app] = key

    def _releases(self, store: Store, app: str) -> None:
        """`dynoform[api]: Release v4 created by …` once the release succeeded or failed."""
        versions = store.release_versions(app)
        if app not in self.released:
            self.released[app] = versions[-1] if versions else 0  # from now on
            return
        for version in (v for v in versions if v > self.released[app]):
            release = store.release(app, version)
            if release.status == "pending" and not _older(release.created_at, PENDING_SECONDS):
                return  # shipped once it is decided; the later ones wait behind it
            self.shipper.ship(to_line(applogs.release_line(release), app))
            self.released[app] = version

    def _router(self, ctx: Context, apps: list[str], guard: Callable[[], None]) -> None:
        docs = ctx.store.docs
        keys = [k for k in accesslogs.pending(docs.s3, docs.bucket) if k not in self.done]
        if not keys:
            return
        self.names = {name: app for app in apps for name in _hostnames(ctx, app)}
        for key in keys:
            try:
                for raw in accesslogs.read(docs.s3, docs.bucket, key):
                    self._router_line(ctx, raw if "/local/" in key else m.alb_router_line(raw))
            except (OSError, EOFError, zlib.error) as exc:  # a truncated .gz: never readable
                events.record(docs, "drains", f"router lines of {key} unreadable, deleted: {exc}")
            except Exception as exc:  # noqa: BLE001 - S3 away: this object again next tick
                ctx.say(f"drains: reading {key} failed: {type(exc).__name__}: {exc}")
                continue
            self.done.add(key)
            guard()  # only the leader deletes what it shipped
            accesslogs.delete(docs.s3, docs.bucket, key)
            self.done.discard(key)

    def _router_line(self, ctx: Context, raw: str | None) -> None:
        host = _host_field(raw or "")
        app = self.names.get(host)
        if raw is None or app is None:
            return
        line = lg.parse_router_line(raw, [host], self._servers(ctx, app, raw))
        if line is not None:
            self.shipper.ship(m.Line(line.ts, app, "router", "router", line.message))

    def _servers(self, ctx: Context, app: str, raw: str) -> dict[str, str]:
        """The router's server names (ip:port) -> dyno names: looked up again when a line
        names a server not known yet, at most every SERVERS_SECONDS."""
        known = self.servers.get(app, {})
        server = _field(raw, "dyno")
        stale = time.monotonic() - self.servers_at >= SERVERS_SECONDS
        if server and server not in known and stale:
            self.servers_at = time.monotonic()
            try:
                observed = open_rollout(ctx).observe()
                self.servers = {
                    a: applogs.dyno_servers(observed, a) for a in set(self.names.values())
                }
            except DynoformError:
                pass
        return self.servers.get(app, {})


def _hostnames(ctx: Context, app: str) -> list[str]:
    try:
        return list(applogs.hostnames(ctx.store, app, ctx.target.app_domain))
    except NotFound:  # destroyed a moment ago (the shipper's cache still has it)
        return []


def _older(stamp: str, seconds: float) -> bool:
    try:
        return time.time() - datetime.fromisoformat(stamp).timestamp() > seconds
    except ValueError:
        return True


def _field(raw: str, name: str) -> str:
    for part in raw.split(" "):
        if part.startswith(f"{name}="):
            return part[len(name) + 1 :]
    return ""


def _host_field(raw: str) -> str:
    return _field(raw, "host").split(":", 1)[0].lower()
