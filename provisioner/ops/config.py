"""Config vars: read them, and set or unset them (each change is a new release that restarts
the app's dynos; ops/releases.py makes it)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from provisioner.context import Context
from provisioner.errors import DynoformError, NotFound
from provisioner.model.release import Release
from provisioner.ops.releases import change_config


def show(ctx: Context, app: str) -> dict[str, str]:
    """The app's config vars, names to values."""
    config, _ = ctx.store.config(app)
    return config


def get(ctx: Context, app: str, key: str) -> str:
    """One config var's value."""
    config = show(ctx, app)
    if key not in config:
        raise NotFound(f"{key} is not set", "see `dynoform config`")
    return config[key]


def set(ctx: Context, app: str, changes: Mapping[str, str], wait: bool = False) -> Release:
    """Set config vars: a new release with them."""
    if not changes:
        raise DynoformError("nothing to set", "give KEY=VALUE pairs or --env-file FILE")
    return change_config(ctx, app, changes, (), wait)


def unset(ctx: Context, app: str, keys: Iterable[str], wait: bool = False) -> Release:
    """Remove config vars: a new release without them."""
    return change_config(ctx, app, {}, keys, wait)
