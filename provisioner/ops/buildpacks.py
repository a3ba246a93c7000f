"""An app's buildpacks: the ones its builds run, in order; none means detection.

Each is a git URL (`#ref`: branch, tag or full commit), a tarball URL, a directory on this
machine (kept as its absolute path) or a directory on the build hosts (plan/buildpacks.py).
What a build resolved them to (a commit, a sha256) is in its build record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from provisioner.context import Context
from provisioner.errors import ValidationError
from provisioner.model.app import App
from provisioner.ops import builds
from provisioner.plan import buildpacks as plan
from provisioner.store import Store

RECENT_BUILDS = 20  # apps:info looks this far back for what the buildpacks resolved to


def normalise(pack: str) -> str:
    """URLs are checked and kept as given; a directory on this machine is remembered by its
    absolute path (and must hold bin/compile); any other absolute path names a directory on
    the build hosts. Anything else is refused with one line and a hint."""
    pack = pack.strip()
    path = Path(pack).expanduser()
    if plan.is_url(pack) or not path.is_dir():
        return plan.normalise(pack, local_dir=False)
    if not (path / "bin" / "compile").is_file():
        raise ValidationError(
            f"buildpack directory {pack}", "has no bin/compile", "a buildpack has bin/detect, "
            "bin/compile and bin/release (Heroku's classic buildpack API)"
        )  # fmt: skip
    return str(path.resolve())


def list_buildpacks(ctx: Context, app: str) -> list[str]:
    """The app's buildpacks in order, as shown (URL credentials masked)."""
    return [plan.mask(p) for p in ctx.store.app(app).buildpacks]


def set_buildpacks(ctx: Context, app: str, packs: list[str]) -> App:
    """Exactly these buildpacks (an empty list: detect again)."""
    wanted = tuple(normalise(p) for p in packs)
    return _change(ctx, app, lambda _: wanted)


def set_buildpack(ctx: Context, app: str, pack: str, index: int | None = None) -> App:
    """`buildpacks:set`: this one in place of the one at the 1-based index (default: the
    first), as Heroku."""
    wanted = normalise(pack)
    return _change(ctx, app, lambda packs: plan.with_set(packs, wanted, index))


def add_buildpack(ctx: Context, app: str, pack: str, index: int | None = None) -> App:
    """Append one (or insert it at the 1-based index); the record is changed in one
    conditional write, so two adds both stay."""
    added = normalise(pack)
    return _change(ctx, app, lambda packs: plan.with_added(packs, added, index))


def remove_buildpack(
    ctx: Context, app: str, pack: str | None = None, index: int | None = None
) -> App:
    """`buildpacks:remove URL|DIR` or `--index N`."""
    given = None if pack is None else _as_recorded(pack)
    return _change(ctx, app, lambda packs: plan.without(packs, given, index))


def _as_recorded(pack: str) -> str:
    path = Path(pack).expanduser()
    return str(path.resolve()) if not plan.is_url(pack) and path.is_dir() else pack.strip()


def _change(ctx: Context, app: str, edit: Callable[[tuple[str, ...]], tuple[str, ...]]) -> App:
    record = ctx.store.update_app(app, lambda a: replace(a, buildpacks=edit(a.buildpacks)))
    shown = ", ".join(plan.mask(p) for p in record.buildpacks)
    ctx.say(f"buildpacks of {record.name}: {shown or 'detected automatically'}")
    return record


def resolved(store: Store, app: str, packs: tuple[str, ...]) -> list[dict[str, Any]]:
    """Each of the app's buildpacks with what its latest successful build resolved it to
    (`commit`, `sha256`, `build`); only `buildpack` and `kind` when no build used it yet."""
    found: dict[str, dict[str, Any]] = {}
    for build in builds.recent_builds(store, app, RECENT_BUILDS) if packs else ():
        if build.get("status") == "succeeded" and isinstance(build.get("buildpacks"), list):
            found = {
                str(b.get("buildpack")): {**b, "build": build.get("id")}
                for b in build["buildpacks"]
            }
            break
    rows = []
    for pack in packs:
        shown = plan.mask(pack)
        rows.append(found.get(shown) or {"buildpack": shown, "kind": kind_of(pack)})
    return rows


def kind_of(pack: str) -> str:
    if plan.is_url(pack):
        return plan.parse_url(pack).kind
    return plan.DIRECTORY if Path(pack).is_dir() else plan.HOST


def describe(row: dict[str, Any]) -> str:
    """`URL (commit 3f2a1b4c5d6e)`, as apps:info prints each buildpack."""
    if row.get("commit"):
        what = f"commit {str(row['commit'])[:12]}"
    elif row.get("sha256"):
        what = f"sha256 {str(row['sha256'])[:12]}"
    elif row.get("kind") == plan.HOST:
        what = "on the build hosts"
    else:
        what = "not built yet"
    return f"{row['buildpack']} ({what})"
