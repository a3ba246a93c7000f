"""`domains`: custom hostnames routed to an app, beside <app>.<platform domain>."""

from __future__ import annotations

import re
from typing import Any

import typer

from provisioner.cli.common import AppOption, emit_json, g, out, resolve_app, status
from provisioner.errors import ValidationError
from provisioner.ops.rollout import open_rollout

group = typer.Typer(
    help="Custom domains.\n\nExample: dynoform domains:add www.example.com -a myapp",
    invoke_without_command=True,
)
_HOST_RE = re.compile(r"(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


def _validate(domain: str) -> str:
    domain = domain.strip().lower().rstrip(".")
    if not _HOST_RE.fullmatch(domain):
        raise ValidationError(f"domain {domain!r}", "must be a hostname such as www.example.com")
    return domain


def sync_rules(app: str, record: dict[str, Any]) -> None:
    """Put the app's rules on the load balancer as its record says."""
    domains = [str(d) for d in record.get("domains") or []]
    rollout = open_rollout(g(), status)
    try:
        rollout.router.ensure_rule(
            app, domains, bool(record.get("maintenance")), bool(record.get("plain_http"))
        )
    finally:
        rollout.fleet.close()


@group.callback()
def list_domains(ctx: typer.Context, app: str = AppOption) -> None:
    """List an app's hostnames. Example: dynoform domains -a myapp --json"""
    if ctx.invoked_subcommand is not None:
        return
    name = resolve_app(app)
    record = g().store.app(name)
    rows = [f"{name}.{g().target.app_domain}", *record.get("domains", [])]
    if g().json:
        emit_json(rows)
    else:
        for row in rows:
            out.print(row)


@group.command("add")
def add(domain: str = typer.Argument(...), app: str = AppOption) -> None:
    """Route a hostname to the app. Example: dynoform domains:add www.example.com -a myapp"""
    name, host = resolve_app(app), _validate(domain)
    record = g().store.update_app(
        name, lambda d: d.update(domains=sorted({*d.get("domains", []), host}))
    )
    sync_rules(name, record)
    status(f"added {host} to {name}")


@group.command("remove")
def remove(domain: str = typer.Argument(...), app: str = AppOption) -> None:
    """Stop routing a hostname. Example: dynoform domains:remove www.example.com -a myapp"""
    name, host = resolve_app(app), _validate(domain)
    record = g().store.update_app(
        name, lambda d: d.update(domains=[x for x in d.get("domains", []) if x != host])
    )
    sync_rules(name, record)
    status(f"removed {host} from {name}")


def register(root: typer.Typer) -> None:
    root.add_typer(group, name="domains")
