"""What operations need of a host: run a command, write a file. The SSH Connection
(provisioner.remote.ssh) is one; tests give a fake host that records what it was sent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from provisioner.remote.ssh import DEFAULT_TIMEOUT, Result


class HostRunner(Protocol):
    @property
    def name(self) -> str:
        """The host's name in messages (its instance id)."""
        ...

    def run(
        self,
        argv: Sequence[str],
        *,
        sudo: bool = False,
        stdin: bytes | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = False,
        label: str | None = None,
    ) -> Result:
        """Run argv on the host (as root with sudo=True); check=True raises on a non-zero exit.
        `label` names the command in errors instead of argv (a long program sent as an argument)."""
        ...

    def put(self, data: bytes, path: str, *, mode: str = "0644") -> object:
        """Write data to path (root-owned, atomically) with this mode."""
        ...
