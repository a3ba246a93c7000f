"""What every command shares: global options, the chosen app, output helpers, the edges."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import typer

from provisioner.errors import DynoformError
from provisioner.model.names import validate_app_name

if TYPE_CHECKING:  # imported where used: `--help` and `--json` need neither (issue 23)
    from rich.console import Console

    from provisioner.context import Context
    from provisioner.targets import Target


class LazyConsole:
    """A rich Console made on its first use: rich's imports cost ~15 ms that `--help` and
    `--json` output never need."""

    def __init__(self, stdout: bool, **options: Any) -> None:
        self._stdout = stdout
        self._options = options

    @cached_property
    def console(self) -> Console:
        from rich.console import Console

        width = None if not self._stdout or sys.stdout.isatty() else 240
        return Console(stderr=not self._stdout, width=width, **self._options)

    def print(self, *objects: Any, **options: Any) -> None:
        self.console.print(*objects, **options)

    @property
    def is_terminal(self) -> bool:
        return self.console.is_terminal


# Data to stdout, everything else (progress, status, errors) to stderr.
out = LazyConsole(stdout=True, soft_wrap=True, highlight=False)
err = LazyConsole(stdout=False, highlight=False, soft_wrap=True)

_STARTED = time.monotonic()
_REMOTE_RE = re.compile(r"dynoform::([a-z][a-z0-9-]{2,29})")


@dataclass
class Globals:
    target_name: str = "local"
    json: bool = False
    yes: bool = False
    verbose: int = 0

    @cached_property
    def ctx(self) -> Context:
        """The one Context of this invocation; main() closes it."""
        from provisioner.context import Context
        from provisioner.targets import get_target

        return Context(get_target(self.target_name), say=status)

    @property
    def target(self) -> Target:
        return self.ctx.target

    def close(self) -> None:
        if "ctx" in self.__dict__:
            self.ctx.close()


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
    from rich.table import Table

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
