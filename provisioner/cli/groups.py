"""Every command group, registered on the root app in Heroku's order of topics."""

from __future__ import annotations

import importlib

import typer

# Each module defines `register(app)`; modules are small and own one topic each.
MODULES = [
    "targets",
    "local",
    "platform",
    "hosts",
    "controller",
    "apps",
    "config",
    "releases",
    "builds",
    "deploy",
    "ps",
    "run",
    "cron",
    "logs",
    "metrics",
    "drains",
    "domains",
    "certs",
    "addons",
    "manifest",
    "dashboard",
]

_done = False


def register(app: typer.Typer) -> None:
    global _done
    if _done:
        return
    for name in MODULES:
        module = importlib.import_module(f"provisioner.cli.{name}")
        module.register(app)
    _done = True
