"""`apps`: create, list, inspect, rename and destroy apps."""

from __future__ import annotations

import typer

from provisioner.cli import common
from provisioner.cli.common import AppOption, emit_json, g, out, print_table, resolve_app, status
from provisioner.errors import DynoformError
from provisioner.model.release import Release
from provisioner.ops import apps as ops
from provisioner.ops.rollout import activator

group = typer.Typer(
    help="Apps.\n\nExample: dynoform apps:create myapp",
    invoke_without_command=True,
)


@group.callback()
def list_apps(ctx: typer.Context) -> None:
    """List apps. Example: dynoform apps --json"""
    if ctx.invoked_subcommand is not None:
        return
    store = g().store
    rows = []
    for name in store.apps():
        try:
            current = store.current_release(name)
        except DynoformError as exc:  # one app's damaged record must not hide the others
            rows.append({"name": name, "release": None, "error": exc.message})
            continue
        rows.append({"name": name, "release": f"v{current.version}" if current else None})
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
    record = ops.create_app(g().store, name)
    status(f"created {record['name']}")
    if not no_remote and (change := ops.add_git_remote(record["name"])):
        status(change)
    if g().json:
        emit_json(record)
    else:
        out.print(record["name"])


@group.command("info")
def info(app: str = AppOption) -> None:
    """Show an app. Example: dynoform apps:info -a myapp --json"""
    name = common.settled_app(app)
    data = ops.app_info(g().store, name, common.web_url(name))
    if g().json:
        emit_json(data)
        return
    for key in ("name", "id", "web_url", "release", "stack", "buildpacks", "created_at"):
        value = data[key]
        if key == "release" and value is not None:
            value = f"v{value}"
        out.print(f"{key}: {'' if value is None else value}")


@group.command("repair")
def repair(
    app: str = AppOption,
    wait: bool = typer.Option(False, "--wait", help="Wait for a running command to finish."),
) -> None:
    """Bring records and dynos to one truth after an interrupted command.

    Example: dynoform apps:repair -a myapp
    """
    from provisioner.ops import repair as ops_repair

    name = resolve_app(app)
    g().store.app(name)
    lines = ops_repair.repair_app(g().ctx, name, wait)
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
    activate = activator(g().ctx)

    def start_under_new_name(name: str, release: Release, config: dict[str, str]) -> None:
        try:
            activate(name, release, config)
        except BaseException:
            ops.remove_from_hosts(g().ctx, name)  # what the new name got before it failed
            raise

    ops.rename_app(g().store, old, new_name, start_under_new_name)
    _move_platform_entries(old, new_name)
    status(f"renamed {old} to {new_name}")
    if common.app_from_git_remote() == old:
        ops.add_git_remote(new_name)


def _move_platform_entries(old: str, new: str) -> None:
    """What the platform holds under the old name goes (its dynos, which the new name now
    runs, its rule and directories); certificates move; custom domains route to the new name."""
    from provisioner.ops import certs
    from provisioner.ops.router import sync_rules

    if not ops.remove_from_hosts(g().ctx, old):
        return
    certs.rename_app_certs(g().ctx, old, new)
    record = g().store.app(new)
    if record.get("domains") or record.get("maintenance") or record.get("plain_http"):
        sync_rules(g().ctx, new, record)


@group.command("http")
def plain_http(
    app: str = AppOption,
    allow: bool = typer.Option(..., "--allow/--redirect", help="Serve plain HTTP, or redirect it."),
) -> None:
    """Serve the app on plain HTTP too, or redirect it to HTTPS (the default).

    Example: dynoform apps:http --allow -a myapp"""
    from provisioner.ops.router import sync_rules

    name = resolve_app(app)
    record = g().store.update_app(name, lambda data: data.update(plain_http=allow))
    sync_rules(g().ctx, name, record)
    status(f"{name}: plain HTTP is {'served' if allow else 'redirected to HTTPS'}")


@group.command("destroy")
def destroy(
    app: str = AppOption,
    confirm_name: str = typer.Option(None, "--confirm", help="The app's name, to confirm."),
) -> None:
    """Destroy an app and everything it has. Example: dynoform apps:destroy -a myapp --confirm myapp"""
    name = resolve_app(app)
    common.confirm(f"Destroy {name} with its dynos, releases and slugs?", name, confirm_name)
    g().store.app(name)
    common.destroy_app_resources(name)
    removed = g().store.delete_app(name)
    status(f"destroyed {name} ({removed} stored objects removed)")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="apps")
