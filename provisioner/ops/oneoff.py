"""One-off dynos (`dynoform run`, the release phase): the release's slug, config and isolation."""

from __future__ import annotations

import os
import select
import shlex
import sys
import time
from collections.abc import Callable

from provisioner.errors import DynoformError
from provisioner.model.release import Release
from provisioner.ops.buildhost import stream
from provisioner.ops.rollout import Rollout
from provisioner.plan.units import DynoInstance
from provisioner.remote.ssh import Connection
from provisioner.render import run_dyno_argv

Say = Callable[[str], None]


def oneoff_name() -> str:
    """`run.N`: unique enough per app for concurrent one-offs (units are named after it)."""
    return f"run.{int(time.time() * 1000) % 10_000_000}"


def _host_for(
    rollout: Rollout, app: str, release: Release, config: dict[str, str]
) -> tuple[str, Connection]:
    observed = rollout.observe()
    if not observed.hosts:
        raise DynoformError("no usable hosts", "add some: dynoform hosts:add")
    host = sorted(observed.hosts, key=lambda h: h.id)[0]
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
