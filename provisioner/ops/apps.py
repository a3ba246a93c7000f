"""App lifecycle: create, list, info, rename, repair, plain HTTP, destroy."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from provisioner.aws.blobs import Blobs, app_prefixes
from provisioner.aws.state import StaleWrite
from provisioner.context import Context
from provisioner.errors import Conflict, DynoformError, NoPlatform
from provisioner.model.addons import Addon
from provisioner.model.app import App
from provisioner.model.appnames import random_app_name
from provisioner.model.formation import ProcessFormation
from provisioner.model.names import validate_app_name
from provisioner.model.release import Release
from provisioner.ops import addons, buildpacks, certs, drains, repair, router
from provisioner.ops.rollout import activator, open_rollout
from provisioner.plan.buildpacks import mask
from provisioner.store import DESTROY_OPERATION, MAX_CONFLICT_RETRIES, Store

# Rolls an app's dynos to a release with its config (rollout.activator).
Activate = Callable[[str, Release, dict[str, str]], None]


@dataclass(frozen=True)
class AppRow:
    """One line of `dynoform apps`."""

    name: str
    release: str | None  # "v3"; None before the first release
    error: str | None = None  # the app's records are damaged (the other apps are still listed)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "release": self.release}
        return data if self.error is None else {**data, "error": self.error}


@dataclass(frozen=True)
class AppInfo:
    name: str
    id: str
    web_url: str | None
    release: int | None  # the version that serves
    stack: str
    buildpacks: list[str]
    created_at: str | None
    formation: dict[str, ProcessFormation]
    # Each buildpack with what the latest build resolved it to (commit, sha256).
    buildpacks_resolved: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "id": self.id,
            "web_url": self.web_url,
            "release": self.release,
            "stack": self.stack,
            "buildpacks": self.buildpacks,
            "buildpacks_resolved": self.buildpacks_resolved,
            "created_at": self.created_at,
            "formation": {k: v.to_dict() for k, v in sorted(self.formation.items())},
        }


def create(ctx: Context, name: str | None = None) -> App:
    """A new app (a random free name when none is given)."""
    store = ctx.store
    if name is not None:
        return store.create_app(validate_app_name(name))
    for _ in range(20):
        candidate = random_app_name()
        if not store.app_exists(candidate):
            return store.create_app(candidate)
    raise DynoformError("could not find a free random app name", "give a name")


def get(ctx: Context, app: str) -> App:
    """The app's record (NotFound when there is no such app)."""
    return ctx.store.app(app)


def list_apps(ctx: Context) -> list[AppRow]:
    """Every app with the release that serves it."""
    store = ctx.store
    rows = []
    for name in store.apps():
        try:
            current = store.current_release(name)
        except DynoformError as exc:  # one app's damaged record must not hide the others
            rows.append(AppRow(name, None, exc.message))
            continue
        rows.append(AppRow(name, f"v{current.version}" if current else None))
    return rows


def info(ctx: Context, app: str) -> AppInfo:
    """The app as it runs (an idle app an interrupted command left half-way is repaired first)."""
    repair.settle(ctx, app)
    store = ctx.store
    record = store.app(app)
    current = store.current_release(app)
    formation, _ = store.formation(app)
    return AppInfo(
        name=app,
        id=record.app_id,
        web_url=router.web_url(ctx, app),
        release=current.version if current else None,
        stack=record.stack,
        buildpacks=[mask(p) for p in record.buildpacks],
        created_at=record.created_at,
        formation=formation,
        buildpacks_resolved=buildpacks.resolved(store, app, record.buildpacks),
    )


def repair_app(ctx: Context, app: str, wait: bool = False) -> list[str]:
    """`apps:repair`: records and dynos brought to one truth; what changed, one line each."""
    ctx.store.app(app)
    return repair.repair_app(ctx, app, wait)


def set_plain_http(ctx: Context, app: str, allow: bool) -> App:
    """Serve the app on plain HTTP too (allow), or redirect plain HTTP to HTTPS (the default)."""
    record = ctx.store.update_app(app, lambda a: replace(a, plain_http=allow))
    router.sync_rules(ctx, record)
    return record


def add_git_remote(app: str, cwd: str | None = None) -> str | None:
    """Add (or point) the `dynoform` remote at the app; returns what changed, or None outside git."""
    inside = subprocess.run(
        ["git", "rev-parse", "--is-inside-work-tree"], capture_output=True, text=True, cwd=cwd
    )
    if inside.returncode != 0:
        return None
    url = f"dynoform::{app}"
    existing = subprocess.run(
        ["git", "remote", "get-url", "dynoform"], capture_output=True, text=True, cwd=cwd
    )
    verb = "set-url" if existing.returncode == 0 else "add"
    subprocess.run(["git", "remote", verb, "dynoform", url], check=True, cwd=cwd)
    return f"git remote dynoform -> {url}"


def delete_app_objects(
    store: Store, blobs: Blobs, app: str, app_id: str, say: Callable[[str], None]
) -> None:
    """The app's slugs, sources, build cache and logs: exactly what its id keys.

    Kept while another app record has the same id (a rename cut short left both names), so
    destroying one of the two never takes the other's slugs.
    """
    sharing = [a for a in store.apps_with_id(app_id) if a != app]
    if sharing:
        say(f"kept the slugs and build objects of {app}: {', '.join(sharing)} has them too")
        return
    for prefix in app_prefixes(app_id):
        blobs.delete_prefix(prefix)


