"""`local up`, `local down`, `local status`: start, stop and inspect the local cloud daemon."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from provisioner.errors import DynoformError
from provisioner.localcloud import (
    BRIDGE,
    RULE_TAG,
    cloud_file,
    hosts_dir,
    log_file,
    network,
    pid_file,
    read_cloud_file,
    read_status_file,
    state_dir,
    status_file,
)
from provisioner.localcloud.system import (
    alive,
    check_requirements,
    cmdline,
    kill_and_wait,
    mounts_under,
    processes_mentioning,
    read_pid,
    run,
    umount,
)

Progress = Callable[[str], None]
UP_TIMEOUT = 900  # a first image build on a slow mirror can take minutes
_OUR_PROGRAMS = ("systemd-nspawn", "haproxy")


def _quiet(_: str) -> None:
    pass


def daemon_pid() -> int | None:
    """The pid of a live daemon of ours (pid file + /proc check), else None."""
    pid = read_pid(pid_file())
    if pid is None or not alive(pid):
        return None
    if "provisioner.localcloud.daemon" not in " ".join(cmdline(pid)):
        return None  # a recycled pid that belongs to something else
    return pid


@contextmanager
def _locked() -> Iterator[None]:
    """One `up` or `down` at a time on this machine (several users share one local cloud)."""
    state = state_dir()
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o700)
    with open(state / "control.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def up(progress: Progress = _quiet) -> dict[str, Any]:
    """Start the daemon unless it runs; returns cloud.json plus `"started"`."""
    check_requirements()
    with _locked():
        return _up(progress)


def _up(progress: Progress) -> dict[str, Any]:
    if daemon_pid() is not None:
        data = read_cloud_file()
        if data:
            return {**data, "started": False}
        progress("the local cloud is starting already; waiting for it")
        return {**_wait_ready(daemon_pid() or 0, progress), "started": False}
    removed = clean_leftovers()
    if removed:
        progress(f"cleaned what a previous run left: {', '.join(removed)}")
    state = state_dir()
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o700)
    with open(log_file(), "ab") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "provisioner.localcloud.daemon"],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd="/",
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    pid_file().write_text(f"{proc.pid}\n")
    return {**_wait_ready(proc.pid, progress, proc), "started": True}


def _wait_ready(
    pid: int, progress: Progress, proc: subprocess.Popen[bytes] | None = None
) -> dict[str, Any]:
    deadline = time.monotonic() + UP_TIMEOUT
    shown = ""
    while time.monotonic() < deadline:
        data = read_cloud_file()
        if data and data.get("pid") == pid:
            return data
        exited = proc.poll() is not None if proc else not alive(pid)
        if exited:
            raise DynoformError(
                f"the local cloud daemon exited during start: {_log_tail()}",
                f"see {log_file()}",
            )
        phase = _read(state_dir() / "phase")
        if phase and phase != shown:
            progress(phase)
            shown = phase
        time.sleep(0.1)
    raise DynoformError("the local cloud did not become ready in time", f"see {log_file()}")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _log_tail(lines: int = 5) -> str:
    text = _read(log_file())
    return " | ".join(text.splitlines()[-lines:]) or "no log"


def down(progress: Progress = _quiet, timeout: float = 90) -> dict[str, Any]:
    """Stop the daemon (it powers hosts off), then remove anything still left."""
    check_requirements()
    with _locked():
        return _down(progress, timeout)


def _down(progress: Progress, timeout: float) -> dict[str, Any]:
    pid = daemon_pid()
    stopped = False
    if pid is not None:
        progress("stopping the local cloud (powering hosts off)")
        stopped = kill_and_wait(pid, signal.SIGTERM, timeout=timeout)
    removed = clean_leftovers()
    return {"was_running": pid is not None, "stopped": stopped, "cleaned": removed}


def clean_leftovers() -> list[str]:
    """Remove what a dead daemon left: processes, mounts, namespaces, veths, bridge, rules."""
    removed: list[str] = []
    state = state_dir()
    if daemon_pid() is not None:
        raise DynoformError("the local cloud is running", "stop it with `dynoform local down`")
    for pid in _our_processes(state):
        kill_and_wait(pid, signal.SIGTERM, timeout=15)
        removed.append(f"process {pid}")
    for point in mounts_under(state):
        umount(point)
        removed.append(f"mount {point}")
    removed.extend(network.leftovers_delete())
    count = network.rules_delete()
    if count:
        removed.append(f"{count} iptables rule(s) tagged {RULE_TAG}")
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        removed.append(f"bridge {BRIDGE}")
    network.bridge_down(state)
    if hosts_dir().exists():
        shutil.rmtree(hosts_dir(), ignore_errors=True)
    for path in (cloud_file(), status_file(), pid_file(), state / "phase"):
        path.unlink(missing_ok=True)
    return removed


def _our_processes(state: Path) -> list[int]:
    """nspawn pids recorded by hosts, and any nspawn/haproxy whose argv names our state dir."""
    pids = set(processes_mentioning(str(state) + "/", _OUR_PROGRAMS))
    for pid_path in hosts_dir().glob("*/nspawn.pid") if hosts_dir().exists() else []:
        pid = read_pid(pid_path)
        if pid and alive(pid) and "systemd-nspawn" in " ".join(cmdline(pid)[:1]):
            pids.add(pid)
    return sorted(pids)


def status() -> dict[str, Any]:
    pid = daemon_pid()
    base: dict[str, Any] = {
        "running": False,
        "endpoint": None,
        "pid": None,
        "state_dir": str(state_dir()),
        "hosts": [],
        "not_realised": [],
        "load_balancers": [],
    }
    if pid is None:
        left = {kind: items for kind, items in leftovers().items() if items}
        return {**base, "leftovers": left} if left else base
    data = read_status_file()
    cloud = read_cloud_file() or {}
    if not data:
        return {
            **base,
            "running": True,
            "pid": pid,
            "endpoint": cloud.get("endpoint"),
            "phase": _read(state_dir() / "phase"),
        }
    return {**base, **data, "running": True, "pid": pid}


def leftovers() -> dict[str, list[str]]:
    """What of ours exists on the machine now (for tests and `status` after a crash)."""
    state = state_dir()
    listing = run(["iptables", "-w", "-t", "nat", "-S"], check=False)
    listing += run(["iptables", "-w", "-S"], check=False)
    return {
        "netns": network.our_netns(),
        "veths": network.our_veths(),
        "bridge": [BRIDGE] if Path(f"/sys/class/net/{BRIDGE}").exists() else [],
        "mounts": mounts_under(state),
        "rules": [line for line in listing.splitlines() if RULE_TAG in line],
        "processes": [str(p) for p in _our_processes(state)],
    }
