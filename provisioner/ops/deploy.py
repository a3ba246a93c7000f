"""`dynoform deploy` and `git push`: source -> build on a fleet host -> slug in S3 -> release.

The app lease is held from the upload to the end of the rollout, so two deploys of one app
never interleave; the second fails at once naming the holder (or waits with --wait).
"""

from __future__ import annotations

import hashlib
import tarfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from provisioner import render
from provisioner.aws import blobs as keys
from provisioner.aws import instances
from provisioner.build import (
    MAX_SLUG_BYTES,
    BuildLayout,
    BuildResult,
    build_disk_bytes,
    build_layout,
)
from provisioner.context import Context
from provisioner.errors import DynoformError
from provisioner.model.app import App
from provisioner.model.appjson import initial_config, parse_app_json, parse_app_json_cron
from provisioner.model.release import Release
from provisioner.ops import (
    buildhost,
    buildpack_cache,
    builds,
    cron,
    repair,
    runtime_node,
    runtimes,
)
from provisioner.ops.releases import publish
from provisioner.ops.rollout import Observed, Rollout, current_formation, open_rollout
from provisioner.ops.runtime_python import PYTHON
from provisioner.ops.runtime_uv import UV
from provisioner.ops.source import Source, package_commit, package_source
from provisioner.plan.rollout import RolloutOptions
from provisioner.remote.ssh import Connection
from provisioner.store import Store, now_iso, whoami

if TYPE_CHECKING:
    from provisioner.aws.blobs import Blobs
    from provisioner.model.formation import Formation

Say = Callable[[str], None]
T = TypeVar("T")
# The languages whose version a source may ask for (.python-version, engines.node...), and uv.
# uv last: it names no file and every build gets it (the python buildpack installs with it).
RUNTIME_KINDS: tuple[runtimes.Kind, ...] = (PYTHON, runtime_node.NODE, UV)


@dataclass(frozen=True)
class Built:
    """A build that succeeded, and what runs beside its slug's upload."""

    result: BuildResult
    delivered: Future[None]  # the slug in the bucket, the build's files gone from the host
    observed: Future[Observed]  # the hosts, looked at when the build's command returned
    formation: Future[tuple[Formation, str | None]]  # the app's formation, read then too


@dataclass(frozen=True)
class DeployResult:
    release: Release
    build_id: str
    buildpack: str


def build_host(hosts: list[instances.Host], app: str) -> instances.Host:
    """The same host for an app's builds while the fleet is unchanged: its cache stays warm."""
    if not hosts:
        raise DynoformError("no usable hosts to build on", "add some: dynoform hosts:add --count 2")
    ordered = sorted(hosts, key=lambda h: h.id)
    index = int(hashlib.sha256(app.encode()).hexdigest(), 16) % len(ordered)
    return ordered[index]


def deploy(
    ctx: Context,
    app: str,
    source: Source,
    on_output: Say,
    wait: bool = False,
    max_slug_bytes: int | None = None,
    options: RolloutOptions | None = None,
) -> DeployResult:
    """Build the source on a fleet host and roll the app's dynos to the new release."""
    record = ctx.store.app(app)
    # Reach the hosts (the platform's record, EC2, the host records, SSH connections: ~0.1 s)
    # while the lease is taken and the source uploaded. This only chooses the build host among
    # the hosts that answer, so it need not wait for the lease; the rollout looks at what runs
    # after the build, over the connections made here. The platform's record is read in that
    # thread too: this one needs the Rollout only once it waits for the answer.
    opened: Future[Rollout[Connection]] = Future()
    reaching = _background(lambda: _reach(ctx, app, options, opened))
    try:
        with repair.changing(ctx, app, "deploy", wait=wait):
            return _deploy_locked(ctx, record, source, on_output, max_slug_bytes, reaching)
    finally:
        # Opening the rollout makes or completes the platform when its record is missing or
        # stale: a deploy that fails meanwhile (its app busy) still lets that finish, as it
        # did when the rollout was opened before the lease.
        opened.exception()  # waits for it, raising nothing


def _reach(
    ctx: Context, app: str, options: RolloutOptions | None, opened: Future[Rollout[Connection]]
) -> tuple[Rollout[Connection], instances.Host]:
    """The rollout and the host to build on, with connections open to it and to the hosts the
    rollout will likely look at: those that may hold the app's dynos, or every ready host when
    the app has no record of them. (The rollout reads that record again under the lease: this
    is only a head start.)"""
    try:
        rollout = open_rollout(ctx, options)
    except BaseException as exc:
        opened.set_exception(exc)
        raise
    opened.set_result(rollout)
    recorded = rollout.store.dyno_hosts(app)
    ready = rollout.fleet.ready()
    first = build_host(ready, app)
    looked = [h for h in ready if h.id != first.id and (recorded is None or h.id in recorded)]
    answered = rollout.reachable([first, *looked])
    if first not in answered:  # the app's usual build host is down: any that answers
        first = build_host(rollout.reachable(ready), app)
    return rollout, first