def remove_from_hosts(ctx: Context, app: str) -> bool:
    """The app's dynos, router rule and target group, release directories and user on hosts;
    False when there is no platform (so nothing there)."""
    try:
        ctx.platform(create=False)
    except NoPlatform:
        return False
    open_rollout(ctx).remove_app(app)
    return True


def destroy(ctx: Context, app: str, wait: bool = False) -> int:
    """Remove the app's dynos and router entries, its certificates, its stored objects, its
    add-ons (its attachments to others' go), then its records; returns how many records went.

    All of it under the app's lease (waiting for a heal of the controller, like any command):
    a heal, a scale or a deploy that came meanwhile would start dynos, re-create the app's user
    and unpack a slug being deleted on the hosts just cleaned. Whoever waited for the lease
    finds the app gone."""
    ctx.store.app(app)  # no such app: said before any lease is written
    with ctx.store.lease(app, DESTROY_OPERATION, wait=wait):
        app_id = ctx.store.app_id(app)  # again under the lease: a second destroy finds it gone
        remove_from_hosts(ctx, app)
        certs.destroy_app_certs(ctx, app)
        delete_app_objects(ctx.store, ctx.blobs(), app, app_id, ctx.say)
        addons.destroy_app_addons(ctx, app)
        ctx.store.docs.delete_prefix(drains.stats_prefix(app))  # the shippers' figures
        return ctx.store.delete_app(app)


def rename(ctx: Context, old: str, new: str, wait: bool = False) -> App:
    """Rename an app: its dynos start under the new name before the old ones stop.

    The new name's record is created only if the name is free, so of two renames (or a rename
    and an apps:create) to one name exactly one wins. The app keeps its id, and with it its
    slugs, sources, build caches and logs; add-on records follow to the new name. An app with
    dynos is started under the new name first: the old name keeps serving until the new one
    does, and if that fails the new name is removed again. Then what the platform holds under
    the old name goes, its certificates move, and its rules follow to the new name.
    """
    validate_app_name(new)
    ctx.store.app(old)
    if ctx.store.app_exists(new):
        raise Conflict(f"app {new!r} already exists", "choose another name")
    activate = activator(ctx)

    def start_under_new_name(name: str, release: Release, config: dict[str, str]) -> None:
        try:
            activate(name, release, config)
        except BaseException:
            remove_from_hosts(ctx, name)  # what the new name got before it failed
            raise

    with (
        repair.changing(ctx, old, "rename", wait=wait),
        repair.changing(ctx, new, f"rename from {old}", wait=wait, exists=False),
    ):
        _move_records(ctx.store, old, new, start_under_new_name)
    _move_platform_entries(ctx, old, new)
    return ctx.store.app(new)


def _move_records(store: Store, old: str, new: str, activate: Activate) -> None:
    """Claim the new name, copy the app's documents there, start it there, drop the old."""
    record = store.app(old)
    formation, _ = store.formation(old)
    running = any(pf.quantity for pf in formation.values())
    store.claim_app(replace(record, name=new, id=record.app_id))
    try:
        _copy_documents(store, old, new)
        release = store.current_release(new) if running else None
        if release is not None and release.slug_key:
            config = store.release_config(new, release.version) or store.config(new)[0]
            activate(new, release, config)
    except BaseException:
        store.docs.delete_prefix(f"apps/{new}/")
        raise
    store.move_domains(old, new)
    rename_in_addons(store, old, new, record.app_id)
    store.docs.delete_prefix(f"apps/{old}/")


def _move_platform_entries(ctx: Context, old: str, new: str) -> None:
    """What the platform holds under the old name goes (its dynos, which the new name now
    runs, its rule and directories); certificates move; custom domains route to the new name."""
    if not remove_from_hosts(ctx, old):
        return
    certs.rename_app_certs(ctx, old, new)
    record = ctx.store.app(new)
    if record.domains or record.maintenance or record.plain_http:
        router.sync_rules(ctx, record)
    if record.domains:
        certs.sync(ctx, new)  # served by the new name's load balancer


def _copy_documents(store: Store, old: str, new: str) -> None:
    """Every document of the app but its record (claimed already) under the new name."""
    docs = store.docs
    for key in docs.keys(f"apps/{old}/"):
        rest = key[len(f"apps/{old}/") :]
        doc = docs.get(key) if rest != "app.json" else None
        if doc is not None:
            docs.put(f"apps/{new}/{rest}", doc.data)


def rename_in_addons(store: Store, old: str, new: str, app_id: str) -> None:
    """Add-on records name their owner and attached apps: the renamed app's entries follow it
    (each record changed conditionally, so a concurrent add-on change is not overwritten)."""
    for key in store.docs.keys("addons/"):
        if key.count("/") != 1:
            continue
        for _ in range(MAX_CONFLICT_RETRIES):
            doc = store.docs.get(key)
            if doc is None:
                break
            addon = Addon.from_dict(dict(doc.data))
            if not addon.rename_app(old, app_id, new):
                break
            try:
                store.docs.update(key, addon.to_dict(), doc.etag)
                break
            except StaleWrite:
                continue
