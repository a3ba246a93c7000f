"""Build records: one document per build, its output kept beside it in S3."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from provisioner.aws.blobs import build_log_key
from provisioner.build import neutralise
from provisioner.context import Context
from provisioner.errors import NotFound
from provisioner.store import Store, now_iso, whoami

BUILD_FOLLOW_TIMEOUT = 20 * 60
MAX_STORED_LOG_BYTES = 16 * 1024 * 1024
LOG_TRUNCATED = "(build output truncated: the stored log keeps the first 16 MB)"


class BuildLog:
    """A build's output on its way to the user and to the stored log that builds:output
    replays. Each line is neutralised for terminals and passed on at once; the stored copy is
    spooled to a temporary file (not memory), up to MAX_STORED_LOG_BYTES."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit
        self.file = tempfile.TemporaryFile()
        self.size = 0
        self.truncated = False

    def __call__(self, line: str) -> None:
        line = neutralise(line)
        self.emit(line)
        data = (line + "\n").encode()
        if self.size + len(data) <= MAX_STORED_LOG_BYTES:
            self.file.write(data)
            self.size += len(data)
        elif not self.truncated:
            self.truncated = True
            self.file.write((LOG_TRUNCATED + "\n").encode())

    def store(self, blobs: Any, key: str) -> None:
        self.file.seek(0)
        blobs.put_file(key, self.file)
        self.file.seek(0, 2)

    def __enter__(self) -> BuildLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.file.close()


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


def note(store: Store, app: str, build_id: str, **fields: Any) -> None:
    """Add fields to a running build's record (e.g. the buildpacks it resolved)."""
    doc = store.docs.get(_key(app, build_id))
    store.docs.put(_key(app, build_id), {**(doc.data if doc else {"id": build_id}), **fields})


def recent_builds(store: Store, app: str, limit: int) -> Iterator[dict[str, Any]]:
    """The app's newest build records, newest first, each read only when asked for (at most
    `limit`)."""
    for key in sorted(store.docs.keys(f"apps/{app}/builds/"), reverse=True)[:limit]:
        doc = store.docs.get(key)
        if doc is not None:
            yield dict(doc.data)


def list_builds(store: Store, app: str) -> list[dict[str, Any]]:
    prefix = f"apps/{app}/builds/"
    rows = []
    for key in sorted(store.docs.keys(prefix), reverse=True):
        doc = store.docs.get(key)
        if doc is not None:
            rows.append(dict(doc.data))
    return rows


def history(ctx: Context, app: str) -> list[dict[str, Any]]:
    """`builds`: the app's build records, newest first."""
    ctx.store.app(app)
    return list_builds(ctx.store, app)


def get_build(store: Store, app: str, build_id: str | None) -> dict[str, Any]:
    builds = list_builds(store, app)
    if not builds:
        raise NotFound(f"{app} has no builds", "deploy first: dynoform deploy")
    if build_id is None:
        return builds[0]
    for build in builds:
        if build["id"] == build_id:
            return build
    raise NotFound(f"{app} has no build {build_id}", "see `dynoform builds`")


def output(ctx: Context, app: str, build_id: str | None, emit: Callable[[str], None]) -> str:
    """builds:output: a running build's output followed live from its build host, else the
    stored output replayed; returns the build's status (after it ended, when followed)."""
    build = get_build(ctx.store, app, build_id)
    if build.get("status") in ("pending", "running") and build.get("host"):
        follow_build(ctx, app, build, emit)
        build = get_build(ctx.store, app, str(build["id"]))
        return str(build.get("status"))
    key = build_log_key(ctx.store.app_id(app), str(build["id"]))
    text = ctx.blobs().get_text(key)
    if text is None:
        ctx.say(f"build {build['id']} is {build['status']}; no output stored yet")
    for line in text.rstrip("\n").split("\n") if text else []:
        emit(neutralise(line))  # logs stored before output was neutralised, too
    return str(build.get("status"))


def follow_build(
    ctx: Context, app: str, build: dict[str, Any], emit: Callable[[str], None]
) -> None:
    """Stream a running build's output from its build host until the build ends.

    `tail --pid` follows the runner's log and exits by itself when the build unit's process does.
    """
    from provisioner.build import build_layout
    from provisioner.ops.buildhost import stream

    fleet = ctx.fleet()
    host = next((h for h in fleet.hosts() if h.id == build.get("host")), None)
    if host is None:
        raise NotFound(f"build {build['id']} runs on a host that is gone", "see `dynoform hosts`")
    conn = fleet.connect(host)
    layout = build_layout(app, build["id"])
    # The log is the build's own file: read as the build's user, never as root (a build could
    # leave a symlink there to a file only root may read).
    as_user = ["runuser", "-u", layout.user, "--"]
    pid = conn.run(["systemctl", "show", "-p", "MainPID", "--value", layout.unit]).stdout.strip()
    if not pid.isdigit() or pid == "0":
        text = conn.run([*as_user, "cat", layout.log], sudo=True).stdout.rstrip("\n")
        for line in text.split("\n") if text else []:
            emit(neutralise(line))
        return
    tail = ["tail", "-n", "+1", "-F", f"--pid={pid}", layout.log]
    stream(conn, [*as_user, *tail], lambda line: emit(neutralise(line)), BUILD_FOLLOW_TIMEOUT)
