"""The local cloud: moto on the bridge gateway, EC2 instances as real nspawn hosts, HAProxy LBs.

Contract used by the rest of dynoform (which reads it through `Target.local`, see
provisioner/localfiles.py): the running daemon writes `<state dir>/cloud.json` with at least
{"endpoint": "http://198.18.0.1:<port>", "pid": <daemon pid>}, keeps `<state dir>/status.json`
current (hosts, instances not realised, load balancers) and the router's log in `router.log`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from provisioner import paths
from provisioner.errors import DynoformError
from provisioner.localfiles import LocalCloud

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


def files() -> LocalCloud:
    """The files the daemon keeps for the rest of dynoform (which reads them through the
    target: `Target.local`)."""
    return LocalCloud(state_dir())


def cloud_file() -> Path:
    return files().cloud_file


def status_file() -> Path:
    return files().status_file


def pid_file() -> Path:
    return state_dir() / "daemon.pid"


def log_file() -> Path:
    return state_dir() / "daemon.log"


def hosts_dir() -> Path:
    return state_dir() / "hosts"


def read_cloud_file() -> dict[str, object] | None:
    """cloud.json of a live daemon, or None."""
    return files().running()


def read_status_file() -> dict[str, object]:
    return files().status()


def endpoint_url() -> str:
    return files().endpoint()
