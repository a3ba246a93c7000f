"""`logs`: every dyno, the router and platform events of an app, merged as on Heroku."""

from __future__ import annotations

import json
import sys

import typer

from provisioner import logs as lg
from provisioner.cli.common import AppOption, g, resolve_app
from provisioner.errors import ValidationError
from provisioner.ops import logs as ops
from provisioner.ops.rollout import open_rollout


def logs(
    app: str = AppOption,
    num: int = typer.Option(
        lg.DEFAULT_LINES, "--num", "-n", help="Lines of history (at most 1500)."
    ),
    tail: bool = typer.Option(False, "--tail", "-t", help="Keep following until interrupted."),
    ps: str = typer.Option(None, "--ps", "-p", help="Only this dyno (web.1) or type (web)."),
    source: str = typer.Option(None, "--source", "-s", help="app, router or dynoform."),
) -> None:
    """Show an app's logs. Example: dynoform logs -a myapp --tail --ps web"""
    name = resolve_app(app)
    if not 0 <= num <= lg.MAX_LINES:
        raise ValidationError("--num", f"must be between 0 and {lg.MAX_LINES}")
    if source and source not in lg.SOURCES:
        raise ValidationError("--source", "must be one of " + ", ".join(lg.SOURCES))
    g().store.app(name)
    rollout = open_rollout(g().ctx)
    domain = g().target.app_domain
    try:
        lines = lg.merge(lg.select(ops.history(rollout, name, num, domain), ps, source), num)
        for line in lines:
            _emit(line)
        if tail:
            follower = ops.Tail(rollout, name, domain, lambda line: _filtered(line, ps, source))
            try:
                follower.run()
            except KeyboardInterrupt:
                follower.stop.set()
    finally:
        rollout.fleet.close()


def _filtered(line: lg.LogLine, ps: str | None, source: str | None) -> None:
    if lg.select([line], ps, source):
        _emit(line)


def _emit(line: lg.LogLine) -> None:
    text = json.dumps(line.to_dict(), ensure_ascii=False) if g().json else line.format()
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def register(root: typer.Typer) -> None:
    root.command("logs")(logs)
