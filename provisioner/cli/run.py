"""`run`: a one-off dyno with the app's release and config."""

from __future__ import annotations

import shlex
import sys

import typer

from provisioner.cli.common import AppOption, g, resolve_app
from provisioner.ops import oneoff


def run(
    command: list[str] = typer.Argument(..., help="The command, after --."),
    app: str = AppOption,
    detach: bool = typer.Option(False, "--detach", "-d", help="Run in the background; see logs."),
    no_tty: bool = typer.Option(False, "--no-tty", help="Never allocate a terminal."),
) -> None:
    """Run a one-off dyno. Example: dynoform run -a myapp -- python manage.py migrate"""
    name = resolve_app(app)
    line = command[0] if len(command) == 1 else shlex.join(command)
    interactive = not detach and not no_tty and sys.stdin.isatty() and sys.stdout.isatty()
    code = oneoff.run(g().ctx, name, line, _print, detach=detach, interactive=interactive)
    raise typer.Exit(code)


def _print(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def register(root: typer.Typer) -> None:
    root.command("run", context_settings={"allow_interspersed_args": False})(run)