def deploy_dir(
    ctx: Context,
    app: str,
    path: Path | str = ".",
    ref: str | None = None,
    on_output: Say | None = None,
    wait: bool = False,
    boot_timeout: float = 60.0,
    max_slug_mb: int = 500,
) -> DeployResult:
    """`dynoform deploy`: the directory's source (git HEAD's committed tree when it is a
    repository, or the commit `ref`; else its files), built and released. Build output goes to
    on_output (default: ctx.say); web dynos have boot_timeout seconds to bind $PORT."""
    started = time.monotonic()
    source = package(Path(path), ref)
    ctx.say(f"-----> Deploying {app}: {source.description}")
    options = RolloutOptions(boot_timeout_s=boot_timeout, settle_s=1.0)
    try:
        output = on_output or ctx.say
        result = deploy(ctx, app, source, output, wait, max_slug_mb * 1024 * 1024, options)
    finally:
        source.tarball.unlink(missing_ok=True)
    ctx.say(
        f"-----> Released v{result.release.version} of {app} ({result.buildpack}) "
        f"in {time.monotonic() - started:.1f} s"
    )
    return result


def _deploy_locked(
    ctx: Context,
    record: App,
    source: Source,
    on_output: Say,
    max_slug_bytes: int | None,
    reaching: Future[tuple[Rollout[Connection], instances.Host]],
) -> DeployResult:
    store, blobs, say = ctx.store, ctx.blobs(), ctx.say
    app, app_id = record.name, record.app_id  # the bucket keys everything of the app's by its id
    source_sha = keys.sha256_file(source.tarball)
    blobs.upload_if_absent(keys.source_key(app_id, source_sha), source.tarball)
    build_id = builds.new_build_id()
    app_json = read_app_json(source)
    cron_entries = app_json_cron(app_json)
    first_deploy_config(store, app, app_json)
    # Config changes take the app's lease, held here: what the build gets is what the
    # release records.
    config, _ = store.config(app)
    # Asked before the hosts' answer, which this thread waits for: only builds of the app
    # write its cache, and they hold the lease.
    had_cache = blobs.exists(keys.cache_key(app_id))
    rollout, host = reaching.result()
    builds.start_build(store, app, build_id, source.description, source_sha, host.id)
    say(f"building {app} on {host.id} ({host.private_ip})")
    releases: Future[tuple[int, Release | None]] = Future()

    def during_build() -> None:
        # The app's releases are read (the lease keeps them as they are) and the dyno unit's
        # template made ready for the rollout while the build runs, not before its first
        # round trip goes out: before it, their CPU (~25 ms) held this thread back.
        _run(releases, lambda: _known_releases(store, app))
        _background(render.preload_dyno_unit)

    with builds.BuildLog(on_output) as log:
        log_key = keys.build_log_key(app_id, build_id)
        try:
            built = _build(
                rollout, host, record, build_id, source, source_sha, config, log,
                max_slug_bytes, had_cache, during_build,
            )  # fmt: skip
        except BaseException as exc:
            # Ctrl-C too: the build's record must not stay pending for ever.
            error = exc.message if isinstance(exc, DynoformError) else "interrupted"
            builds.finish_build(store, app, build_id, status="failed", error=error)
            log.store(blobs, log_key)
            raise
        # The log stored while the release is made; the build's record says it ended only
        # after that.
        logged = _background(lambda: log.store(blobs, log_key))
        newest, previous = releases.result()
        return _release(
            rollout, record, build_id, source, built, config, newest, previous, logged,
            cron_entries, host, on_output,
        )  # fmt: skip


def _known_releases(store: Store, app: str) -> tuple[int, Release | None]:
    """The app's newest release number and the release that serves (None: none yet)."""
    versions = store.release_versions(app)
    for version in reversed(versions):
        release = store.release(app, version)
        if release.status == "succeeded":
            return versions[-1], release
    return (versions[-1] if versions else 0), None


