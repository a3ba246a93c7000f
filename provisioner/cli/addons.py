"""`addons` and `pg`: Postgres and Redis attached to apps as config vars."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from provisioner.cli.common import (
    AppOption,
    confirm,
    emit_json,
    g,
    out,
    print_table,
    resolve_app,
    status,
)
from provisioner.model import addons as m
from provisioner.ops import addons as ops
from provisioner.ops import backups as scheduled

group = typer.Typer(
    help="Add-ons: Postgres and Redis as config vars.\n\n"
    "Example: dynoform addons:create postgres -a myapp",
    invoke_without_command=True,
)
pg = typer.Typer(
    help="Postgres add-ons.\n\nExample: dynoform pg:backups:capture -a myapp",
    no_args_is_help=True,
)
backups = typer.Typer(
    help="Postgres backups.\n\nExample: dynoform pg:backups -a myapp", invoke_without_command=True
)
COLUMNS = ["name", "kind", "plan", "provider", "state", "app", "attached_as"]


def _row(addon: m.Addon, app: str | None) -> dict[str, Any]:
    attached = [f"{a.app}:{a.var}" for a in addon.attachments if app is None or a.app == app]
    return {
        "name": addon.name, "kind": addon.kind, "plan": addon.plan, "provider": addon.provider,
        "state": addon.state, "app": addon.app, "attached_as": ", ".join(attached),
    }  # fmt: skip


@group.callback()
def list_addons(
    ctx: typer.Context,
    app: str = typer.Option(None, "--app", "-a", help="Only the add-ons of this app."),
) -> None:
    """List add-ons (all, or an app's). Example: dynoform addons -a myapp --json"""
    if ctx.invoked_subcommand is not None:
        return
    found = ops.list_addons(g().ctx, app)
    if g().json:
        emit_json([a.public() for a in found])
        return
    rows = [_row(a, app) for a in found]
    print_table(rows, COLUMNS, empty="no add-ons: dynoform addons:create postgres -a APP")


@group.command("create")
def create(
    service: str = typer.Argument(..., help="postgres or redis."),
    app: str = AppOption,
    plan: str = typer.Option(m.DEFAULT_PLAN, "--plan", help="small, medium or large."),
    as_name: str = typer.Option(None, "--as", help="Attach as NAME_URL (default: DATABASE_URL)."),
    provider: str = typer.Option(
        None, "--provider", help="self-hosted (default on local) or managed (default on AWS)."
    ),
) -> None:
    """Create an add-on and attach it. Example: dynoform addons:create redis -a myapp"""
    addon = ops.create(g().ctx, resolve_app(app), service, plan, as_name, provider)
    if g().json:
        emit_json(addon.public())
    else:
        out.print(addon.name)


@group.command("info")
def info(
    ref: str = typer.Argument(..., help="Add-on name, or its var with -a."), app: str = AppOption
) -> None:
    """Show an add-on (never its password). Example: dynoform addons:info postgres-1a2b3c"""
    found = ops.info(g().ctx, ref, app)
    if g().json:
        emit_json(found.addon.public())
        return
    for key, value in found.lines.items():
        out.print(f"{key + ':':<13} {value}", markup=False)


@group.command("attach")
def attach(
    ref: str = typer.Argument(..., help="The add-on name."),
    app: str = AppOption,
    as_name: str = typer.Option(None, "--as", help="Attach as NAME_URL."),
) -> None:
    """Attach an add-on to another app. Example: dynoform addons:attach postgres-1a2b3c -a other"""
    ops.attach(g().ctx, ref, resolve_app(app), as_name)


@group.command("detach")
def detach(
    ref: str = typer.Argument(..., help="Add-on name, or its var."), app: str = AppOption
) -> None:
    """Detach an add-on from an app (removes its var). Example: dynoform addons:detach postgres-1a2b3c -a other"""
    ops.detach(g().ctx, ref, resolve_app(app))


@group.command("destroy")
def destroy(
    ref: str = typer.Argument(..., help="Add-on name, or its var with -a."),
    app: str = AppOption,
    confirm_name: str = typer.Option(
        None, "--confirm", help="The add-on's name, to skip the question."
    ),
) -> None:
    """Destroy an add-on and its data. Example: dynoform addons:destroy postgres-1a2b3c --confirm postgres-1a2b3c"""
    addon = ops.resolve(g().ctx, ref, app)
    confirm(f"This destroys {addon.name} and all its data.", addon.name, confirm_name)
    ops.destroy(g().ctx, addon.name)
    status(f"destroyed {addon.name}")


@group.command("hosts")
def hosts(
    check: bool = typer.Option(False, "--check", help="Show what the addon playbook would change."),
    bootstrap: bool = typer.Option(False, "--bootstrap", help="Run the addon playbook again."),
) -> None:
    """The self-hosted add-on hosts. Example: dynoform addons:hosts --check"""
    rows = [h.as_dict() for h in ops.addon_hosts(g().ctx, check, bootstrap)]
    if g().json:
        emit_json(rows)
        return
    for row in rows:
        row["addons"] = len(row["addons"])
        if "changes" in row:
            row["changes"] = len(row["changes"])
    columns = ["id", "private_ip", "zone", "type", "state", "addons"]
    print_table(
        rows, columns + (["changes"] if check or bootstrap else []), empty="no add-on hosts"
    )


# pg ------------------------------------------------------------------------------------------------
@pg.command("psql")
def psql(
    ref: str = typer.Argument(None, help="Add-on name or var (default DATABASE_URL)."),
    app: str = AppOption,
    command: str = typer.Option(None, "--command", "-c", help="Run one SQL command and exit."),
) -> None:
    """psql in a one-off dyno. Example: dynoform pg:psql -a myapp -c 'select 1'"""
    interactive = not command and sys.stdin.isatty() and sys.stdout.isatty()
    code = ops.psql(g().ctx, resolve_app(app), ref, command, _print, interactive)
    raise typer.Exit(code)


def _print(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@backups.callback()
def list_backups(
    ctx: typer.Context,
    ref: str = typer.Option(None, "--addon", help="Add-on name or var (default DATABASE_URL)."),
    app: str = AppOption,
) -> None:
    """List backups. Example: dynoform pg:backups -a myapp"""
    if ctx.invoked_subcommand is not None:
        return
    rows = [{**b.to_dict(), "ref": b.ref} for b in ops.backups(g().ctx, ref, app)]
    if g().json:
        emit_json(rows)
        return
    print_table(rows, ["ref", "created_at", "size", "snapshot"], empty="no backups yet")


@backups.command("capture")
def capture(
    ref: str = typer.Argument(None, help="Add-on name or var (default DATABASE_URL)."),
    app: str = AppOption,
) -> None:
    """Back up a Postgres add-on. Example: dynoform pg:backups:capture -a myapp"""
    backup = ops.capture_backup(g().ctx, ref, app)
    if g().json:
        emit_json({**backup.to_dict(), "ref": backup.ref})
    else:
        out.print(backup.ref)


@backups.command("restore")
def restore(
    backup: str = typer.Argument(..., help="ADDON:BACKUP_ID (or ADDON for its latest backup)."),
    ref: str = typer.Argument(None, help="The add-on to restore into (name or var)."),
    app: str = AppOption,
    confirm_name: str = typer.Option(None, "--confirm", help="The target add-on's name."),
) -> None:
    """Restore a backup into an add-on, replacing its data.

    Example: dynoform pg:backups:restore postgres-1a2b3c:b20260101120000 DATABASE_URL -a copy
    """
    found = ops.find_backup(g().ctx, backup)
    target = ops.postgres(g().ctx, ref, app)
    confirm(f"This replaces the data of {target.name}.", target.name, confirm_name)
    ops.restore_backup(g().ctx, found.ref, target.name)
    status(f"restored {found.ref} into {target.name}")


@backups.command("download")
def download(
    backup: str = typer.Argument(..., help="ADDON:BACKUP_ID (or ADDON for its latest backup)."),
    output: Path = typer.Option(None, "--output", "-o", help="Default: ADDON-BACKUP_ID.dump"),
) -> None:
    """Download a pg_dump backup (self-hosted add-ons; pg_restore reads it).

    Example: dynoform pg:backups:download postgres-1a2b3c -o latest.dump
    """
    _, path = ops.download_backup(g().ctx, backup, output)
    out.print(str(path), markup=False)


@backups.command("schedule")
def schedule(
    ref: str = typer.Argument(None, help="Add-on name or var (default DATABASE_URL)."),
    app: str = AppOption,
    at: str = typer.Option(..., "--at", help="HH:MM and a time zone: '02:00 UTC', "
                           "'02:00 Europe/Paris' (UTC when left out)."),
) -> None:  # fmt: skip
    """Back up a Postgres add-on every day at a time (replaces its schedule).

    Example: dynoform pg:backups:schedule DATABASE_URL --at '02:00 UTC' -a myapp
    """
    row = scheduled.schedule(g().ctx, ref, app, at)
    if g().json:
        emit_json(row.as_dict())
        return
    status(f"backing up {row.schedule.addon} daily at {row.schedule.when} "
           f"(next at {row.next_at}); kept: the last 7 daily and 4 weekly")  # fmt: skip


@backups.command("schedules")
def schedules(app: str = AppOption) -> None:
    """The backup schedules of an app's Postgres add-ons. Example: dynoform pg:backups:schedules -a myapp"""
    rows = [r.as_dict() for r in scheduled.schedules(g().ctx, app)]
    if g().json:
        emit_json(rows)
        return
    for row in rows:
        row["attached_as"] = ", ".join(row["attached_as"])
        row["last_backup"] = row["last_backup"] or (f"failed: {row['last_error']}"
                                                    if row["last_error"] else "")  # fmt: skip
    columns = ["addon", "attached_as", "at", "next_at", "last_backup"]
    print_table(
        rows, columns, empty="no backup schedules: dynoform pg:backups:schedule --at '02:00 UTC'"
    )


@backups.command("unschedule")
def unschedule(
    ref: str = typer.Argument(None, help="Add-on name or var (default DATABASE_URL)."),
    app: str = AppOption,
) -> None:
    """Stop the daily backups of a Postgres add-on (its backups stay).

    Example: dynoform pg:backups:unschedule DATABASE_URL -a myapp
    """
    gone = scheduled.unschedule(g().ctx, ref, app)
    status(f"no more daily backups of {gone.addon} (was {gone.when})")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="addons")
    pg.add_typer(backups, name="backups")
    app.add_typer(pg, name="pg")
