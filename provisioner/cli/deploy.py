"""`deploy` and `git:remote`: send source, build it on the fleet, release it."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from provisioner.cli.common import AppOption, emit_json, err, g, out, resolve_app, status
from provisioner.errors import DynoformError
from provisioner.ops import deploy as ops
from provisioner.ops import router

git_group = typer.Typer(
    help="Git integration.\n\nExample: dynoform git:remote -a myapp", no_args_is_help=True
)


def deploy(
    path: Path = typer.Argument(Path("."), help="The app's directory (a git repository or not)."),
    app: str = AppOption,
    ref: str = typer.Option(None, "--ref", help="Deploy this commit instead of HEAD / the tree."),
    wait: bool = typer.Option(False, "--wait", help="Wait for another operation to finish."),
    boot_timeout: float = typer.Option(
        60.0, "--boot-timeout", help="Seconds a web dyno has to bind $PORT."
    ),
    max_slug_mb: int = typer.Option(500, "--max-slug-mb", help="Refuse larger slugs (compressed)."),
) -> None:
    """Build and release an app. Example: dynoform deploy -a myapp examples/python"""
    name = resolve_app(app)
    result = ops.deploy_dir(g().ctx, name, path, ref, _build_line, wait, boot_timeout, max_slug_mb)
    url = router.web_url(g().ctx, name)
    if g().json:
        emit_json(
            {"app": name, "release": result.release.version, "build": result.build_id,
             "web_url": url}
        )  # fmt: skip
    elif url:
        out.print(url)


def _build_line(line: str) -> None:
    err.print(line, markup=False, highlight=False)
    sys.stderr.flush()


@git_group.command("remote")
def git_remote(app: str = AppOption) -> None:
    """Add the `dynoform` git remote (dynoform::APP). Example: dynoform git:remote -a myapp"""
    # Imported here: ops.apps brings the add-on, certificate and drain modules (~11 ms) that
    # `deploy` never uses.
    from provisioner.ops import apps as app_ops

    name = resolve_app(app)
    app_ops.get(g().ctx, name)
    change = app_ops.add_git_remote(name)
    if change is None:
        raise DynoformError("not inside a git repository", "run it in your app's repository")
    status(change)


def register(root: typer.Typer) -> None:
    root.command("deploy")(deploy)
    root.add_typer(git_group, name="git")