def _release(
    rollout: Rollout,
    record: App,
    build_id: str,
    source: Source,
    built: Built,
    config: dict[str, str],
    newest: int,
    previous: Release | None,
    logged: Future[None],
    cron_entries: list[tuple[str, str]],
    host: instances.Host,
    on_output: Say,
) -> DeployResult:
    """The built slug released and rolled out; the build's record finished. The release's
    records are written while the slug is uploaded; no dyno starts before it is in the bucket."""
    store, say = rollout.store, rollout.say
    app, app_id = record.name, record.app_id
    result = built.result
    template = Release(
        version=1,
        description=source.description,
        created_by=whoami(),
        created_at=now_iso(),
        slug_key=keys.slug_key(app_id, result.sha256),
        slug_sha256=result.sha256,
        slug_size=result.size,
        process_types=result.process_types,
        release_command=result.release_command,
        build_id=build_id,
    )

    def activate(app_name: str, release: Release, cfg: dict[str, str]) -> None:
        formation = current_formation(store, app_name, release, built.formation.result())
        for line in dropped_types(previous, release):
            say(line)
        seen = built.observed.result()
        _delivered(built.delivered)
        if release.release_command:
            run_release_phase(rollout, app_name, release, cfg, on_output)
            seen = rollout.observe()  # the release phase's one-off dyno ran meanwhile
        rollout.converge(app_name, release, cfg, formation, observed=seen)

    try:
        release = publish(store, app, template, config, activate, newest=newest)
    except DynoformError as exc:
        _log_stored(logged, say)
        if _settled(built.delivered):
            builds.finish_build(
                store, app, build_id, status="succeeded", release_failed=exc.message
            )
        else:  # the slug never reached the bucket: the build did not finish
            builds.finish_build(store, app, build_id, status="failed", error=exc.message)
        raise
    except BaseException:
        _settled(built.delivered)  # Ctrl-C: the upload ends (and cleans up) before we exit
        raise
    _log_stored(logged, say)
    builds.finish_build(
        store,
        app,
        build_id,
        status="succeeded",
        release=release.version,
        slug_sha256=result.sha256,
        buildpack=result.buildpack,
        host=host.id,
    )
    for change in cron.sync_app_json(store, app, cron_entries):
        say(f"app.json: {change}")
    return DeployResult(release, build_id, result.buildpack)


def _delivered(delivering: Future[None]) -> None:
    """Wait for the slug's upload; any failure of it is the deploy's clear error."""
    try:
        delivering.result()
    except DynoformError:
        raise
    except Exception as exc:  # noqa: BLE001 - an SSH or S3 error: say what failed
        raise DynoformError(
            f"could not upload the slug from the build host: {exc}",
            "check the build host and the bucket, then deploy again",
        ) from exc


def _settled(delivering: Future[None]) -> bool:
    """Wait for the slug's upload to end; whether it succeeded."""
    try:
        delivering.result()
    except BaseException:  # noqa: BLE001 - reported by _delivered where it matters
        return False
    return True


def _log_stored(logged: Future[None], say: Say) -> None:
    """Wait for the build log's upload; a failed one is reported, the release stands."""
    try:
        logged.result()
    except Exception as exc:  # noqa: BLE001 - the log is a record of the build, not the release
        say(f"warning: storing the build log failed: {exc}")


def _background(work: Callable[[], T]) -> Future[T]:
    """work() in a daemon thread of its own; its result (or exception) from the Future. A
    daemon: a command that fails meanwhile (its app busy, Ctrl-C) exits without waiting for
    work it no longer needs, such as a look at an unreachable host."""
    future: Future[T] = Future()
    _run(future, work)
    return future


def _run(future: Future[T], work: Callable[[], T]) -> None:
    """work() in a daemon thread (see _background), its result into `future`."""

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(work())
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for the result
            future.set_exception(exc)

    threading.Thread(target=run, name="deploy-background", daemon=True).start()


def dropped_types(previous: Release | None, release: Release) -> list[str]:
    """Warnings for process types the new release no longer has: their dynos stop."""
    if previous is None:
        return []
    gone = sorted(set(previous.process_types) - set(release.process_types))
    lines = []
    for kind in gone:
        effect = "the app stops serving requests" if kind == "web" else f"its {kind} dynos stop"
        lines.append(f"warning: v{release.version} has no {kind!r} process type: {effect}")
    return lines


