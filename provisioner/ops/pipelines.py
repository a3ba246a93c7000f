"""Pipelines: promote the slug of one stage's app to the next stage's app, as Heroku does.

No build: the staging app's serving slug is copied to the target app's slugs (so it stays when
staging is destroyed) and released there with the target's own config, under its lease.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from provisioner.aws import blobs as keys
from provisioner.context import Context
from provisioner.errors import DynoformError
from provisioner.model.release import Release
from provisioner.ops import repair
from provisioner.ops.releases import publish, release_template
from provisioner.ops.rollout import activator


@dataclass(frozen=True)
class Promoted:
    source: str
    target: str
    source_release: int
    release: Release


def promote(ctx: Context, source: str, target: str, wait: bool = False) -> Promoted:
    """Release source's serving slug on target, with target's config (no rebuild)."""
    store = ctx.store
    current = store.current_release(source)
    if current is None or not current.slug_key or not current.slug_sha256:
        raise DynoformError(f"{source} has no deployed release to promote", "deploy it first")
    target_id = store.app_id(target)
    slug = keys.slug_key(target_id, current.slug_sha256)
    blobs = ctx.blobs()
    if not blobs.exists(slug):
        blobs.copy(current.slug_key, slug)
    activate = activator(ctx)
    with repair.changing(ctx, target, "promote", wait=wait):
        config, _ = store.config(target)
        base = replace(current, slug_key=slug)
        template = release_template(f"Promote {source} v{current.version}", base)
        release = publish(store, target, template, config, activate)
    ctx.say(f"promoted {source} v{current.version} to {target}: v{release.version}")
    return Promoted(source, target, current.version, release)
