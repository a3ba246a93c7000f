"""One-off dynos (`dynoform run`, the release phase): the release's slug, config and isolation."""

from __future__ import annotations

import os
import select
import shlex
import sys
import time
from collections.abc import Callable, Mapping

from provisioner.aws import instances
from provisioner.context import Context
from provisioner.errors import DynoformError
from provisioner.model.release import Release
from provisioner.ops.buildhost import apt_install, stream
from provisioner.ops.rollout import Rollout, open_rollout
from provisioner.plan.units import DynoInstance
from provisioner.remote.ssh import Connection
from provisioner.render import run_dyno_argv

Say = Callable[[str], None]


def run(
    ctx: Context,
    app: str,
    command: str,
    on_output: Say | None = None,
    detach: bool = False,
    interactive: bool = False,
    tools: Mapping[str, str] | None = None,
) -> int:
    """Run a shell command line in a one-off dyno of the app's current release and config;
    returns its exit status (0 at once when detached: its output goes to the logs).

    Its output goes to on_output (default: ctx.say); interactive attaches this terminal
    instead. tools: commands it needs on its host, each with the Debian package that has it
    (installed once per host), e.g. {"psql": "postgresql-client"}.
    """
    store = ctx.store
    release = store.current_release(app)
    if release is None or not release.slug_key:
        raise DynoformError(f"{app} has no deployed release", "deploy first: dynoform deploy")
    config = store.release_config(app, release.version)
    rollout = open_rollout(ctx)
    if tools:
        ensure_tools(rollout, tools)
    if interactive:
        return run_interactive(rollout, app, release, config, command)
    output = on_output or ctx.say
    return run_oneoff(rollout, app, release, config, command, output, detach=detach)


def ensure_tools(rollout: Rollout, tools: Mapping[str, str]) -> None:
    """Install the packages of the tools missing on the host one-off dynos run on."""
    observed = rollout.observe()
    if not observed.hosts:
        return  # run_oneoff says there are no hosts
    host = _oneoff_host(observed.hosts)
    conn = rollout.conn(host.id, observed)
    missing = [
        package
        for tool, package in sorted(tools.items())
        if not conn.run(["sh", "-c", 'command -v "$1"', "sh", tool]).ok
    ]
    if missing:
        rollout.say(f"installing {', '.join(sorted(tools))} on {host.id} (once per host)")
        apt_install(conn, missing)


def _oneoff_host(hosts: list[instances.Host]) -> instances.Host:
    """One-off dynos run on the first host by id."""
    return sorted(hosts, key=lambda h: h.id)[0]


def oneoff_name() -> str:
    """`run.N`: unique enough per app for concurrent one-offs (units are named after it)."""
    return f"run.{int(time.time() * 1000) % 10_000_000}"


def _host_for(
    rollout: Rollout, app: str, release: Release, config: dict[str, str]
) -> tuple[str, Connection]:
    observed = rollout.observe()
    if not observed.hosts:
        raise DynoformError("no usable hosts", "add some: dynoform hosts:add")
    host = _oneoff_host(observed.hosts)
    rollout.prepare_hosts(observed, app, release, config, {host.id})
    return host.id, rollout.conn(host.id, observed)


def run_oneoff(
    rollout: Rollout,
    app: str,
    release: Release,
    config: dict[str, str],
    command: str,
    on_output: Say,
    detach: bool = False,
) -> int:
    """Run command in a one-off dyno; its output goes to on_output; returns its exit status."""
    host_id, conn = _host_for(rollout, app, release, config)
    instance = DynoInstance(app, release.version, oneoff_name(), host_id)
    argv = run_dyno_argv(instance, command, tty=False, detach=detach)
    if detach:
        conn.run(argv, sudo=True, check=True)
        rollout.say(f"running `{command}` as {instance.name} on {host_id} (see `dynoform logs`)")
        return 0
    return stream(conn, argv, on_output, timeout=24 * 3600)


def run_interactive(
    rollout: Rollout, app: str, release: Release, config: dict[str, str], command: str
) -> int:
    """An attached one-off with a terminal: keystrokes go to the dyno, the screen comes back."""
    import termios
    import tty

    host_id, conn = _host_for(rollout, app, release, config)
    instance = DynoInstance(app, release.version, oneoff_name(), host_id)
    argv = run_dyno_argv(instance, command, tty=True)
    chan = conn.transport.open_session(timeout=10)
    size = os.get_terminal_size()
    chan.get_pty(term=os.environ.get("TERM", "xterm"), width=size.columns, height=size.lines)
    chan.exec_command(shlex.join(["sudo", "-n", "--", *argv] if conn.sudo else argv))
    saved = termios.tcgetattr(sys.stdin)
    try:
        tty.setraw(sys.stdin.fileno())
        while not chan.exit_status_ready() or chan.recv_ready():
            ready, _, _ = select.select([chan, sys.stdin], [], [], 0.2)
            if chan in ready and chan.recv_ready():
                os.write(sys.stdout.fileno(), chan.recv(65536))
            if sys.stdin in ready:
                data = os.read(sys.stdin.fileno(), 1024)
                if not data:
                    chan.shutdown_write()
                else:
                    chan.sendall(data)
        return chan.recv_exit_status()
    finally:
        termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved)
        chan.close()
