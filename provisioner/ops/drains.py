"""Log drains (Heroku's `drains`): where an app's log lines go besides `dynoform logs`.

Records: `apps/<app>/drains.json` (the drains, with the local CA on the local cloud, which
`syslog+tls` and `https` drains are verified against besides the system's CAs), and
`drains/apps.json`, the index of apps that have drains. The shippers (ops/drainship.py, in the
controller on every runner) read both with a short cache, and report what they sent and dropped
under `drains/stats/<app>/<shipper>.json` (outside the app's records, which a late report must
not bring back after `apps:destroy`); `drains` adds those up by drain token. Adding a drain
turns the load balancer's access logs on: that is how router lines reach the shippers
(aws/accesslogs.py).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from provisioner.aws import accesslogs
from provisioner.aws.state import Documents, StaleWrite
from provisioner.context import Context
from provisioner.errors import DynoformError, NotFound, ValidationError
from provisioner.model import drains as m
from provisioner.store import now_iso


@dataclass(frozen=True)
class DrainStatus:
    url: str  # masked: no credentials
    token: str
    added_at: str
    sent: int
    dropped: int
    buffered: int
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "token": self.token,
            "added_at": self.added_at,
            "sent": self.sent,
            "dropped": self.dropped,
            "buffered": self.buffered,
            "last_error": self.error or None,
        }


def drains_key(app: str) -> str:
    return f"apps/{app}/drains.json"


STALE_SECONDS = 300.0  # a shipper's figures older than this: its host or controller is gone
INDEX_KEY = "drains/apps.json"  # the apps that have drains: one read tells a shipper


def stats_prefix(app: str) -> str:
    return f"drains/stats/{app}/"


@dataclass(frozen=True)
class AppDrains:
    drains: list[m.Drain]
    ca: str  # PEM of the local CA ("" on AWS)


def read(docs: Documents, app: str) -> AppDrains:
    doc = docs.get(drains_key(app))
    data = doc.data if doc else {}
    return AppDrains(
        [m.Drain.from_dict(d) for d in data.get("drains", [])], str(data.get("ca", ""))
    )


def add(ctx: Context, app: str, url: str) -> DrainStatus:
    """A new drain; the app's lines reach it from now on. Prints nothing of its credentials."""
    parsed = m.parse_url(url)
    ctx.store.app(app)  # NotFound for an unknown app
    drain = m.Drain(parsed.url, m.token_of(str(uuid.uuid4())), now_iso())
    ca = _local_ca(ctx)

    def change(drains: list[m.Drain]) -> list[m.Drain]:
        if any(d.url == parsed.url for d in drains):
            raise ValidationError(m.URL_FIELD, f"{parsed.masked} is a drain of {app} already")
        return [*drains, drain]

    platform = ctx.platform(create=False)
    if accesslogs.ensure(ctx.aws, platform, True, ctx.target.is_local):
        ctx.say("the load balancer's access logs are on now (the router's lines reach drains)")
    _update(ctx.store.docs, app, change, ca)
    set_indexed(ctx.store.docs, app, True)
    return _status(drain, m.Counts())


def _local_ca(ctx: Context) -> str:
    local = ctx.target.local
    if local is None:
        return ""
    from provisioner import authority  # here: it imports cryptography (~10 ms)

    path = authority.ca_cert_path(local.ca_dir)
    return path.read_text() if path.exists() else ""


def indexed(docs: Documents) -> list[str]:
    doc = docs.get(INDEX_KEY)
    return sorted(doc.data.get("apps", [])) if doc else []


def set_indexed(docs: Documents, app: str, has_drains: bool) -> list[str]:
    """Put the app in the index of apps with drains, or take it out; returns the index."""
    for _ in range(5):
        doc = docs.get(INDEX_KEY)
        before = set(doc.data.get("apps", [])) if doc else set()
        after = sorted(before | {app} if has_drains else before - {app})
        if doc is not None and after == sorted(before):
            return after
        try:
            if doc is None:
                docs.create(INDEX_KEY, {"apps": after})
            else:
                docs.update(INDEX_KEY, {"apps": after}, doc.etag)
            return after
        except StaleWrite:
            continue
    raise DynoformError("the index of drains changed under us five times; try again")


