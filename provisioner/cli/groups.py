"""Every command, in Heroku's order of topics, loaded only when it is the one invoked.

Importing every command module costs about half a second (they import all of ops/, boto3,
fabric, jinja2), paid before a deploy's first request and by `dynoform --help`. So the root
group knows each command by a row of COMMANDS, its module and its one-line help, and imports
a module only when one of its commands is resolved (tests/unit/test_cli_lazy.py checks that
every row matches the real command).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import typer
from typer.core import TyperCommand, TyperGroup

try:  # Typer 0.29+ bundles its own Click; older Typer uses the click package.
    from typer import _click as click
except ImportError:  # pragma: no cover
    import click  # type: ignore[no-redef]


@dataclass(frozen=True)
class Entry:
    module: str  # provisioner.cli.MODULE; its `register(app)` adds this command
    help: str  # the one-line help `dynoform --help` shows


# Commands first, then groups: the order Typer listed them in when all were registered.
COMMANDS: dict[str, Entry] = {
    "deploy": Entry("deploy", "Build and release an app."),
    "run": Entry("run", "Run a one-off dyno."),
    "logs": Entry("logs", "Show an app's logs."),
    "metrics": Entry(
        "metrics",
        "Router requests, responses by status, p50/p95/p99, and each dyno's memory, CPU and"
        " restarts.",
    ),
    "plan": Entry("manifest", "What apply would change, in order."),
    "apply": Entry("manifest", "Make what exists match the manifest."),
    "export": Entry("manifest", "Print a manifest of what exists (config as references)."),
    "dashboard": Entry(
        "dashboard",
        "Serve the dashboard until interrupted; prints its address, which holds a secret token.",
    ),
    "targets": Entry("targets", "Where platforms live."),
    "local": Entry(
        "local",
        "The local cloud: moto + real Debian hosts (systemd-nspawn) + HAProxy, on this machine.",
    ),
    "platform": Entry("platform", "The platform a target's hosts and apps live in."),
    "hosts": Entry("hosts", "The hosts dynos run on."),
    "controller": Entry(
        "controller", "The controller on the fleet: it replaces lost hosts and restores dynos."
    ),
    "apps": Entry("apps", "Apps."),
    "config": Entry("config", "Config vars."),
    "releases": Entry("releases", "Releases."),
    "builds": Entry("builds", "Builds."),
    "buildpacks": Entry("builds", "Buildpacks."),
    "git": Entry("deploy", "Git integration."),
    "ps": Entry("ps", "Dynos."),
    "maintenance": Entry("ps", "Maintenance mode."),
    "cron": Entry("cron", "Cron jobs: one-off dynos on a schedule (UTC), run by the controller."),
    "drains": Entry(
        "drains", "Log drains: the app's log lines, as Heroku's syslog, to a log service."
    ),
    "domains": Entry("domains", "Custom domains."),
    "certs": Entry("certs", "HTTPS certificates of custom domains."),
    "addons": Entry("addons", "Add-ons: Postgres and Redis as config vars."),
    "pg": Entry("addons", "Postgres add-ons."),
    "pipelines": Entry("manifest", "Pipelines of apps (stages in the manifest)."),
}

_loaded: dict[str, dict[str, click.Command]] = {}  # module → its commands, built once


def _no_options() -> None:
    """The holder's callback: the root's own options are parsed by the root."""


def load_module(module: str) -> dict[str, click.Command]:
    """The click commands that provisioner.cli.MODULE registers, by name."""
    if module not in _loaded:
        # Built as the root would build them: its markup mode (plain help, no rich).
        holder = typer.Typer(rich_markup_mode=None, add_completion=False)
        holder.callback()(_no_options)  # a callback makes the holder a group however many
        importlib.import_module(f"provisioner.cli.{module}").register(holder)
        group = typer.main.get_command(holder)
        assert isinstance(group, TyperGroup)
        _loaded[module] = dict(group.commands)
    return _loaded[module]


def load(name: str) -> click.Command:
    """The real command `name` of the table (imports its module)."""
    return load_module(COMMANDS[name].module)[name]


class LazyGroup(TyperGroup):
    """The root group: lists every command from COMMANDS, imports one only to run it.

    Until resolved, a command is a stub holding its one-line help, which is all `--help` and
    an unknown command's "Did you mean" read; `resolve_command` (running the command or
    showing its own --help) swaps in the real one.
    """

    def __init__(self, **attrs: object) -> None:
        super().__init__(**attrs)  # type: ignore[arg-type]
        for name, entry in COMMANDS.items():
            self.commands.setdefault(name, TyperCommand(name, help=entry.help))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] in COMMANDS:
            self.commands[args[0]] = load(args[0])
        return super().resolve_command(ctx, args)
