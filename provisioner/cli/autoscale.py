"""`ps:autoscale`: web dynos scaled by the router's p95 response time, as Heroku's autoscaling."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from provisioner.cli.common import AppOption, emit_json, g, out, resolve_app, status
from provisioner.ops import autoscale as ops
from provisioner.plan.autoscale import DEFAULT_SCALE_IN_AFTER

group = typer.Typer(
    help="Autoscaling of web dynos by the p95 response time.\n\n"
    "Example: dynoform ps:autoscale:enable web --min 1 --max 6 --p95 300 -a myapp",
    invoke_without_command=True,
)


@group.callback()
def show(ctx: typer.Context, app: str = AppOption) -> None:
    """The policy and its last decisions. Example: dynoform ps:autoscale -a myapp --json"""
    if ctx.invoked_subcommand is not None:
        return
    state = ops.status(g().ctx, resolve_app(app))
    if g().json:
        emit_json(state.to_dict())
        return
    if state.policy is None:
        out.print(f"{state.app} is not autoscaled (dynoform ps:autoscale:enable web ...)")
        return
    now = "not deployed" if state.quantity is None else f"{state.quantity} now"
    out.print(f"{state.app} {state.policy.summary()} ({now})", markup=False)
    out.print("decisions:" if state.decisions else "decisions: none yet")
    for d in state.decisions:
        when = datetime.fromtimestamp(d.at, UTC).isoformat(timespec="seconds")
        out.print(f"  {when} {d.action}: {d.message}", markup=False)


@group.command("enable")
def enable(
    process_type: str = typer.Argument("web", help="The process type: web (the only one)."),
    low: int = typer.Option(1, "--min", help="Never fewer dynos."),
    high: int = typer.Option(..., "--max", help="Never more dynos."),
    p95: int = typer.Option(..., "--p95", help="The p95 response time goal, in ms."),
    scale_in_after: float = typer.Option(
        DEFAULT_SCALE_IN_AFTER,
        "--scale-in-after",
        help="Seconds the p95 must stay under half the goal (or the app quiet) per dyno removed.",
    ),
    app: str = AppOption,
) -> None:
    """Scale web between --min and --max to keep the p95 under --p95 ms.

    Example: dynoform ps:autoscale:enable web --min 1 --max 6 --p95 300 -a myapp
    """
    name = resolve_app(app)
    policy = ops.enable(g().ctx, name, process_type, low, high, p95, scale_in_after)
    status(f"autoscaling {name} {policy.summary()}")


@group.command("disable")
def disable(
    process_type: str = typer.Argument("web", help="The process type: web."),
    app: str = AppOption,
) -> None:
    """Stop autoscaling; the dynos stay as they are. Example: dynoform ps:autoscale:disable -a myapp"""
    name = resolve_app(app)
    policy = ops.disable(g().ctx, name, process_type)
    status(f"autoscaling of {policy.type} disabled for {name}: scale it with ps:scale")
