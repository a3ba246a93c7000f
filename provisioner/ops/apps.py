"""App lifecycle on the state store: create, info, rename, destroy."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

from provisioner.errors import DynoformError
from provisioner.model.appnames import random_app_name
from provisioner.model.names import validate_app_name
from provisioner.model.release import Release
from provisioner.store import Store

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
        "web_url": web_url,
        "release": current.version if current else None,
        "stack": record.get("stack", "debian-13"),
        "buildpacks": record.get("buildpacks", []),
        "created_at": record.get("created_at"),
        "formation": {k: v.to_dict() for k, v in sorted(formation.items())},
    }


def rename_app(store: Store, old: str, new: str, activate: Activate | None = None) -> None:
    """Copy every document of the app to the new name, then remove the old ones.

    An app with dynos is started under the new name first (`activate`): the old name keeps
    serving until the new one does, and if that fails the new name is removed again.
    """
    validate_app_name(new)
    store.app(old)
    if store.app_exists(new):
        raise DynoformError(f"app {new!r} already exists", "choose another name")
    with store.lease(old, "rename"):
        formation, _ = store.formation(old)
        running = any(pf.quantity for pf in formation.values())
        if running and activate is None:
            raise DynoformError(
                f"{old} has running dynos",
                f"scale them to 0 first: dynoform ps:scale -a {old} web=0",
            )
        docs = store.docs
        for key in docs.keys(f"apps/{old}/"):
            doc = docs.get(key)
            if doc is None:
                continue
            data = doc.data
            if key.endswith("/app.json"):
                data = dict(data, name=new)
            docs.put(f"apps/{new}/" + key[len(f"apps/{old}/") :], data)
        release = store.current_release(new) if running else None
        if activate is not None and release is not None and release.slug_key:
            try:
                config = store.release_config(new, release.version) or store.config(new)[0]
                activate(new, release, config)
            except BaseException:
                docs.delete_prefix(f"apps/{new}/")
                raise
        store.move_domains(old, new)
        docs.delete_prefix(f"apps/{old}/")
