"""`plan`, `apply`, `export` and `pipelines:promote`: the platform and apps from dynoform.toml."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from provisioner.cli.common import AppOption, confirm, emit_json, g, out, resolve_app, status
from provisioner.ops import manifest as ops
from provisioner.ops import pipelines
from provisioner.plan.manifest import Plan

FileOption = typer.Option(Path(ops.DEFAULT_FILE), "--file", "-f", help="The manifest.")
PruneOption = typer.Option(False, "--prune", help="Destroy apps the manifest does not name.")

pipelines_group = typer.Typer(
    help="Pipelines of apps (stages in the manifest).\n\n"
    "Example: dynoform pipelines:promote -a shop-staging",
    no_args_is_help=True,
)


def _show(result: Plan) -> None:
    for change in result.changes:
        out.print(change.line(), markup=False)
    for name in result.unmanaged:
        out.print(f"  unmanaged apps.{name} (not in the manifest; --prune destroys it)")
    count = len(result.changes)
    out.print(f"{count} change{'s' if count != 1 else ''}" if count else "no changes")


def plan(
    file: Path = FileOption,
    prune: bool = PruneOption,
    detailed_exitcode: bool = typer.Option(
        False, "--detailed-exitcode", help="Exit 2 when something would change, 0 when not."
    ),
) -> None:
    """What apply would change, in order. Example: dynoform plan --detailed-exitcode"""
    result = ops.plan(g().ctx, ops.load(file), prune)
    if g().json:
        emit_json(result.to_dict())
    else:
        _show(result)
    if detailed_exitcode and result.changes:
        raise typer.Exit(2)


def apply(
    file: Path = FileOption,
    prune: bool = PruneOption,
    auto_approve: bool = typer.Option(False, "--auto-approve", help="Do not ask (as --yes)."),
) -> None:
    """Make what exists match the manifest. Example: dynoform apply --auto-approve"""
    manifest = ops.load(file)
    result = ops.plan(g().ctx, manifest, prune)
    if not g().json:
        _show(result)
    if result.changes and not auto_approve:
        confirm(f"Apply {len(result.changes)} changes?")
    done = ops.apply(g().ctx, result, manifest)  # with no change: records the manifest
    if g().json:
        emit_json({"applied": done})
    elif done:
        status(f"applied {len(done)} changes")


def export() -> None:
    """Print a manifest of what exists (config as references). Example: dynoform export"""
    sys.stdout.write(ops.export(g().ctx))


@pipelines_group.command("promote")
def promote(
    app: str = AppOption,
    file: Path = FileOption,
    wait: bool = typer.Option(False, "--wait", help="Wait for another operation to finish."),
) -> None:
    """Release the app's slug on the next stage's app. Example: dynoform pipelines:promote -a x"""
    source = resolve_app(app)
    target = ops.pipeline_next(ops.load(file), source)
    done = pipelines.promote(g().ctx, source, target, wait)
    if g().json:
        emit_json({"source": source, "target": target, "release": done.release.version})
        return
    status(f"promoted {source} v{done.source_release} to {target}: v{done.release.version}")


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
    app.command("apply")(apply)
    app.command("export")(export)
    app.add_typer(pipelines_group, name="pipelines")
