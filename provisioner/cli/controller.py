"""`controller`: the service on the fleet that heals hosts and dynos (ops/controller.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from provisioner.cli.common import emit_json, err, g, out
from provisioner.ops import controller as ops

group = typer.Typer(
    help="The controller on the fleet: it replaces lost hosts and restores dynos.\n\n"
    "Example: dynoform controller:status",
    no_args_is_help=True,
)


@group.command("status")
def status(
    recent: int = typer.Option(10, "--recent", "-n", help="How many recent actions to show."),
) -> None:
    """Who leads, its last loop, the declared and live hosts, and recent actions.

    Example: dynoform controller:status --json
    """
    state = ops.status(g().ctx, recent)
    if g().json:
        emit_json(state.to_dict())
        return
    out.print(f"leader: {state.leader or 'none (no controller holds the lease)'}")
    if state.leader_since:
        out.print(f"leading since: {state.leader_since}")
    loop = f"{state.last_loop_at} ({state.last_loop_seconds} s)" if state.last_loop_at else "none"
    out.print(f"last loop: {loop}")
    out.print(f"paused: {'yes' if state.paused else 'no'}")
    declared = "not declared" if state.declared_hosts is None else state.declared_hosts
    out.print(f"hosts: {state.alive_hosts} alive, {declared} declared")
    if state.lost_hosts:
        out.print(f"lost hosts: {', '.join(state.lost_hosts)}")
    out.print("recent actions:" if state.recent else "recent actions: none")
    for event in state.recent:
        when = datetime.fromtimestamp(event.at, UTC).isoformat(timespec="seconds")
        app = f" {event.app}:" if event.app else ""
        out.print(f"  {when}{app} {event.message}", markup=False)


@group.command("pause")
def pause() -> None:
    """Stop the controller acting (it keeps watching). Example: dynoform controller:pause"""
    ops.set_paused(g().ctx, True)
    err.print("controller paused: nothing is healed until `dynoform controller:resume`")


@group.command("resume")
def resume() -> None:
    """Let the controller act again. Example: dynoform controller:resume"""
    ops.set_paused(g().ctx, False)
    err.print("controller resumed")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="controller")
