"""The app record: what `apps/<app>/app.json` in the state store holds.

Documents written by older versions lack some keys (no `id` before ids existed, no `domains`
before custom domains, ...). A record read from such a document writes back exactly what it
read: keys the document lacked stay absent while they keep their default, and keys this version
does not know are kept as they were.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

DEFAULT_STACK = "debian-13"
# The keys this version knows, in the order documents are written.
KNOWN = ("name", "id", "created_at", "stack", "buildpacks", "domains", "maintenance", "plain_http")


@dataclass(frozen=True)
class App:
    name: str
    id: str | None = None  # None: an app from before ids, whose id is its name (see app_id)
    created_at: str | None = None
    stack: str = DEFAULT_STACK
    buildpacks: tuple[str, ...] = ()  # empty: detected at each build
    domains: tuple[str, ...] = ()  # custom domains routed to the app
    maintenance: bool = False  # the router answers 503 with a page
    plain_http: bool = False  # serve plain HTTP instead of redirecting it to HTTPS
    # What the document held beyond the known keys, and which known keys it lacked: both only
    # so that to_dict() gives back the document from_dict() read.
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    absent: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    @property
    def app_id(self) -> str:
        """The app's immutable id; an app created before ids existed keeps its name as its id."""
        return str(self.id or self.name)

    @property
    def identity(self) -> str:
        """What tells an app from a later one of the same name, for domain claims: its id
        (records from before ids: the creation time, as their id is their name)."""
        return str(self.id or self.created_at)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> App:
        return cls(
            name=str(data["name"]),
            id=None if data.get("id") is None else str(data["id"]),
            created_at=None if data.get("created_at") is None else str(data["created_at"]),
            stack=str(data.get("stack", DEFAULT_STACK)),
            buildpacks=tuple(str(p) for p in data.get("buildpacks") or ()),
            domains=tuple(str(d) for d in data.get("domains") or ()),
            maintenance=bool(data.get("maintenance", False)),
            plain_http=bool(data.get("plain_http", False)),
            extra={k: v for k, v in data.items() if k not in KNOWN},
            absent=frozenset(k for k in KNOWN if k not in data),
        )

    def to_dict(self) -> dict[str, Any]:
        defaults = {f.name: _default(f) for f in fields(self) if f.name in KNOWN}
        data: dict[str, Any] = {}
        for key in KNOWN:
            value = getattr(self, key)
            if key in self.absent and value == defaults[key]:
                continue  # the document had no such key, and nothing set it since
            data[key] = list(value) if isinstance(value, tuple) else value
        return {**data, **self.extra}


def _default(spec: Any) -> Any:
    return spec.default_factory() if callable(spec.default_factory) else spec.default