def reindex(docs: Documents, apps: list[str]) -> list[str]:
    """The index made again from the apps' own records (an app renamed or destroyed since)."""
    doc = docs.get(INDEX_KEY)  # read first: a drain added meanwhile makes the write fail
    found = sorted(app for app in apps if read(docs, app).drains)
    if doc is None and found:
        docs.create(INDEX_KEY, {"apps": found})
    elif doc is not None and found != sorted(doc.data.get("apps", [])):
        docs.update(INDEX_KEY, {"apps": found}, doc.etag)
    return found


def _update(docs: Documents, app: str, change: Any, ca: str | None = None) -> None:
    for _ in range(5):
        doc = docs.get(drains_key(app))
        before = read(docs, app) if doc else AppDrains([], "")
        data = {
            "drains": [d.to_dict() for d in change(before.drains)],
            "ca": before.ca if ca is None else ca,
        }
        try:
            if doc is None:
                docs.create(drains_key(app), data)
            else:
                docs.update(drains_key(app), data, doc.etag)
            return
        except StaleWrite:
            continue
    raise DynoformError(f"{app}'s drains changed under us five times; try again")


def drains(ctx: Context, app: str) -> list[DrainStatus]:
    """The app's drains (URLs masked) with what the shippers sent and dropped."""
    ctx.store.app(app)
    counts = totals(ctx.store.docs, app)
    return [_status(d, counts.get(d.token, m.Counts())) for d in read(ctx.store.docs, app).drains]


def totals(docs: Documents, app: str, now: float | None = None) -> dict[str, m.Counts]:
    """Every shipper's figures, added up per drain token: what a shipper sent and dropped
    counts for ever, what it buffers and its last error only while it reports (a host gone
    or a controller stopped leaves its last figures behind)."""
    result: dict[str, m.Counts] = {}
    for key in docs.keys(stats_prefix(app)):
        doc = docs.get(key)
        data = doc.data if doc else {}
        live = not _older(str(data.get("at", "")), STALE_SECONDS, now)
        for token, figures in data.get("drains", {}).items():
            counts = m.Counts(
                int(figures.get("sent", 0)),
                int(figures.get("dropped", 0)),
                int(figures.get("buffered", 0)) if live else 0,
                str(figures.get("error", "")) if live else "",
            )
            result[token] = result.get(token, m.Counts()).plus(counts)
    return result


def _older(stamp: str, seconds: float, now: float | None) -> bool:
    try:
        at = datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return True
    return (time.time() if now is None else now) - at > seconds


def _status(drain: m.Drain, counts: m.Counts) -> DrainStatus:
    return DrainStatus(
        m.mask(drain.url),
        drain.token,
        drain.added_at,
        counts.sent,
        counts.dropped,
        counts.buffered,
        counts.error,
    )


def remove(ctx: Context, app: str, which: str) -> DrainStatus:
    """The drain goes (named by its URL, its masked URL or its token)."""
    ctx.store.app(app)
    found: list[m.Drain] = []

    def change(drains: list[m.Drain]) -> list[m.Drain]:
        found[:] = [d for d in drains if which.strip() in (d.url, m.mask(d.url), d.token)]
        if not found:
            raise NotFound(
                f"{app} has no drain {m.mask(which.strip())}", f"see `dynoform drains -a {app}`"
            )
        if len(found) > 1:  # masked URLs alike (keys in their queries): say which
            raise ValidationError(
                m.URL_FIELD,
                f"{m.mask(which.strip())} is {len(found)} drains: name one by its token",
            )
        return [d for d in drains if d not in found]

    _update(ctx.store.docs, app, change)
    if not read(ctx.store.docs, app).drains and not set_indexed(ctx.store.docs, app, False):
        accesslogs.ensure(ctx.aws, ctx.platform(create=False), False, ctx.target.is_local)
        ctx.say("no drain is left on the platform: the load balancer's access logs are off")
    return _status(found[0], m.Counts())
