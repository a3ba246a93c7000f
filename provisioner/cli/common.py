"""What every command shares: global options, the chosen app, output helpers, the edges."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from provisioner.aws.session import Aws
from provisioner.aws.state import Documents, bucket_name
from provisioner.errors import DynoformError
from provisioner.model.names import validate_app_name
from provisioner.store import Lease, Store
from provisioner.targets import Target, get_target

# Data to stdout, everything else (progress, status, errors) to stderr.
out = Console(soft_wrap=True, highlight=False, width=None if sys.stdout.isatty() else 240)
err = Console(stderr=True, highlight=False, soft_wrap=True)

_STARTED = time.monotonic()
_REMOTE_RE = re.compile(r"dynoform::([a-z][a-z0-9-]{2,29})")


@dataclass
class Globals:
    target_name: str = "local"
    json: bool = False
    yes: bool = False
    verbose: int = 0

    @cached_property
    def target(self) -> Target:
        return get_target(self.target_name)

    @cached_property
    def aws(self) -> Aws:
        return Aws(self.target)

    @cached_property
    def store(self) -> Store:
        """The state store, its bucket made on first use."""
        docs = Documents(self.aws.s3, bucket_name(self.target.platform, self.aws.account_id()))
        docs.ensure_bucket(self.target.region)
        store = Store(docs)
        store.on_lease = self._repair_on_lease
        return store

    def _repair_on_lease(self, app: str, lease: Lease) -> None:
        """Before a command changes an app: repair what an interrupted one left."""
        from provisioner.ops import repair, rollout

        repair.on_lease(lambda: rollout.open_rollout(self, status), self.store, app, lease)


GLOBALS = Globals()


def g() -> Globals:
    return GLOBALS


def app_from_git_remote(cwd: str | None = None) -> str | None:
    """The app named by the `dynoform` git remote of the current repository, if any."""
    try:
        result = subprocess.run(
            ["git", "remote", "get-url", "dynoform"],
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _REMOTE_RE.fullmatch(result.stdout.strip()) if result.returncode == 0 else None
    return match.group(1) if match else None


def settled_app(app: str | None) -> str:
    """resolve_app for commands that show an app: an idle app that an interrupted command
    left half-way is repaired first, so what they show is what runs (ops/repair.py)."""
    from provisioner.ops import repair

    name = resolve_app(app)
    repair.settle(GLOBALS.store, name)
    return name


def resolve_app(app: str | None) -> str:
    """`-a APP`, else the `dynoform` git remote, else a clear error."""
    name = app or app_from_git_remote()
    if not name:
        raise DynoformError(
            "no app given", "pass -a APP, or run inside a repository with a `dynoform` git remote"
        )
    return validate_app_name(name)


AppOption = typer.Option(None, "--app", "-a", help="The app (default: the `dynoform` git remote).")


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def print_table(rows: list[dict[str, Any]], columns: list[str], empty: str = "none") -> None:
    if not rows:
        err.print(empty)
        return
    table = Table(box=None, show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column.upper())
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    out.print(table)


def confirm(question: str, expected: str | None = None, given: str | None = None) -> None:
    """Ask before destroying; `--yes` or `--confirm NAME` skip the question."""
    if expected is not None and given is not None:
        if given != expected:
            raise DynoformError(f"confirmation {given!r} does not match {expected!r}")
        return
    if GLOBALS.yes:
        return
    if not sys.stdin.isatty():
        hint = f"pass --confirm {expected}" if expected else "pass --yes"
        raise DynoformError(f"{question} needs confirmation", hint)
    answer = typer.prompt(f"{question} Type {expected or 'yes'} to confirm")
    if answer.strip() != (expected or "yes"):
        raise DynoformError("not confirmed; nothing changed")


def status(message: str) -> None:
    """A progress line on stderr; with -v it says how long the command has been running."""
    if GLOBALS.verbose:
        message = f"[{time.monotonic() - _STARTED:6.2f}s] {message}"
    err.print(message, markup=False)


# The layers below are imported when a command needs them: the CLI starts faster, and
# provisioner.ops imports this module's helpers itself.


def web_url(app: str) -> str | None:
    """The app's URL through the router (None before the platform exists)."""
    from provisioner.ops import router

    return router.web_url(GLOBALS, app)


def activator() -> Any:
    """The function that rolls an app's dynos to a release."""
    from provisioner.ops import rollout

    return rollout.activator(GLOBALS)


def destroy_app_resources(app: str) -> None:
    """Remove an app's dynos, router entries, certificates, stored objects and add-ons."""
    from provisioner.cli import addons
    from provisioner.ops import certs, rollout

    rollout.destroy_app(GLOBALS, app)
    certs.destroy_app_certs(GLOBALS, app)
    addons.destroy_app_addons(app)
