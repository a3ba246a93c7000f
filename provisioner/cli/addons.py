"""`addons` and `pg`: Postgres and Redis attached to apps as config vars."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
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
from provisioner.errors import DynoformError
from provisioner.model import addons as m
from provisioner.ops.addons import Addons, Provider

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


@contextmanager
def opened() -> Iterator[tuple[Addons, dict[str, Any]]]:
    """The add-on operations with providers opened on first use and closed at the end."""
    opened_: dict[str, Any] = {}

    def provider(name: str) -> Provider:
        if name not in opened_:
            opened_[name] = _open_provider(name, opened_)
        return opened_[name]  # type: ignore[no-any-return]

    try:
        yield Addons(g().ctx, provider), opened_
    finally:
        fleet = opened_.get("fleet")
        if fleet is not None:
            fleet.close()


def _platform() -> Any:
    return g().ctx.platform(create=False)


def _fleet(opened_: dict[str, Any]) -> Any:
    if "fleet" not in opened_:
        from provisioner.fleet import Fleet

        opened_["fleet"] = Fleet(g().aws, g().target, _platform(), g().store.docs)
    return opened_["fleet"]


def _open_provider(name: str, opened_: dict[str, Any]) -> Provider:
    if name == m.MANAGED:
        from provisioner.aws.managed import Managed

        return Managed(g().aws, _platform())
    from provisioner.ops.selfhosted import SelfHosted

    addons_for_ports = Addons(g().ctx, lambda _: None)  # type: ignore[arg-type,return-value]
    return SelfHosted(_fleet(opened_), addons_for_ports.used_ports)


def _default_provider() -> str:
    return m.SELF_HOSTED if g().target.is_local else m.MANAGED


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
    ops = Addons(g().ctx, _no_provider)
    found = ops.for_app(app) if app else ops.all()
    if g().json:
        emit_json([a.public() for a in found])
        return
    rows = [_row(a, app) for a in found]
    print_table(rows, COLUMNS, empty="no add-ons: dynoform addons:create postgres -a APP")


def _no_provider(name: str) -> Provider:
    raise DynoformError("internal: no provider needed here")


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
    name = resolve_app(app)
    with opened() as (ops, _):
        addon = ops.create(name, service, plan, as_name, provider or _default_provider())
    if g().json:
        emit_json(addon.public())
    else:
        out.print(addon.name)


@group.command("info")
def info(
    ref: str = typer.Argument(..., help="Add-on name, or its var with -a."), app: str = AppOption
) -> None:
    """Show an add-on (never its password). Example: dynoform addons:info postgres-1a2b3c"""
    addon = Addons(g().ctx, _no_provider).resolve(ref, app)
    data = addon.public()
    if g().json:
        emit_json(data)
        return
    res = addon.resource
    lines = {
        "name": addon.name, "kind": addon.kind, "plan": addon.plan, "provider": addon.provider,
        "state": addon.state, "owner": addon.app, "created_at": addon.created_at,
        "attachments": ", ".join(f"{a.app} as {a.var}" for a in addon.attachments) or "none",
        "endpoint": f"{res.get('host')}:{res.get('port')}" if res.get("host") else None,
        "host": res.get("host_id"), "backups": len(res.get("backups", [])) or None,
    }  # fmt: skip
    for key, value in lines.items():
        if value is not None:
            out.print(f"{key + ':':<13} {value}", markup=False)


@group.command("attach")
def attach(
    ref: str = typer.Argument(..., help="The add-on name."),
    app: str = AppOption,
    as_name: str = typer.Option(None, "--as", help="Attach as NAME_URL."),
) -> None:
    """Attach an add-on to another app. Example: dynoform addons:attach postgres-1a2b3c -a other"""
    name = resolve_app(app)
    with opened() as (ops, _):
        ops.attach(ref, name, as_name)


@group.command("detach")
def detach(
    ref: str = typer.Argument(..., help="Add-on name, or its var."), app: str = AppOption
) -> None:
    """Detach an add-on from an app (removes its var). Example: dynoform addons:detach postgres-1a2b3c -a other"""
    name = resolve_app(app)
    with opened() as (ops, _):
        ops.detach(ops.resolve(ref, name).name, name)


@group.command("destroy")
def destroy(
    ref: str = typer.Argument(..., help="Add-on name, or its var with -a."),
    app: str = AppOption,
    confirm_name: str = typer.Option(
        None, "--confirm", help="The add-on's name, to skip the question."
    ),
) -> None:
    """Destroy an add-on and its data. Example: dynoform addons:destroy postgres-1a2b3c --confirm postgres-1a2b3c"""
    with opened() as (ops, _):
        addon = ops.resolve(ref, app)
        confirm(f"This destroys {addon.name} and all its data.", addon.name, confirm_name)
        ops.destroy(addon.name)
    status(f"destroyed {addon.name}")


@group.command("hosts")
def hosts(
    check: bool = typer.Option(False, "--check", help="Show what the addon playbook would change."),
    bootstrap: bool = typer.Option(False, "--bootstrap", help="Run the addon playbook again."),
) -> None:
    """The self-hosted add-on hosts. Example: dynoform addons:hosts --check"""
    from provisioner.ops import selfhosted

    with opened() as (ops, opened_):
        fleet = _fleet(opened_)
        on_host: dict[str, list[str]] = {}
        for addon in ops.all():
            on_host.setdefault(str(addon.resource.get("host_id")), []).append(addon.name)
        rows = []
        for host in selfhosted.addon_hosts(fleet):
            row: dict[str, Any] = {
                "id": host.id, "private_ip": host.private_ip, "zone": host.zone,
                "type": host.type, "state": host.state, "addons": on_host.get(host.id, []),
            }  # fmt: skip
            if check or bootstrap:
                report = selfhosted.bootstrap(fleet, host, status, check=check)
                row["changes"] = [s.as_dict() for s in report.changes]
            rows.append(row)
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
def _postgres(ops: Addons, ref: str | None, app: str | None) -> m.Addon:
    addon = ops.resolve(ref or "DATABASE_URL", app)
    if addon.kind != m.POSTGRES:
        raise DynoformError(f"{addon.name} is not a Postgres add-on")
    return addon


@pg.command("psql")
def psql(
    ref: str = typer.Argument(None, help="Add-on name or var (default DATABASE_URL)."),
    app: str = AppOption,
    command: str = typer.Option(None, "--command", "-c", help="Run one SQL command and exit."),
) -> None:
    """psql in a one-off dyno. Example: dynoform pg:psql -a myapp -c 'select 1'"""
    from provisioner.ops import oneoff

    name = resolve_app(app)
    addon = _postgres(Addons(g().ctx, _no_provider), ref, name)
    attachment = addon.attached_to(name, g().store.app_id(name))
    if attachment is None:
        raise DynoformError(f"{addon.name} is not attached to {name}")
    # The URL stays in the dyno's environment: no argv ever holds it (nor the password).
    line = m.psql_dyno_command(attachment.var, command)
    interactive = not command and sys.stdin.isatty() and sys.stdout.isatty()
    code = oneoff.run(g().ctx, name, line, _print, interactive=interactive, tools=PSQL_TOOLS)
    raise typer.Exit(code)


PSQL_TOOLS = {"psql": "postgresql-client"}  # Debian's psql, on the host one-offs run on


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
    ops = Addons(g().ctx, _no_provider)
    addon = _postgres(ops, ref, app)
    rows = [{**b, "ref": f"{addon.name}:{b['id']}"} for b in addon.resource.get("backups", [])]
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
    from provisioner.aws.blobs import Blobs

    with opened() as (ops, _):
        addon = _postgres(ops, ref, app)
        provider: Any = ops.providers(addon.provider)

        def take(target: m.Addon, backup_id: str) -> dict[str, Any]:
            if target.provider == m.MANAGED:
                return {"snapshot": provider.capture(target, backup_id, status)}
            blobs = Blobs(g().store.docs.s3, g().store.docs.bucket)
            return {"size": provider.capture(target, blobs, backup_id, status)}

        record = ops.capture(addon.name, take)
    ref_text = f"{record['addon']}:{record['id']}"
    if g().json:
        emit_json({**record, "ref": ref_text})
    else:
        out.print(ref_text)


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
    from provisioner.aws.blobs import Blobs

    with opened() as (ops, _):
        source, record = ops.find_backup(backup)
        target = _postgres(ops, ref, app)
        confirm(f"This replaces the data of {target.name}.", target.name, confirm_name)
        provider: Any = ops.providers(target.provider)
        if target.provider == m.MANAGED:
            if "snapshot" not in record:
                raise DynoformError("a managed add-on restores only RDS snapshots")
            provider.restore(record["snapshot"], source, target, status)
            ops.refresh(target)
        else:
            if "size" not in record:
                raise DynoformError("a self-hosted add-on restores only pg_dump backups")
            blobs = Blobs(g().store.docs.s3, g().store.docs.bucket)
            provider.restore(source.name, record["id"], target, blobs, status)
    status(f"restored {source.name}:{record['id']} into {target.name}")


def destroy_app_addons(app: str) -> None:
    """For apps:destroy: the app's own add-ons are destroyed, its other attachments dropped."""
    with opened() as (ops, _):
        for name in ops.destroy_app_addons(app):
            status(f"destroyed add-on {name}")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="addons")
    pg.add_typer(backups, name="backups")
    app.add_typer(pg, name="pg")
