"""`domains`: custom hostnames routed to an app, beside <app>.<platform domain>."""

from __future__ import annotations

import typer

from provisioner.cli.common import AppOption, emit_json, g, print_table, resolve_app, status
from provisioner.ops import domains as ops

group = typer.Typer(
    help="Custom domains.\n\nExample: dynoform domains:add www.example.com -a myapp",
    invoke_without_command=True,
)


@group.callback()
def list_domains(ctx: typer.Context, app: str = AppOption) -> None:
    """List an app's hostnames and their certificates. Example: dynoform domains -a myapp --json"""
    if ctx.invoked_subcommand is not None:
        return
    rows = [row.as_dict() for row in ops.list_domains(g().ctx, resolve_app(app))]
    if g().json:
        emit_json(rows)
    else:
        print_table(rows, ["hostname", "kind", "certificate"])


@group.command("add")
def add(domain: str = typer.Argument(...), app: str = AppOption) -> None:
    """Route a hostname to the app and give it an HTTPS certificate.

    Example: dynoform domains:add www.example.com -a myapp"""
    added = ops.add(g().ctx, resolve_app(app), domain)
    for line in added.cert_lines:
        status(line)
    status(added.dns_hint)


@group.command("remove")
def remove(domain: str = typer.Argument(...), app: str = AppOption) -> None:
    """Stop routing a hostname (its automatic certificate goes too).

    Example: dynoform domains:remove www.example.com -a myapp"""
    for line in ops.remove(g().ctx, resolve_app(app), domain).cert_lines:
        status(line)


@group.command("wait")
def wait(
    domains: list[str] = typer.Argument(None, help="Domains to wait for (default: all)."),
    app: str = AppOption,
    timeout: int = typer.Option(1800, help="Give up after this many seconds."),
) -> None:
    """Wait until ACM has issued the domains' certificates, and serve them.

    Example: dynoform domains:wait www.example.com -a myapp"""
    name = resolve_app(app)
    served = ops.wait(g().ctx, name, domains or [], timeout)
    for line in served.cert_lines:
        status(line)
    status(
        f"{', '.join(served.domains) or 'every domain of ' + name}: certificate issued and served"
    )


def register(root: typer.Typer) -> None:
    root.add_typer(group, name="domains")
