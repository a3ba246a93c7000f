"""The local cloud: moto on the bridge gateway, EC2 instances as real nspawn hosts, HAProxy LBs.

Contract used by the rest of dynoform: the running daemon writes `<state dir>/cloud.json`
with at least {"endpoint": "http://198.18.0.1:<port>", "pid": <daemon pid>}, and keeps
`<state dir>/status.json` current (hosts, instances not realised, load balancers).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from provisioner import paths
from provisioner.errors import DynoformError
from provisioner.localcloud.system import alive

BRIDGE = "dfbr0"
GATEWAY = "198.18.0.1"
CIDR = "198.18.0.0/15"
PREFIX_LEN = 15
DEFAULT_PORT = 4566
# Every iptables rule we add carries this comment, so `down` removes exactly ours.
RULE_TAG = "dynoform-local"
# Network namespaces and host-side veths we make start with these.
NETNS_PREFIX = "df-"
VETH_PREFIX = "dfv"
REGION = "us-east-1"
DEBIAN_SSM_PARAMETER = "/aws/service/debian/release/13/latest/amd64"
# What `pip install dynoform` leaves out and the local cloud runs on: moto's server (Flask).
EXTRA_MODULES = ("moto", "flask")
EXTRA_INSTALL = "pip install 'dynoform[local]'"


def require_extra() -> None:
    """The local cloud is the `local` extra: without its packages, one line saying how to get them."""
    for module in EXTRA_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            raise DynoformError(
                f"the local cloud needs {module}, which is not installed: {EXTRA_INSTALL}"
            ) from None


def state_dir() -> Path:
    return paths.local_state_dir()


def cloud_file() -> Path:
    return state_dir() / "cloud.json"


def status_file() -> Path:
    return state_dir() / "status.json"


def pid_file() -> Path:
    return state_dir() / "daemon.pid"


def log_file() -> Path:
    return state_dir() / "daemon.log"


def hosts_dir() -> Path:
    return state_dir() / "hosts"


def read_cloud_file() -> dict[str, object] | None:
    """cloud.json of a live daemon, or None."""
    try:
        data = json.loads(cloud_file().read_text())
    except (OSError, ValueError):
        return None
    pid = data.get("pid")
    if not isinstance(pid, int) or not alive(pid):
        return None
    return dict(data)


def read_status_file() -> dict[str, object]:
    try:
        data = json.loads(status_file().read_text())
    except (OSError, ValueError):
        return {}
    return dict(data) if isinstance(data, dict) else {}


def endpoint_url() -> str:
    data = read_cloud_file()
    if not data or not data.get("endpoint"):
        raise DynoformError("the local cloud is not running", "start it with `dynoform local up`")
    return str(data["endpoint"])
