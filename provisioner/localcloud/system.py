"""Machine facts and commands for the local cloud: requirements, argv runs, process checks."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from provisioner.errors import DynoformError
from provisioner.localfiles import alive

log = logging.getLogger("dynoform.localcloud")

# Command -> the Debian package that provides it.
TOOLS = {
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "haproxy": "haproxy",
    "iptables": "iptables",
    "ip": "iproute2",
}
_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


class CommandError(DynoformError):
    pass


def missing_tools(which: dict[str, str | None]) -> list[str]:
    """Tools whose lookup came back empty (pure: `which` maps tool -> path or None)."""
    return [tool for tool in TOOLS if not which.get(tool)]


def install_hint(missing: Sequence[str]) -> str:
    packages = sorted({TOOLS[tool] for tool in missing})
    return "apt-get install -y " + " ".join(packages)


def find_tool(tool: str) -> str | None:
    path = os.environ.get("PATH", "") + ":" + ":".join(_SBIN)
    return shutil.which(tool, path=path)


def check_requirements() -> None:
    """Root, Linux and the tools; a clear error saying what is missing and how to get it."""
    if not sys.platform.startswith("linux"):
        raise DynoformError(
            f"the local cloud needs Linux (this is {sys.platform})",
            "use an AWS target, or run dynoform on a Linux machine",
        )
    if os.geteuid() != 0:
        raise DynoformError(
            "the local cloud needs root", "run it with sudo: sudo dynoform local up"
        )
    missing = missing_tools({tool: find_tool(tool) for tool in TOOLS})
    if missing:
        raise DynoformError(f"missing tools: {', '.join(missing)}", install_hint(missing))


def run(argv: Sequence[str], check: bool = True, timeout: float = 120) -> str:
    """Run argv (never a shell); return stdout; raise CommandError with stderr on failure."""
    env = dict(os.environ)
    env["PATH"] = env.get("PATH", "") + ":" + ":".join(_SBIN)
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
    if check and result.returncode != 0:
        raise CommandError(f"{' '.join(argv)} failed: {result.stderr.strip()[:500]}")
    return result.stdout


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def kill_and_wait(pid: int, sig: int = signal.SIGTERM, timeout: float = 30) -> bool:
    """Signal pid, wait for it to go, SIGKILL after timeout. True when it is gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    for _ in range(100):
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below root, deepest first (so they unmount in order)."""
    found = []
    prefix = str(root).rstrip("/") + "/"
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        point = fields[1].replace("\\040", " ")
        if point == str(root) or point.startswith(prefix):
            found.append(point)
    return sorted(found, key=len, reverse=True)


def umount(point: str) -> None:
    run(["umount", point], check=False)
    if Path(point).is_mount():  # busy: detach it lazily rather than leave it behind
        run(["umount", "-l", point], check=False)


def children(pid: int) -> list[int]:
    """Direct children of pid (from /proc/PID/task/*/children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.extend(int(p) for p in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return found


def descendants(pid: int) -> list[int]:
    result, todo = [], [pid]
    while todo:
        current = todo.pop()
        result.append(current)
        todo.extend(children(current))
    return result


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total


def processes_mentioning(text: str, programs: tuple[str, ...]) -> list[int]:
    """Pids of programs (by argv[0] basename) whose command line mentions text."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        argv = cmdline(int(entry.name))
        if argv and Path(argv[0]).name in programs and any(text in arg for arg in argv):
            found.append(int(entry.name))
    return found
