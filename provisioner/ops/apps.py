"""App lifecycle on the state store: create, info, rename, destroy."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

from provisioner.aws.blobs import Blobs, app_prefixes
from provisioner.aws.state import StaleWrite
from provisioner.context import Context
from provisioner.errors import Conflict, DynoformError, NoPlatform
from provisioner.model.addons import Addon
from provisioner.model.appnames import random_app_name
from provisioner.model.names import validate_app_name
from provisioner.model.release import Release
from provisioner.ops import addons, certs
from provisioner.ops.rollout import open_rollout
from provisioner.store import MAX_CONFLICT_RETRIES, Store, app_id_of

# Rolls an app's dynos to a release with its config (rollout.activator).
Activate = Callable[[str, Release, dict[str, str]], None]


def create_app(store: Store, name: str | None) -> dict[str, Any]:
    if name is not None:
        return store.create_app(validate_app_name(name))
    for _ in range(20):
        candidate = random_app_name()
        if not store.app_exists(candidate):
            return store.create_app(candidate)
    raise DynoformError("could not find a free random app name", "give a name")


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


def app_info(store: Store, app: str, web_url: str | None) -> dict[str, Any]:
    record = store.app(app)
    current = store.current_release(app)
    formation, _ = store.formation(app)
    return {
        "name": app,
        "id": app_id_of(record),
        "web_url": web_url,
        "release": current.version if current else None,
        "stack": record.get("stack", "debian-13"),
        "buildpacks": record.get("buildpacks", []),
        "created_at": record.get("created_at"),
        "formation": {k: v.to_dict() for k, v in sorted(formation.items())},
    }


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


def destroy(ctx: Context, app: str) -> None:
    """Remove the app's dynos and router entries, its certificates, its stored objects, then
    its add-ons (its attachments to others' go)."""
    app_id = ctx.store.app_id(app)
    remove_from_hosts(ctx, app)
    certs.destroy_app_certs(ctx, app)
    delete_app_objects(ctx.store, ctx.blobs(), app, app_id, ctx.say)
    addons.destroy_app_addons(ctx, app)


def rename_app(store: Store, old: str, new: str, activate: Activate | None = None) -> None:
    """Claim the new name, copy the app's documents there, start it there, then drop the old.

    The new name's record is created only if the name is free, so of two renames (or a rename
    and an apps:create) to one name exactly one wins. The app keeps its id, and with it its
    slugs, sources, build caches and logs; add-on records follow to the new name. An app with
    dynos is started under the new name first (`activate`): the old name keeps serving until
    the new one does, and if that fails the new name is removed again.
    """
    validate_app_name(new)
    store.app(old)
    if store.app_exists(new):
        raise Conflict(f"app {new!r} already exists", "choose another name")
    with store.lease(old, "rename"), store.lease(new, f"rename from {old}"):
        record = store.app(old)
        app_id = app_id_of(record)
        formation, _ = store.formation(old)
        running = any(pf.quantity for pf in formation.values())
        if running and activate is None:
            raise DynoformError(
                f"{old} has running dynos",
                f"scale them to 0 first: dynoform ps:scale -a {old} web=0",
            )
        store.claim_app(new, dict(record, name=new, id=app_id))
        try:
            _copy_documents(store, old, new)
            release = store.current_release(new) if running else None
            if activate is not None and release is not None and release.slug_key:
                config = store.release_config(new, release.version) or store.config(new)[0]
                activate(new, release, config)
        except BaseException:
            store.docs.delete_prefix(f"apps/{new}/")
            raise
        store.move_domains(old, new)
        rename_in_addons(store, old, new, app_id)
        store.docs.delete_prefix(f"apps/{old}/")


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
