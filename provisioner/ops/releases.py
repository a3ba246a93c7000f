"""Making releases: config changes, rollbacks and builds all end here.

A release is created `pending` with its config snapshot, then activated (the dyno layer rolls
the fleet to it), then marked `succeeded`; if activation fails it is marked `failed` and the
release that served before keeps serving. Interrupted, it stays `pending` until the next command
on the app repairs it (ops/repair.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

from provisioner.context import Context
from provisioner.errors import DynoformError
from provisioner.model.config import apply_changes
from provisioner.model.release import Release
from provisioner.ops import repair
from provisioner.ops.rollout import activator
from provisioner.store import Store, now_iso, whoami

# Rolls the dynos of an app to a release; raises DynoformError when the release cannot serve.
Activator = Callable[[str, Release, dict[str, str]], None]


def no_dynos(app: str, release: Release, config: dict[str, str]) -> None:
    """The activator for apps with nothing to roll (no slug or no formation yet)."""


def publish(
    store: Store,
    app: str,
    template: Release,
    config: dict[str, str],
    activate: Activator = no_dynos,
    newest: int | None = None,
) -> Release:
    """Create the next release from template (its version is replaced), activate it, record it.
    `newest`: the app's newest release number if the caller knows it (one listing fewer)."""
    release = store.create_release(
        app, lambda v: replace(template, version=v), config, newest=newest
    )
    try:
        activate(app, release, config)
    except DynoformError:
        # A failure the rollout undid: the release that served before still serves.
        store.set_release_status(app, release.version, "failed")
        raise
    # Any other exit (Ctrl-C, a lost connection) leaves the release `pending`: what runs is
    # not known here, and the next command on the app judges it from the fleet (ops/repair.py).
    return store.set_release_status(app, release.version, "succeeded")


def release_template(description: str, base: Release | None) -> Release:
    """A release that carries base's slug and processes forward with a new description."""
    fields = {
        "description": description,
        "created_by": whoami(),
        "created_at": now_iso(),
        "status": "pending",
    }
    if base is None:
        return Release(version=1, **fields)  # type: ignore[arg-type]
    return replace(base, version=1, **fields)  # type: ignore[arg-type]


def describe_config_change(set_keys: Iterable[str], unset_keys: Iterable[str]) -> str:
    parts = []
    if set_keys := sorted(set_keys):
        parts.append(f"Set {', '.join(set_keys)} config var{'s' if len(set_keys) > 1 else ''}")
    if unset_keys := sorted(unset_keys):
        parts.append(
            f"Remove {', '.join(unset_keys)} config var{'s' if len(unset_keys) > 1 else ''}"
        )
    return "; ".join(parts) or "Config unchanged"


def change_config(
    ctx: Context,
    app: str,
    set_vars: Mapping[str, str],
    unset: Iterable[str] = (),
    wait: bool = False,
) -> Release:
    """config:set / config:unset: a new release with the changed config, under the app lease."""
    store, activate = ctx.store, activator(ctx)
    unset = list(unset)
    store.app(app)
    with repair.changing(ctx, app, "config change", wait=wait):
        current, etag = store.config(app)
        missing = [k for k in unset if k not in current]
        if missing and not set_vars and len(missing) == len(unset):
            raise DynoformError(f"{', '.join(missing)} not set on {app}", "see `dynoform config`")
        new = apply_changes(current, set_vars, unset)
        template = release_template(
            describe_config_change(set_vars, [k for k in unset if k in current]),
            store.current_release(app),
        )
        release = publish(store, app, template, new, activate)
        store.save_config(app, new, etag)
        return release


def list_releases(ctx: Context, app: str) -> list[Release]:
    """The app's releases, newest first (an idle app left half-way is repaired first, so their
    status is what runs)."""
    repair.settle(ctx, app)
    return list(reversed(ctx.store.releases(app)))


def info(ctx: Context, app: str, version: int | None = None) -> Release | None:
    """Release vN, or the one that serves (None before the first)."""
    repair.settle(ctx, app)
    store = ctx.store
    return store.release(app, version) if version else store.current_release(app)


def rollback(ctx: Context, app: str, version: int | None = None, wait: bool = False) -> Release:
    """A new release made from vN's slug and config (default: the one before the current)."""
    store, activate = ctx.store, activator(ctx)
    with repair.changing(ctx, app, "rollback", wait=wait):
        target = store.release(app, version) if version else _previous(store, app)
        if target.status != "succeeded":
            raise DynoformError(
                f"v{target.version} of {app} is {target.status}", "roll back to a succeeded release"
            )
        config = store.release_config(app, target.version)
        template = release_template(f"Rollback to v{target.version}", target)
        release = publish(store, app, template, config, activate)
        _, etag = store.config(app)
        store.save_config(app, config, etag)
        return release


def _previous(store: Store, app: str) -> Release:
    current = store.current_release(app)
    if current is None:
        raise DynoformError(f"{app} has no release to roll back from", "deploy first")
    for version in reversed(range(1, current.version)):
        candidate = store.release(app, version)
        if candidate.status == "succeeded":
            return candidate
    raise DynoformError(
        f"{app} has no release before v{current.version}", "nothing to roll back to"
    )
