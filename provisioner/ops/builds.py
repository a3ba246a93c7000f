"""Build records: one document per build, its output kept beside it in S3."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from provisioner.errors import DynoformError
from provisioner.store import Store, now_iso, whoami


def new_build_id() -> str:
    """Sortable by time, unique: b20261126031500-1a2b."""
    return f"b{datetime.now(UTC):%Y%m%d%H%M%S}-{secrets.token_hex(2)}"


def _key(app: str, build_id: str) -> str:
    return f"apps/{app}/builds/{build_id}.json"


def start_build(store: Store, app: str, build_id: str, description: str, source_sha: str) -> None:
    store.docs.put(
        _key(app, build_id),
        {
            "id": build_id,
            "app": app,
            "status": "pending",
            "description": description,
            "source_sha256": source_sha,
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
