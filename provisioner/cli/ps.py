"""`ps`: dynos, scaling, sizes, restarts; `maintenance`."""

from __future__ import annotations

import typer

from provisioner.cli import autoscale
from provisioner.cli.common import AppOption, emit_json, g, print_table, resolve_app, status
from provisioner.model.formation import Formation
from provisioner.ops import ps as ops

group = typer.Typer(
    help="Dynos.\n\nExample: dynoform ps:scale web=2 worker=1 -a myapp", invoke_without_command=True
)
maintenance = typer.Typer(
    help="Maintenance mode.\n\nExample: dynoform maintenance:on -a myapp", no_args_is_help=True
)
COLUMNS = ["name", "type", "state", "host", "release", "since", "restarts", "memory_mb"]


@group.callback()
def ps(ctx: typer.Context, app: str = AppOption) -> None:
    """List dynos. Example: dynoform ps -a myapp --json"""
    if ctx.invoked_subcommand is not None:
        return
    name = resolve_app(app)
    rows = [dyno.to_dict() for dyno in ops.list_dynos(g().ctx, name)]
    if g().json:
        emit_json(rows)
    else:
        print_table(rows, COLUMNS, empty=f"no dynos for {name}: deploy, or scale with ps:scale")


def _changed(what: str, app: str, formation: Formation) -> None:
    summary = ", ".join(f"{k}={v.quantity}:{v.size}" for k, v in sorted(formation.items()))
    status(f"{what} {app}: {summary}")


@group.command("scale")
def scale(
    requests: list[str] = typer.Argument(..., help="TYPE=N, TYPE+N, TYPE-N or TYPE=N:SIZE."),
    app: str = AppOption,
) -> None:
    """Scale dynos. Example: dynoform ps:scale web=3 worker=1 -a myapp"""
    name = resolve_app(app)
    _changed("scaled", name, ops.scale(g().ctx, name, requests))


@group.command("type")
def resize(
    requests: list[str] = typer.Argument(..., help="TYPE=SIZE, e.g. web=standard-2x."),
    app: str = AppOption,
) -> None:
    """Change dyno sizes. Example: dynoform ps:type web=standard-2x -a myapp"""
    name = resolve_app(app)
    _changed("resized", name, ops.resize(g().ctx, name, requests))


@group.command("restart")
def restart(
    target: str = typer.Argument(None, help="A type (web) or dyno (web.1); default all."),
    app: str = AppOption,
) -> None:
    """Restart dynos (web: rolling, with preboot). Example: dynoform ps:restart web -a myapp"""
    name = resolve_app(app)
    _changed("restarted", name, ops.restart(g().ctx, name, target))


@group.command("stop")
def stop(
    dyno: str = typer.Argument(..., help="A dyno such as web.1, or a type."), app: str = AppOption
) -> None:
    """Stop dynos; the controller starts those of the formation again (as Heroku does).

    Example: dynoform ps:stop worker.1 -a myapp
    """
    name = resolve_app(app)
    stopped = ops.stop(g().ctx, name, dyno)
    status(f"stopped {', '.join(stopped)} of {name}")


def _set_maintenance(app: str | None, on: bool) -> None:
    name = resolve_app(app)
    ops.set_maintenance(g().ctx, name, on)
    status(f"maintenance mode is {'on' if on else 'off'} for {name}")


@maintenance.command("on")
def maintenance_on(app: str = AppOption) -> None:
    """The router answers 503 with a page. Example: dynoform maintenance:on -a myapp"""
    _set_maintenance(app, True)


@maintenance.command("off")
def maintenance_off(app: str = AppOption) -> None:
    """Serve the app again. Example: dynoform maintenance:off -a myapp"""
    _set_maintenance(app, False)


def register(root: typer.Typer) -> None:
    group.add_typer(autoscale.group, name="autoscale")
    root.add_typer(group, name="ps")
    root.add_typer(maintenance, name="maintenance")
