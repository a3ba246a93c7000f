"""`apps`: create, list, inspect, rename and destroy apps."""

from __future__ import annotations

import typer

from provisioner.cli import common
from provisioner.cli.common import AppOption, emit_json, g, out, print_table, resolve_app, status
from provisioner.ops import apps as ops
from provisioner.ops.buildpacks import describe

group = typer.Typer(
    help="Apps.\n\nExample: dynoform apps:create myapp",
    invoke_without_command=True,
)


@group.callback()
def list_apps(ctx: typer.Context) -> None:
    """List apps. Example: dynoform apps --json"""
    if ctx.invoked_subcommand is not None:
        return
    rows = [row.to_dict() for row in ops.list_apps(g().ctx)]
    if g().json:
        emit_json(rows)
    else:
        print_table(rows, ["name", "release"], empty="no apps yet: dynoform apps:create")


@group.command("create")
def create(
    name: str = typer.Argument(None, help="App name (random when omitted)."),
    no_remote: bool = typer.Option(False, "--no-remote", help="Do not add a git remote."),
) -> None:
    """Create an app. Example: dynoform apps:create myapp"""
    record = ops.create(g().ctx, name)
    status(f"created {record.name}")
    if not no_remote and (change := ops.add_git_remote(record.name)):
        status(change)
    if g().json:
        emit_json(record.to_dict())
    else:
        out.print(record.name)


@group.command("info")
def info(app: str = AppOption) -> None:
    """Show an app. Example: dynoform apps:info -a myapp --json"""
    data = ops.info(g().ctx, resolve_app(app)).to_dict()
    if g().json:
        emit_json(data)
        return
    for key in ("name", "id", "web_url", "release", "stack", "buildpacks", "created_at"):
        value = data[key]
        if key == "release" and value is not None:
            value = f"v{value}"
        if key == "buildpacks":
            rows = data["buildpacks_resolved"]
            value = ", ".join(map(describe, rows)) or "(detected automatically)"
        out.print(f"{key}: {'' if value is None else value}")


@group.command("repair")
def repair(
    app: str = AppOption,
    wait: bool = typer.Option(False, "--wait", help="Wait for a running command to finish."),
) -> None:
    """Bring records and dynos to one truth after an interrupted command.

    Example: dynoform apps:repair -a myapp
    """
    name = resolve_app(app)
    lines = ops.repair_app(g().ctx, name, wait)
    if g().json:
        emit_json(lines)
        return
    for line in lines:
        status(f"{name}: {line}")


@group.command("rename")
def rename(
    new_name: str = typer.Argument(..., help="The new name."),
    app: str = AppOption,
) -> None:
    """Rename an app; its dynos start under the new name before the old ones stop.

    Example: dynoform apps:rename newname -a oldname"""
    old = resolve_app(app)
    ops.rename(g().ctx, old, new_name)
    status(f"renamed {old} to {new_name}")
    if common.app_from_git_remote() == old:
        ops.add_git_remote(new_name)


@group.command("http")
def plain_http(
    app: str = AppOption,
    allow: bool = typer.Option(..., "--allow/--redirect", help="Serve plain HTTP, or redirect it."),
) -> None:
    """Serve the app on plain HTTP too, or redirect it to HTTPS (the default).

    Example: dynoform apps:http --allow -a myapp"""
    name = resolve_app(app)
    ops.set_plain_http(g().ctx, name, allow)
    status(f"{name}: plain HTTP is {'served' if allow else 'redirected to HTTPS'}")


@group.command("destroy")
def destroy(
    app: str = AppOption,
    confirm_name: str = typer.Option(None, "--confirm", help="The app's name, to confirm."),
    wait: bool = typer.Option(False, "--wait", help="Wait for a running command to finish."),
) -> None:
    """Destroy an app and everything it has. Example: dynoform apps:destroy -a myapp --confirm myapp"""
    name = resolve_app(app)
    common.confirm(f"Destroy {name} with its dynos, releases and slugs?", name, confirm_name)
    removed = ops.destroy(g().ctx, name, wait=wait)
    status(f"destroyed {name} ({removed} stored objects removed)")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="apps")
