"""What of a platform bills while nothing runs on it, read from what exists (`platform:info`).

No prices: they differ by region and change. Each line names a kind of resource AWS charges
for by the hour or by the GiB-month whether or not it serves anything, how many there are,
and what they are.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from provisioner.aws.listeners import platform_load_balancers
from provisioner.aws.managed import platform_caches, platform_databases, platform_snapshots
from provisioner.aws.session import Aws
from provisioner.aws.tags import tag_filters

BILLED_STATES = ["pending", "running", "stopping", "stopped"]  # stopped: their volumes bill


@dataclass(frozen=True)
class Billed:
    kind: str
    count: int
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def idle_billing(aws: Aws, platform: str) -> list[Billed]:
    """Every kind of the platform's resources that bills while idle, with how many exist."""
    lines = [
        *_load_balancers(aws, platform),
        *_instances(aws, platform),
        *_ec2_extras(aws, platform),
        *_databases(aws, platform),
    ]
    return [line for line in lines if line.count]


def _pages(client: Any, method: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    pages = client.get_paginator(method).paginate(**kwargs)
    return [item for page in pages for item in page.get(key, [])]


def _load_balancers(aws: Aws, platform: str) -> list[Billed]:
    """The first load balancer and every shard: each bills by the hour."""
    found = platform_load_balancers(aws, platform)
    names = ", ".join(sorted(lb["LoadBalancerName"] for lb in found))
    return [Billed("application load balancers", len(found), names)]


def _instances(aws: Aws, platform: str) -> list[Billed]:
    filters = [*tag_filters(platform), {"Name": "instance-state-name", "Values": BILLED_STATES}]
    found = [
        i
        for r in _pages(aws.ec2, "describe_instances", "Reservations", Filters=filters)
        for i in r["Instances"]
    ]
    running = Counter(i.get("InstanceType", "?") for i in found if i["State"]["Name"] != "stopped")
    stopped = sum(1 for i in found if i["State"]["Name"] == "stopped")
    public = sum(1 for i in found if i.get("PublicIpAddress"))
    detail = ", ".join(f"{n} {t}" for t, n in sorted(running.items()))
    return [
        Billed("instances", sum(running.values()), detail),
        Billed("stopped instances (their volumes bill)", stopped, ""),
        Billed("public IPv4 addresses (instances)", public, ""),
    ]


def _ec2_extras(aws: Aws, platform: str) -> list[Billed]:
    ec2, filters = aws.ec2, tag_filters(platform)
    volumes = _pages(ec2, "describe_volumes", "Volumes", Filters=filters)
    gib = sum(int(v.get("Size", 0)) for v in volumes)
    nat = [
        n
        for n in _pages(ec2, "describe_nat_gateways", "NatGateways", Filter=filters)
        if n.get("State") in ("pending", "available")
    ]
    addresses = ec2.describe_addresses(Filters=filters).get("Addresses", [])
    snapshots = _pages(ec2, "describe_snapshots", "Snapshots", OwnerIds=["self"], Filters=filters)
    return [
        Billed("EBS volumes", len(volumes), f"{gib} GiB" if volumes else ""),
        Billed("NAT gateways", len(nat), ", ".join(n["NatGatewayId"] for n in nat)),
        Billed("Elastic IP addresses", len(addresses), ""),
        Billed("EBS snapshots", len(snapshots), ""),
    ]


def _databases(aws: Aws, platform: str) -> list[Billed]:
    databases = platform_databases(aws, platform)
    caches = platform_caches(aws, platform)
    snapshots = platform_snapshots(aws, platform)
    return [
        Billed("RDS instances", len(databases), ", ".join(databases)),
        Billed("ElastiCache replication groups", len(caches), ", ".join(caches)),
        Billed("RDS snapshots", len(snapshots), ", ".join(snapshots)),
    ]
