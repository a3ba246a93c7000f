"""`certs`: HTTPS certificates for an app's custom domains."""

from __future__ import annotations

from pathlib import Path

import typer

from provisioner.cli.common import AppOption, emit_json, g, out, print_table, resolve_app, status
from provisioner.ops import certs
from provisioner.ops.certs import CertAdded, CertRow

group = typer.Typer(
    help=(
        "HTTPS certificates of custom domains. Each custom domain gets an automatic one from"
        " ACM when added; certs:add brings your own.\n\n"
        "Example: dynoform certs:add server.crt server.key -a myapp"
    ),
    invoke_without_command=True,
)
COLUMNS = ["id", "kind", "names", "status", "serving", "expires", "issuer"]


def _show(shown: CertRow | CertAdded) -> None:
    if g().json:
        emit_json(shown.as_dict())
        return
    row = shown.cert if isinstance(shown, CertAdded) else shown
    out.print(f"{row.id}  {', '.join(row.names)}  expires {row.expires}")


@group.callback()
def list_certs(ctx: typer.Context, app: str = AppOption) -> None:
    """List an app's certificates. Example: dynoform certs -a myapp --json"""
    if ctx.invoked_subcommand is not None:
        return
    rows = [row.as_dict() for row in certs.rows(g().ctx, resolve_app(app))]
    if g().json:
        emit_json(rows)
        return
    table = [
        dict(r, names=", ".join(r["names"]), serving="yes" if r["serving"] else "no") for r in rows
    ]
    print_table(table, COLUMNS, empty="no certificates (domains:add requests them)")


@group.command("add")
def add(
    cert_file: Path = typer.Argument(..., help="PEM certificate, then any intermediates."),
    key_file: Path = typer.Argument(..., help="Its PEM private key (not encrypted)."),
    app: str = AppOption,
) -> None:
    """Serve your own certificate for the app's domains it covers (instead of automatic ones).

    Example: dynoform certs:add server.crt server.key -a myapp"""
    _show(certs.add(g().ctx, resolve_app(app), cert_file, key_file))


@group.command("update")
def update(
    cert_id: str = typer.Argument(..., help="The certificate's id (see `dynoform certs`)."),
    cert_file: Path = typer.Argument(..., help="PEM certificate, then any intermediates."),
    key_file: Path = typer.Argument(..., help="Its PEM private key (not encrypted)."),
    app: str = AppOption,
) -> None:
    """Renew a certificate you added, in place (served without a gap).

    Example: dynoform certs:update 3f2a9c1e renewed.crt renewed.key -a myapp"""
    _show(certs.update(g().ctx, resolve_app(app), cert_id, cert_file, key_file))


@group.command("remove")
def remove(
    cert_id: str = typer.Argument(..., help="The certificate's id (see `dynoform certs`)."),
    app: str = AppOption,
) -> None:
    """Stop serving a certificate you added and delete it from ACM; its domains get automatic
    certificates again. Example: dynoform certs:remove 3f2a9c1e -a myapp"""
    for line in certs.remove(g().ctx, resolve_app(app), cert_id):
        status(line)


def register(root: typer.Typer) -> None:
    root.add_typer(group, name="certs")
