"""An app's buildpacks: the ones its builds run, in order; none means detection."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from provisioner.context import Context
from provisioner.model.app import App


def normalise(pack: str) -> str:
    """URLs stay as given; a directory on this machine is remembered by its absolute path."""
    if pack.startswith("https://"):
        return pack
    path = Path(pack).expanduser()
    return str(path.resolve()) if path.is_dir() else pack


def list_buildpacks(ctx: Context, app: str) -> list[str]:
    return list(ctx.store.app(app).buildpacks)


def set_buildpacks(ctx: Context, app: str, packs: list[str]) -> App:
    """Exactly these buildpacks (an empty list: detect again)."""
    wanted = tuple(normalise(p) for p in packs)
    return _said(ctx, ctx.store.update_app(app, lambda a: replace(a, buildpacks=wanted)))


def add_buildpack(ctx: Context, app: str, pack: str) -> App:
    """Append one; the record is changed in one conditional write, so two adds both stay."""
    added = normalise(pack)
    record = ctx.store.update_app(app, lambda a: replace(a, buildpacks=(*a.buildpacks, added)))
    return _said(ctx, record)


def _said(ctx: Context, record: App) -> App:
    ctx.say(
        f"buildpacks of {record.name}: {', '.join(record.buildpacks) or 'detected automatically'}"
    )
    return record
