"""`drains`: send an app's log lines (app, router, dynoform) to syslog or HTTPS log services."""

from __future__ import annotations

import typer

from provisioner.cli.common import AppOption, emit_json, g, out, print_table, resolve_app, status
from provisioner.ops import drains as ops

group = typer.Typer(
    help="Log drains: the app's log lines, as Heroku's syslog, to a log service.\n\n"
    "Example: dynoform drains:add syslog+tls://logs.example.com:6514 -a myapp",
    invoke_without_command=True,
)


@group.callback()
def list_drains(ctx: typer.Context, app: str = AppOption) -> None:
    """List the app's drains (credentials masked) with lines sent, dropped and waiting.

    Example: dynoform drains -a myapp --json"""
    if ctx.invoked_subcommand is not None:
        return
    found = ops.drains(g().ctx, resolve_app(app))
    if g().json:
        emit_json([d.to_dict() for d in found])
        return
    rows = [
        {
            "url": d.url,
            "token": d.token,
            "sent": d.sent,
            "dropped": d.dropped,
            "buffered": d.buffered,
            "last error": d.error or "",
        }
        for d in found
    ]
    columns = ["url", "token", "sent", "dropped", "buffered", "last error"]
    print_table(rows, columns, empty="no drains")


@group.command("add")
def add(
    url: str = typer.Argument(
        ..., help="syslog://host:port, syslog+tls://host:port or https://[user:pass@]host/path"
    ),
    app: str = AppOption,
) -> None:
    """Add a drain; prints its token. Example: dynoform drains:add syslog://logs.example.com:514"""
    drain = ops.add(g().ctx, resolve_app(app), url)
    if g().json:
        emit_json(drain.to_dict())
        return
    out.print(drain.token)
    status(f"added drain {drain.url}: app, router and dynoform lines go there within seconds")


@group.command("remove")
def remove(
    url: str = typer.Argument(..., help="The drain's URL (as listed, or in full) or its token."),
    app: str = AppOption,
) -> None:
    """Remove a drain. Example: dynoform drains:remove syslog://logs.example.com:514 -a myapp"""
    drain = ops.remove(g().ctx, resolve_app(app), url)
    status(f"removed drain {drain.url}")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="drains")
