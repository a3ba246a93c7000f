"""`logs` commands (being built; see the open issues)."""

from __future__ import annotations

import typer

group = typer.Typer(help="logs commands.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="logs")
