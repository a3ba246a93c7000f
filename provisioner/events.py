"""The platform's event stream: what the controller did, one small document per event.

`events/<stamp>.json` holds every event; an event about an app is also written under
`apps/<app>/events/`, so that `dynoform logs` reads only its own app's and `apps:destroy` takes
them along. Keys sort by time (the stamp leads), so the newest are the last keys listed.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

from provisioner.aws.state import Documents

PLATFORM_PREFIX = "events/"
KEEP = 500  # events kept per stream; older ones are pruned by the controller


@dataclass(frozen=True)
class Event:
    at: float  # seconds since the epoch
    source: str  # who acted: controller
    message: str
    app: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        return cls(float(data["at"]), str(data["source"]), str(data["message"]), data.get("app"))


def app_prefix(app: str) -> str:
    return f"apps/{app}/events/"


def event_key(prefix: str, at: float) -> str:
    # Ten digits of seconds sort until the year 2286; the random tail keeps same-instant events.
    return f"{prefix}{at:017.6f}-{secrets.token_hex(3)}.json"


def record(
    docs: Documents, source: str, message: str, app: str | None = None, detail: str = ""
) -> Event:
    """Write an event; `detail` (a dyno's last log lines) goes only into the app's copy, which
    only the app's own logs show and `apps:destroy` deletes."""
    event = Event(time.time(), source, message, app)
    docs.put(event_key(PLATFORM_PREFIX, event.at), event.to_dict())
    if app:
        mine = Event(event.at, source, f"{message}{detail}", app)
        docs.put(event_key(app_prefix(app), event.at), mine.to_dict())
    return event


def recent(docs: Documents, limit: int = 20, app: str | None = None) -> list[Event]:
    """The newest `limit` events (oldest first), of one app when given."""
    if limit <= 0:
        return []  # nothing to list (controller:status polled by platform:destroy asks none)
    keys = docs.keys(app_prefix(app) if app else PLATFORM_PREFIX)
    result = []
    for key in sorted(keys)[-limit:]:
        doc = docs.get(key)
        if doc is not None:
            result.append(Event.from_dict(doc.data))
    return result


def newest_key(docs: Documents, app: str) -> str:
    """The key of the app's newest event ("" when none): where a tail starts."""
    keys = docs.keys(app_prefix(app))
    return max(keys) if keys else ""


def keys_after(docs: Documents, app: str, since: str) -> list[str]:
    return sorted(k for k in docs.keys(app_prefix(app)) if k > since)


def prune(docs: Documents, prefix: str, keep: int = KEEP) -> int:
    keys = sorted(docs.keys(prefix))
    old = keys[:-keep] if len(keys) > keep else []
    for key in old:
        docs.delete(key)
    return len(old)
