"""`releases`: the numbered history of an app; rollback makes a new release from an old one."""

from __future__ import annotations

import typer

from provisioner.cli.common import AppOption, emit_json, g, out, print_table, resolve_app, status
from provisioner.model.release import Release, parse_version
from provisioner.ops import releases as ops

group = typer.Typer(
    help="Releases.\n\nExample: dynoform releases:rollback v3 -a myapp",
    invoke_without_command=True,
)

FIELDS = ["version", "status", "description", "created_at", "created_by", "slug_sha256"]


def public(release: Release) -> dict[str, object]:
    data = release.to_dict()
    return {k: data[k] for k in FIELDS} | {"process_types": data["process_types"]}


@group.callback()
def list_releases(ctx: typer.Context, app: str = AppOption) -> None:
    """List releases, newest first. Example: dynoform releases -a myapp --json"""
    if ctx.invoked_subcommand is not None:
        return
    releases = ops.list_releases(g().ctx, resolve_app(app))
    if g().json:
        emit_json([public(r) for r in releases])
        return
    rows = [dict(public(r), version=r.name) for r in releases]
    print_table(rows, ["version", "status", "description", "created_by", "created_at"])


@group.command("info")
def info(
    version: str = typer.Argument(None, help="Release, e.g. v3 (default: current)."),
    app: str = AppOption,
) -> None:
    """Show one release. Example: dynoform releases:info v3 -a myapp"""
    target = parse_version(version) if version else None
    release = ops.info(g().ctx, resolve_app(app), target)
    if release is None:
        out.print("no releases yet")
        return
    data = public(release)
    if g().json:
        emit_json(data)
        return
    for key, value in data.items():
        out.print(f"{key}: {value}", markup=False)


@group.command("rollback")
def rollback(
    version: str = typer.Argument(None, help="Release to roll back to (default: the previous)."),
    app: str = AppOption,
    wait: bool = typer.Option(False, "--wait", help="Wait for another operation to finish."),
) -> None:
    """Roll back: a new release from vN's slug and config. Example: dynoform releases:rollback v3"""
    name = resolve_app(app)
    target = parse_version(version) if version else None
    release = ops.rollback(g().ctx, name, target, wait)
    status(f"rolled back {name}: {release.description}, now v{release.version}")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="releases")
