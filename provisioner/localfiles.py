"""The local cloud as the rest of dynoform sees it: files its daemon keeps in its state directory.

The local cloud itself (moto, hosts, HAProxy) is the `dynoform[local]` extra in
`provisioner.localcloud`; the product reaches it only through `Target.local`, this record of
where the daemon writes its endpoint, status, router log and CA. Nothing here imports it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.errors import DynoformError


@dataclass(frozen=True)
class LocalCloud:
    base: Path  # the state directory (paths.local_state_dir())

    @property
    def cloud_file(self) -> Path:
        """{"endpoint": "http://198.18.0.1:<port>", "pid": <daemon pid>} while it runs."""
        return self.base / "cloud.json"

    @property
    def status_file(self) -> Path:
        """Hosts, instances not realised, load balancers and their loopback listener URLs."""
        return self.base / "status.json"

    @property
    def router_log(self) -> Path:
        """One Heroku-like line per request the local router served."""
        return self.base / "router.log"

    @property
    def ca_dir(self) -> Path:
        """The local CA (kept across `local down`, so a CA the user trusted stays trusted)."""
        return self.base / "ca"

    def running(self) -> dict[str, Any] | None:
        """cloud.json of a live daemon, or None."""
        try:
            data = json.loads(self.cloud_file.read_text())
        except (OSError, ValueError):
            return None
        pid = data.get("pid") if isinstance(data, dict) else None
        if not isinstance(pid, int) or not alive(pid):
            return None
        return dict(data)

    def endpoint(self) -> str:
        """The local cloud's AWS endpoint; a clear error when it is not running."""
        data = self.running()
        if not data or not data.get("endpoint"):
            raise DynoformError(
                "the local cloud is not running", "start it with `dynoform local up`"
            )
        return str(data["endpoint"])

    def status(self) -> dict[str, Any]:
        try:
            data = json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return {}
        return dict(data) if isinstance(data, dict) else {}

    def listener_url(self, listener_arn: str, wait: float = 3.0) -> str | None:
        """The loopback URL the local router serves a listener on (it appears within ~1 s)."""
        deadline = time.monotonic() + wait
        while True:
            for lb in self.status().get("load_balancers") or []:
                for listener in lb.get("listeners", []):
                    if listener.get("arn") == listener_arn and listener.get("local_url"):
                        return str(listener["local_url"])
            if time.monotonic() > deadline:
                return None
            time.sleep(0.2)


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _state(pid) != "Z"


def _state(pid: int) -> str:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return text.rsplit(")", 1)[-1].split()[0]
