"""`builds` and `buildpacks`: build history, build output, and the app's buildpacks."""

from __future__ import annotations

import sys

import typer

from provisioner.cli.common import AppOption, emit_json, g, print_table, resolve_app
from provisioner.ops import buildpacks
from provisioner.ops import builds as ops

group = typer.Typer(
    help="Builds.\n\nExample: dynoform builds:output -a myapp", invoke_without_command=True
)
packs = typer.Typer(
    help="Buildpacks.\n\nExample: dynoform buildpacks:set /srv/dynoform/build/buildpacks/python -a myapp",
    invoke_without_command=True,
)


@group.callback()
def list_builds(ctx: typer.Context, app: str = AppOption) -> None:
    """List builds, newest first. Example: dynoform builds -a myapp --json"""
    if ctx.invoked_subcommand is not None:
        return
    rows = ops.history(g().ctx, resolve_app(app))
    if g().json:
        emit_json(rows)
    else:
        print_table(rows, ["id", "status", "description", "release", "buildpack", "created_at"])


@group.command("output")
def output(
    build_id: str = typer.Argument(None, help="Build id (default: the latest)."),
    app: str = AppOption,
) -> None:
    """Replay a build's output. Example: dynoform builds:output -a myapp"""
    ops.output(g().ctx, resolve_app(app), build_id, _line)


def _line(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


@packs.callback()
def list_packs(ctx: typer.Context, app: str = AppOption) -> None:
    """List the app's buildpacks. Example: dynoform buildpacks -a myapp"""
    if ctx.invoked_subcommand is not None:
        return
    packs_of = buildpacks.list_buildpacks(g().ctx, resolve_app(app))
    if g().json:
        emit_json(packs_of)
    else:
        for pack in packs_of or ["(detected automatically)"]:
            sys.stdout.write(pack + "\n")


@packs.command("set")
def set_pack(
    pack: str = typer.Argument(..., help="A buildpack directory on the build hosts."),
    app: str = AppOption,
) -> None:
    """Use exactly this buildpack. Example: dynoform buildpacks:set /srv/dynoform/build/buildpacks/static -a myapp"""
    buildpacks.set_buildpacks(g().ctx, resolve_app(app), [pack])


@packs.command("add")
def add_pack(pack: str = typer.Argument(...), app: str = AppOption) -> None:
    """Append a buildpack. Example: dynoform buildpacks:add /srv/dynoform/build/buildpacks/python -a myapp"""
    buildpacks.add_buildpack(g().ctx, resolve_app(app), pack)


@packs.command("clear")
def clear_packs(app: str = AppOption) -> None:
    """Go back to detection. Example: dynoform buildpacks:clear -a myapp"""
    buildpacks.set_buildpacks(g().ctx, resolve_app(app), [])


def register(root: typer.Typer) -> None:
    root.add_typer(group, name="builds")
    root.add_typer(packs, name="buildpacks")
