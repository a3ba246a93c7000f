"""Pure decisions of the local cloud's reconciler: which instances become hosts, and why not.

No I/O here: instances (as describe_instances returns them) in, decisions out.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from provisioner.localcloud import CIDR, GATEWAY

RUNNING, STOPPED, GONE = "running", "stopped", "gone"
_DESIRED = {
    "pending": RUNNING,
    "running": RUNNING,
    "stopping": STOPPED,
    "stopped": STOPPED,
    "shutting-down": GONE,
    "terminated": GONE,
}
ALIVE_STATES = tuple(state for state, want in _DESIRED.items() if want != GONE)


@dataclass(frozen=True)
class Instance:
    instance_id: str
    state: str
    private_ip: str | None
    key_name: str | None
    launch_order: str  # LaunchTime as ISO text, then id: the earliest keeps a contested address

    @property
    def desired(self) -> str:
        return _DESIRED.get(self.state, GONE)


def from_api(raw: dict[str, Any]) -> Instance:
    launch = raw.get("LaunchTime")
    order = launch.isoformat() if isinstance(launch, datetime) else str(launch or "")
    return Instance(
        instance_id=raw["InstanceId"],
        state=raw.get("State", {}).get("Name", "terminated"),
        private_ip=raw.get("PrivateIpAddress"),
        key_name=raw.get("KeyName"),
        launch_order=f"{order} {raw['InstanceId']}",
    )


def address_problem(address: str | None) -> str | None:
    """Why an address cannot be a host here, or None when it can."""
    if not address:
        return "the instance has no private IP address"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"{address!r} is not an IPv4 address"
    network = ipaddress.ip_network(CIDR)
    if ip not in network:
        return f"address {address} lies outside {CIDR}"
    if address == GATEWAY or ip in (network.network_address, network.broadcast_address):
        return f"address {address} is reserved for the bridge"
    return None


def assign(
    instances: list[Instance], realised: dict[str, str]
) -> tuple[dict[str, Instance], dict[str, str]]:
    """Split instances into those to realise and those not realised (with the reason).

    `realised` maps instance id -> address of hosts that exist now: they keep their address.
    Terminated instances are neither (they only need their host removed).
    """
    owners = {address: iid for iid, address in realised.items()}
    ok: dict[str, Instance] = {}
    refused: dict[str, str] = {}
    live = [i for i in instances if i.desired != GONE]
    for inst in sorted(live, key=lambda i: (i.instance_id not in realised, i.launch_order)):
        problem = address_problem(inst.private_ip)
        owner = owners.get(inst.private_ip or "")
        if problem is None and owner not in (None, inst.instance_id):
            problem = f"address {inst.private_ip} is already taken by {owner}"
        if problem:
            refused[inst.instance_id] = problem
            continue
        owners[inst.private_ip or ""] = inst.instance_id
        ok[inst.instance_id] = inst
    return ok, refused
