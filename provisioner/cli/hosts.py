"""`hosts`: the machines dynos run on: add, list, bootstrap, exec, remove."""

from __future__ import annotations

import sys
import threading
import time

import typer
from rich.live import Live
from rich.table import Table

from provisioner.cli.common import confirm, emit_json, err, g, out, print_table
from provisioner.errors import DynoformError
from provisioner.ops import hosts


def say(message: str) -> None:
    """Status on stderr, one line per message however long (logs and tests grep them)."""
    err.print(message, markup=False, soft_wrap=True, highlight=False)


group = typer.Typer(
    help="The hosts dynos run on.\n\nExample: dynoform hosts:add --count 3",
    invoke_without_command=True,
)

_COLUMNS = ["id", "role", "private_ip", "zone", "type", "state", "bootstrapped", "dynos"]


class HostLines:
    """A progress line per host on stderr: redrawn on a terminal, appended otherwise."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.started = time.monotonic()
        self.rows: dict[int, tuple[str, str, float]] = {
            slot: ("", "waiting", self.started) for slot in range(count)
        }
        self.lock = threading.Lock()
        self.live: Live | None = None
        if err.is_terminal:
            self.live = Live(self, console=err.console, refresh_per_second=4, transient=False)

    def __rich__(self) -> Table:
        """Rendered again on every refresh, so the clocks keep running."""
        with self.lock:
            return self._table()

    def _table(self) -> Table:
        table = Table(box=None, show_header=False, pad_edge=False)
        now = time.monotonic()
        for slot, (host_id, state, _since) in sorted(self.rows.items()):
            table.add_row(
                f"host {slot + 1}/{self.count}",
                host_id or "-",
                f"{now - self.started:5.1f}s" if not state.startswith(("ready", "failed")) else "",
                state,
            )
        return table

    def __call__(self, slot: int, host_id: str, state: str) -> None:
        with self.lock:
            host_id = host_id or self.rows[slot][0]
            self.rows[slot] = (host_id, state, time.monotonic())
            elapsed = time.monotonic() - self.started
            if self.live is None:
                say(f"host {slot + 1}/{self.count} {host_id or '-'}: {state} ({elapsed:.1f} s)")
        if self.live is not None:
            self.live.refresh()  # outside our lock: Live's own lock is always taken first

    def __enter__(self) -> HostLines:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.stop()


@group.callback()
def list_hosts(ctx: typer.Context) -> None:
    """List the hosts. Example: dynoform hosts --json"""
    if ctx.invoked_subcommand is not None:
        return
    rows = [row.as_dict() for row in hosts.list_hosts(g().ctx)]
    if g().json:
        emit_json(rows)
    else:
        print_table(rows, _COLUMNS, empty="no hosts yet: dynoform hosts:add")


@group.command("add")
def add(
    count: int = typer.Option(1, "--count", "-n", help="How many hosts."),
    instance_type: str = typer.Option(hosts.DEFAULT_TYPE, "--type", help="EC2 instance type."),
) -> None:
    """Launch and bootstrap hosts in parallel. Example: dynoform hosts:add --count 3 --type t3.small"""
    with HostLines(count) as lines:
        added = hosts.add(g().ctx, count, instance_type, lines)
        for outcome in added.failed:
            lines(outcome.item, "", f"failed: {outcome.error}")
    failed = added.failed
    say(
        f"{len(added.ready)} of {count} hosts added in {added.seconds:.1f} s"
        + (f", {len(failed)} failed (terminated)" if failed else "")
    )
    if g().json:
        emit_json([{**h.as_dict(), "bootstrapped": True} for h in added.ready])
    else:
        for host in added.ready:
            out.print(host.id)
    if failed:
        raise DynoformError(f"{len(failed)} of {count} hosts failed and were terminated")


@group.command("bootstrap")
def bootstrap(
    ids: list[str] = typer.Argument(None, help="Hosts (default: all)."),
    check: bool = typer.Option(False, "--check", help="Show what would change; change nothing."),
) -> None:
    """Converge hosts to their role; --check only reports. Example: dynoform hosts:bootstrap --check"""
    results = hosts.bootstrap(g().ctx, ids or [], check)
    verb = "would change" if check else "changed"
    for result in results:
        if not result.ok:
            say(f"{result.id}: failed: {result.error}")
            continue
        say(f"{result.id}: {len(result.changes)} {verb}")
        for change in result.changes:
            say(f"  {verb} {change.name}: {'; '.join(change.reasons)}")
            if g().verbose:
                for action in change.actions:
                    say(f"    {action}")
    total = sum(len(r.changes) for r in results)
    say(f"{total} {'changes would be made' if check else 'changes'} on {len(results)} host(s)")
    if g().json:
        emit_json([r.as_dict() for r in results])
    failed = [r for r in results if not r.ok]
    if failed:
        raise DynoformError(f"{len(failed)} of {len(results)} hosts failed")


@group.command("exec", context_settings={"allow_interspersed_args": False})
def exec_(
    host_id: str = typer.Argument(..., help="The host."),
    command: list[str] = typer.Argument(..., help="The command and its arguments, after --."),
    timeout: float = typer.Option(600, "--timeout", help="Seconds before giving up."),
) -> None:
    """Run a command on a host as the login user. Example: dynoform hosts:exec i-0abc -- uptime"""
    if command and command[0] == "--":  # Click keeps `--` once positional parsing stopped
        command = command[1:]
    if not command:
        raise DynoformError("no command given", "dynoform hosts:exec ID -- uptime")
    result = hosts.exec_command(g().ctx, host_id, command, timeout)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


@group.command("remove")
def remove(
    host_id: str = typer.Argument(..., help="The host to terminate."),
    force: bool = typer.Option(False, "--force", help="Remove even if it cannot be checked."),
    confirm_id: str = typer.Option(None, "--confirm", help="The host id, to confirm."),
) -> None:
    """Terminate a host that runs no dynos. Example: dynoform hosts:remove i-0abc --confirm i-0abc"""
    confirm(f"This terminates host {host_id}.", expected=host_id, given=confirm_id)
    hosts.remove(g().ctx, host_id, force=force)
    say(f"removed host {host_id}")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="hosts")
