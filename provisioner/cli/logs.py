"""`logs`: every dyno, the router and platform events of an app, merged as on Heroku."""

from __future__ import annotations

import json
import sys

import typer

from provisioner import logs as lg
from provisioner.cli.common import AppOption, g, resolve_app
from provisioner.ops import logs as ops


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
    for line in ops.history(g().ctx, name, num, ps, source):
        _emit(line)
    if tail:
        follower = ops.Tail(g().ctx, name, _emit, ps, source)
        try:
            follower.run()
        except KeyboardInterrupt:
            follower.stop.set()


def _emit(line: lg.LogLine) -> None:
    text = json.dumps(line.to_dict(), ensure_ascii=False) if g().json else line.format()
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def register(root: typer.Typer) -> None:
    root.command("logs")(logs)
