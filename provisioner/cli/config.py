"""`config`: config vars; every change makes a new release."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from provisioner.cli.common import AppOption, emit_json, g, out, resolve_app, status
from provisioner.model.config import parse_assignment, parse_env_file
from provisioner.ops import config as ops

group = typer.Typer(
    help="Config vars.\n\nExample: dynoform config:set -a myapp SECRET_KEY=s3cr3t",
    invoke_without_command=True,
)


@group.callback()
def show(ctx: typer.Context, app: str = AppOption) -> None:
    """Show config vars. Example: dynoform config -a myapp --json"""
    if ctx.invoked_subcommand is not None:
        return
    config = ops.show(g().ctx, resolve_app(app))
    if g().json:
        emit_json(config)
        return
    width = max((len(k) for k in config), default=0)
    for key, value in config.items():
        out.print(f"{key + ':':<{width + 1}} {value}", markup=False)


@group.command("get")
def get(key: str = typer.Argument(...), app: str = AppOption) -> None:
    """Print one value. Example: dynoform config:get -a myapp SECRET_KEY"""
    sys.stdout.write(ops.get(g().ctx, resolve_app(app), key) + "\n")


@group.command("set")
def set_vars(
    assignments: list[str] = typer.Argument(None, help="KEY=VALUE pairs."),
    env_file: Path = typer.Option(None, "--env-file", help="Read KEY=VALUE lines from a file."),
    app: str = AppOption,
    wait: bool = typer.Option(False, "--wait", help="Wait for another operation to finish."),
) -> None:
    """Set config vars (a new release). Example: dynoform config:set -a myapp A=1 'B=two words'"""
    name = resolve_app(app)
    changes: dict[str, str] = {}
    if env_file is not None:
        changes.update(parse_env_file(env_file.read_text(encoding="utf-8")))
    for text in assignments or []:
        key, value = parse_assignment(text)
        changes[key] = value
    release = ops.set(g().ctx, name, changes, wait)
    status(f"set {', '.join(sorted(changes))} and restarted {name}: v{release.version}")


@group.command("unset")
def unset(
    keys: list[str] = typer.Argument(..., help="Names to remove."),
    app: str = AppOption,
    wait: bool = typer.Option(False, "--wait", help="Wait for another operation to finish."),
) -> None:
    """Remove config vars (a new release). Example: dynoform config:unset -a myapp A B"""
    name = resolve_app(app)
    release = ops.unset(g().ctx, name, keys, wait)
    status(f"unset {', '.join(keys)} and restarted {name}: v{release.version}")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="config")
