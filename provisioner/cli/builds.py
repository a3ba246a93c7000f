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
    help="Buildpacks.\n\nExample: dynoform buildpacks:set https://github.com/heroku/heroku-buildpack-nodejs -a myapp",
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
    """List the app's buildpacks, in the order they run. Example: dynoform buildpacks -a myapp"""
    if ctx.invoked_subcommand is not None:
        return
    packs_of = buildpacks.list_buildpacks(g().ctx, resolve_app(app))
    if g().json:
        emit_json(packs_of)
        return
    for number, pack in enumerate(packs_of, start=1):
        sys.stdout.write(f"{number}. {pack}\n")
    if not packs_of:
        sys.stdout.write("(detected automatically)\n")


PackArgument = typer.Argument(
    ..., help="A git URL (https://host/repo.git#ref), a tarball URL, or a buildpack directory."
)
IndexOption = typer.Option(None, "--index", "-i", help="1-based position in the list.")


@packs.command("set")
def set_pack(pack: str = PackArgument, app: str = AppOption, index: int = IndexOption) -> None:
    """Set the buildpack (replacing the first, or the one at --index).

    Example: dynoform buildpacks:set https://github.com/heroku/heroku-buildpack-python -a myapp"""
    buildpacks.set_buildpack(g().ctx, resolve_app(app), pack, index)


@packs.command("add")
def add_pack(pack: str = PackArgument, app: str = AppOption, index: int = IndexOption) -> None:
    """Append a buildpack (or insert it at --index).

    Example: dynoform buildpacks:add --index 1 https://example.com/bp.tgz -a myapp"""
    buildpacks.add_buildpack(g().ctx, resolve_app(app), pack, index)


@packs.command("remove")
def remove_pack(
    pack: str = typer.Argument(None, help="The buildpack's URL or directory."),
    app: str = AppOption,
    index: int = IndexOption,
) -> None:
    """Remove a buildpack, by URL or directory or by --index. Example: dynoform buildpacks:remove --index 2 -a myapp"""
    buildpacks.remove_buildpack(g().ctx, resolve_app(app), pack, index)


@packs.command("clear")
def clear_packs(app: str = AppOption) -> None:
    """Go back to detection. Example: dynoform buildpacks:clear -a myapp"""
    buildpacks.set_buildpacks(g().ctx, resolve_app(app), [])


def register(root: typer.Typer) -> None:
    root.add_typer(group, name="builds")
    root.add_typer(packs, name="buildpacks")