def _build(
    rollout: Rollout,
    host: instances.Host,
    record: App,
    build_id: str,
    source: Source,
    source_sha: str,
    config: dict[str, str],
    output: Say,
    max_slug_bytes: int | None,
    had_cache: bool,
    during_build: Callable[[], None],
) -> Built:
    """The build run on `host`. Its slug is uploaded in the background (Built.delivered)."""
    store, blobs = rollout.store, rollout.blobs
    app = record.name
    conn = rollout.fleet.connect(host)
    layout = build_layout(app, build_id)
    slug_limit = max_slug_bytes or MAX_SLUG_BYTES
    disk = build_disk_bytes(slug_limit)
    node = buildhost.needs_node(source_names(source.tarball))
    if node and not runtime_node.asked(source.tarball):  # Debian's: the app asks no version
        buildhost.ensure_node(conn, rollout.say)
    app_id = record.app_id
    cache_key = keys.cache_key(app_id)
    source_in = blobs.get_url(keys.source_key(app_id, source_sha))
    cache_in = blobs.get_url(cache_key) if had_cache else None
    during_build()
    # One round trip makes the app's user, the build's tmpfs, its config and its inputs.
    prepared = buildhost.prepare(conn, layout, config, source_in, cache_in, disk)
    buildhost.ensure_tooling(conn, prepared.tooling)
    looks: list[tuple[Future[Observed], Future[tuple[Formation, str | None]]]] = []

    def look_again() -> None:
        # The hosts again (what runs may have changed during the build) and the formation,
        # as soon as the build's command returned: the rollout needs both once the slug is in.
        # Only the hosts that may hold the app's dynos, as the record says now (under the
        # lease): the rollout looks at the rest of the fleet only when a dyno has to be
        # placed anew.
        observed = _background(lambda: rollout.observe_app(app))
        looks.append((observed, _background(lambda: store.formation(app))))

    handed = False
    try:
        packs = buildpack_cache.resolve_all(blobs, app_id, record.buildpacks, output)
        if packs:  # what each resolved to, for apps:info and `builds --json`
            builds.note(store, app, build_id, buildpacks=[p.to_dict() for p in packs])
        buildpacks = buildhost.stage_buildpacks(conn, layout, packs, blobs) or None
        asked = runtimes.for_build(
            conn, blobs, source.tarball, RUNTIME_KINDS, rollout.say, output, prepared.host
        )
        result, cached = buildhost.run_build(
            conn, layout, output, buildpacks, source.commit, slug_limit, disk, asked, look_again
        )
        upload = _Upload(blobs, conn, layout, app_id, result.sha256, cached, had_cache)
        delivering = _background(upload.run)
        handed = True
    finally:
        if not handed:
            buildhost.cleanup(conn, layout)
    observed, formation = looks[0]  # run_build looked again before it returned
    return Built(result, delivering, observed, formation)


@dataclass(frozen=True)
class _Upload:
    """The slug to the bucket (unless it has it) and the host's cache when the bucket has none
    (a build that left its cache unchanged writes none: the host's copy is the one to upload);
    the build's files removed on the host either way."""

    blobs: Blobs
    conn: Connection
    layout: BuildLayout
    app_id: str
    sha256: str
    cached: bool
    had_cache: bool

    def run(self) -> None:
        blobs = self.blobs
        try:
            slug = keys.slug_key(self.app_id, self.sha256)
            slug_url = None if blobs.exists(slug) else blobs.put_url(slug)
            cache_url = None if self.had_cache else blobs.put_url(keys.cache_key(self.app_id))
            buildhost.deliver(self.conn, self.layout, self.cached, slug_url, cache_url)
        except BaseException:
            buildhost.cleanup(self.conn, self.layout)
            raise


def read_app_json(source: Source) -> str | None:
    with tarfile.open(source.tarball) as tar:
        member = next((m for m in tar.getmembers() if m.name.lstrip("./") == "app.json"), None)
        handle = tar.extractfile(member) if member is not None else None
        return handle.read().decode("utf-8") if handle is not None else None


def app_json_cron(text: str | None) -> list[tuple[str, str]]:
    """app.json's cron entries, checked before the deploy changes anything."""
    entries = parse_app_json_cron(text) if text is not None else []
    cron.check_app_json(entries)
    return entries


def first_deploy_config(store: Store, app: str, text: str | None) -> None:
    """On the first deploy, app.json's `env` fills in config vars not set yet."""
    if text is None:
        return
    # Newest first, stopping at the first built release: one read, not one per release
    # (an app with 50 releases spent 0.2 s here on every deploy).
    for version in reversed(store.release_versions(app)):
        if store.release(app, version).slug_key:
            return
    current, etag = store.config(app)
    added = initial_config(parse_app_json(text), current)
    if added:
        store.save_config(app, {**current, **added}, etag)


def source_names(tarball: Path) -> list[str]:
    with tarfile.open(tarball) as tar:
        return tar.getnames()


def run_release_phase(
    rollout: Rollout,
    app: str,
    release: Release,
    config: dict[str, str],
    on_output: Say,
) -> None:
    """Heroku's release phase: the Procfile's `release:` command in a one-off dyno first."""
    # Imported here: one-off dynos bring IAM and metrics modules (~8 ms) that a deploy without
    # a release command never uses.
    from provisioner.ops.oneoff import run_oneoff

    rollout.say(f"running release command: {release.release_command}")
    code = run_oneoff(rollout, app, release, config, str(release.release_command), on_output)
    if code != 0:
        raise DynoformError(
            f"release command failed with exit status {code}; v{release.version} is not deployed",
            "fix the release command; the previous release keeps serving",
        )


def package(path: Path, ref: str | None) -> Source:
    """A tarball of the commit ref of the repository at path, or of what the directory holds."""
    return package_commit(path, ref) if ref else package_source(path)
