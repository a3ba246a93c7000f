"""The local cloud: moto on the bridge gateway, EC2 instances as real nspawn hosts, HAProxy LBs.

Contract used by the rest of dynoform: the running daemon writes `<state dir>/cloud.json`
with at least {"endpoint": "http://198.18.0.1:<port>", "pid": <daemon pid>}.
"""

from __future__ import annotations

import json
import os

from provisioner import paths
from provisioner.errors import DynoformError


def read_cloud_file() -> dict[str, object] | None:
    path = paths.local_state_dir() / "cloud.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    pid = data.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return None
    return dict(data)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def endpoint_url() -> str:
    data = read_cloud_file()
    if not data or not data.get("endpoint"):
        raise DynoformError("the local cloud is not running", "start it with `dynoform local up`")
    return str(data["endpoint"])
