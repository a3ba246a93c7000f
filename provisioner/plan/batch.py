"""One round trip per host: what a rollout sends a host to take a release and boot its new web
dynos (pure).

The host runs `dyno-ports batch` (templates/dyno/dyno-ports) with the document built here on
stdin: the app's user, the launcher, the release (fetched through its presigned URL, sha256
checked, unpacked), the env document, then for the new web dynos the port reservation (under
the host's lock), their unit files with the reserved port put in for PORT_MARK, their start and
the wait until each one's own process answers on its port. It used to be 8 round trips per
host (each a few ms of SSH plus sudo and a process start on the host).

Config values and the slug's URL are in the document, on stdin: never in an argv.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from provisioner.plan.ports import PortCheck, parse_port_checks

# Where a web unit's text has its port until the host reserved one (dyno-ports: PORT_MARK).
PORT_MARK = "@PORT@"


@dataclass(frozen=True)
class Release:
    """What unpack-release gets: its argv (as root) and the curl config naming the slug's URL."""

    argv: list[str]
    url: str


@dataclass(frozen=True)
class HostBatch:
    """Everything one host is sent in one round trip."""

    user_argv: list[str]  # creates the app's user unless it exists
    launcher_path: str
    launcher: str
    release: Release
    env_path: str
    env_document: str
    units: Mapping[str, str] = field(default_factory=dict)  # new web unit -> text (PORT_MARK)
    start_argv: list[str] = field(default_factory=list)  # start-units of those units
    port_range: tuple[int, int] = (0, 0)
    addr: str = ""  # the host's address, the router's view of its dynos
    boot_timeout_s: int = 60


def batch_argv(tool: str) -> list[str]:
    """argv (as root) of the batch: the dyno-ports tool's source as the program, so that stdin
    is free for the document."""
    return ["python3", "-I", "-c", tool, "batch"]


def batch_steps(batch: HostBatch) -> list[dict[str, Any]]:
    """The document's steps, in the order the host runs them."""
    steps: list[dict[str, Any]] = [
        {"op": "run", "name": "creating the app's user", "argv": batch.user_argv},
        {"op": "write", "path": batch.launcher_path, "mode": "0755", "text": batch.launcher},
        {
            "op": "run",
            "name": "unpack-release",
            "argv": batch.release.argv,
            "stdin": f'url = "{batch.release.url}"\n',
        },
        {"op": "write", "path": batch.env_path, "mode": "0600", "text": batch.env_document},
    ]
    units = sorted(batch.units)
    if not units:
        return steps
    low, high = batch.port_range
    return [
        *steps,
        {"op": "reserve", "low": low, "high": high, "units": units},
        {"op": "units", "files": {u: batch.units[u] for u in units}},
        {"op": "run", "name": "start-units", "argv": batch.start_argv},
        {"op": "wait", "addr": batch.addr, "timeout": batch.boot_timeout_s, "units": units},
    ]


def start_document(units: dict[str, str], start_argv: list[str]) -> bytes:
    """A batch that writes units (name -> text, ports filled in) and starts them: the units
    step calls off a pending stop of the same unit names (templates/dyno/stop-units)."""
    steps = [
        {"op": "units", "files": dict(sorted(units.items()))},
        {"op": "run", "name": "start-units", "argv": start_argv},
    ]
    return json.dumps({"steps": steps}, sort_keys=True).encode()


def batch_document(batch: HostBatch) -> bytes:
    """The batch's stdin."""
    return json.dumps({"steps": batch_steps(batch)}, sort_keys=True).encode()


@dataclass(frozen=True)
class BatchResult:
    reserved: dict[str, int]  # unit -> port, as the host reserved them
    checks: dict[int, PortCheck]  # port -> the wait's verdict


def parse_batch(text: str) -> BatchResult:
    """stdout of a batch: `reserved UNIT PORT` lines, then the wait's lines."""
    reserved = {}
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        unit, _, port = rest.partition(" ")
        if word == "reserved" and unit and port.isdigit():
            reserved[unit] = int(port)
    return BatchResult(reserved, parse_port_checks(text))
