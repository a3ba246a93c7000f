"""Build records: one document per build, its output kept beside it in S3."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from provisioner.errors import DynoformError
from provisioner.store import Store, now_iso, whoami

BUILD_FOLLOW_TIMEOUT = 20 * 60


def new_build_id() -> str:
    """Sortable by time, unique: b20261126031500-1a2b."""
    return f"b{datetime.now(UTC):%Y%m%d%H%M%S}-{secrets.token_hex(2)}"


def _key(app: str, build_id: str) -> str:
    return f"apps/{app}/builds/{build_id}.json"


def start_build(
    store: Store, app: str, build_id: str, description: str, source_sha: str, host: str = ""
) -> None:
    store.docs.put(
        _key(app, build_id),
        {
            "id": build_id,
            "app": app,
            "status": "pending",
            "description": description,
            "source_sha256": source_sha,
            "host": host,
            "created_at": now_iso(),
            "created_by": whoami(),
        },
    )


def finish_build(store: Store, app: str, build_id: str, **fields: Any) -> dict[str, Any]:
    doc = store.docs.get(_key(app, build_id))
    data = dict(doc.data if doc else {"id": build_id, "app": app})
    data.update(fields, finished_at=now_iso())
    store.docs.put(_key(app, build_id), data)
    return data


def list_builds(store: Store, app: str) -> list[dict[str, Any]]:
    prefix = f"apps/{app}/builds/"
    rows = []
    for key in sorted(store.docs.keys(prefix), reverse=True):
        doc = store.docs.get(key)
        if doc is not None:
            rows.append(dict(doc.data))
    return rows


def get_build(store: Store, app: str, build_id: str | None) -> dict[str, Any]:
    builds = list_builds(store, app)
    if not builds:
        raise DynoformError(f"{app} has no builds", "deploy first: dynoform deploy")
    if build_id is None:
        return builds[0]
    for build in builds:
        if build["id"] == build_id:
            return build
    raise DynoformError(f"{app} has no build {build_id}", "see `dynoform builds`")


def follow_build(
    rollout: Any, app: str, build: dict[str, Any], emit: Callable[[str], None]
) -> None:
    """Stream a running build's output from its build host until the build ends.

    `tail --pid` follows the runner's log and exits by itself when the build unit's process does.
    """
    from provisioner.build import build_layout
    from provisioner.ops.buildhost import stream

    host = next((h for h in rollout.fleet.hosts() if h.id == build.get("host")), None)
    if host is None:
        raise DynoformError(
            f"build {build['id']} runs on a host that is gone", "see `dynoform hosts`"
        )
    conn = rollout.fleet.connect(host)
    layout = build_layout(app, build["id"])
    pid = conn.run(["systemctl", "show", "-p", "MainPID", "--value", layout.unit]).stdout.strip()
    if not pid.isdigit() or pid == "0":
        emit(conn.run(["cat", layout.log], sudo=True).stdout.rstrip("\n"))
        return
    stream(conn, ["tail", "-n", "+1", "-F", f"--pid={pid}", layout.log], emit, BUILD_FOLLOW_TIMEOUT)
