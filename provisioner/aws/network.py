"""The platform's network: VPC, one subnet per zone, internet gateway and routes, the security
groups of the load balancer and the hosts, and the operator's SSH key pair (all found by tags)."""

from __future__ import annotations

import ipaddress
import os
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from provisioner import paths
from provisioner.aws.session import eventually, retry_in_use
from provisioner.aws.tags import Finder, key_name, lb_name, tag_filters, tag_spec
from provisioner.errors import DynoformError
from provisioner.targets import Target

MAX_ZONES = 3
DYNO_PORTS = (1024, 65535)  # dynos bind $PORT in this range; only the LB may reach them
Delete = Callable[..., None]  # retry_in_use's shape: (what, call, **kwargs)


def subnet_cidrs(vpc_cidr: str, count: int) -> list[str]:
    """One subnet per zone: the VPC split into 16 equal parts, the first `count` of them."""
    network = ipaddress.ip_network(vpc_cidr)
    prefix = min(network.prefixlen + 4, 28)
    return [str(net) for net in list(network.subnets(new_prefix=prefix))[:count]]


def key_path(target: Target) -> Path:
    return paths.config_dir() / "keys" / target.name / "id_ed25519"


def ensure_key_file(path: Path) -> str:
    """The operator's private key for this target (made once, 0600); returns its public line."""
    pub = path.with_name(path.name + ".pub")
    if path.exists() and pub.exists():
        return pub.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    from cryptography.hazmat.primitives import serialization  # here: ~8 ms, made once a target
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private)
    pub.write_text(public.decode() + " dynoform\n")
    return pub.read_text().strip()


def operator_cidr(target: Target) -> str:
    """Where SSH may come from: DYNOFORM_SSH_CIDR, else the gateway (local) or our public IP."""
    configured = os.environ.get("DYNOFORM_SSH_CIDR")
    if configured:
        return str(ipaddress.ip_network(configured, strict=False))
    if target.is_local:
        return "198.18.0.1/32"  # the bridge gateway: this machine
    try:
        with urllib.request.urlopen("https://checkip.amazonaws.com", timeout=5) as resp:  # noqa: S310
            address = resp.read().decode().strip()
        return str(ipaddress.ip_network(f"{address}/32"))
    except (OSError, ValueError) as exc:
        raise DynoformError(
            f"cannot find this machine's public address for the SSH rule: {exc}",
            "pass --ssh-cidr 203.0.113.7/32 (or set DYNOFORM_SSH_CIDR)",
        ) from None


def vpc(b: Finder) -> str:
    """The platform's VPC. With two tagged ones (two inits at once, from before they took
    turns), the one its load balancer is in, else the lowest id: every run takes the same one,
    and init removes the other unless something runs in it."""
    found = sorted(str(v["VpcId"]) for v in b.find("describe_vpcs", "Vpcs", "vpc"))
    if len(found) == 1:
        return found[0]
    if found:
        lb_vpc = _load_balancer_vpc(b)
        chosen = lb_vpc if lb_vpc in found else found[0]
        for other in found:
            if other != chosen and b.create:
                _remove_second_network(b, other, chosen)
        return chosen
    b.missing("VPC")
    made = b.aws.ec2.create_vpc(
        CidrBlock=b.target.cidr, TagSpecifications=tag_spec("vpc", b.name, "vpc")
    )["Vpc"]
    vpc_id = str(made["VpcId"])
    b.aws.ec2.get_waiter("vpc_available").wait(VpcIds=[vpc_id])
    for attribute in ("EnableDnsSupport", "EnableDnsHostnames"):
        b.aws.ec2.modify_vpc_attribute(VpcId=vpc_id, **{attribute: {"Value": True}})
    b.created.append(f"vpc {vpc_id} {b.target.cidr}")
    return vpc_id


def _load_balancer_vpc(b: Finder) -> str | None:
    """The VPC of the platform's first load balancer (None before it is made)."""
    try:
        found = b.aws.elbv2.describe_load_balancers(Names=[lb_name(b.name)])["LoadBalancers"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "LoadBalancerNotFound":
            raise
        return None
    return str(found[0]["VpcId"]) if found else None


def _remove_second_network(b: Finder, vpc_id: str, kept: str) -> None:
    """Delete a second tagged VPC and its parts, unless a host runs in it, or AWS refuses a
    delete (something else is in it): then it is only reported (platform:destroy removes it)."""
    ec2 = b.aws.ec2
    live = ["pending", "running", "stopping", "stopped"]
    hosts = ec2.describe_instances(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "instance-state-name", "Values": live},
        ]
    )["Reservations"]
    if hosts:
        b.say(f"warning: platform {b.name} has a second VPC {vpc_id}, kept: hosts run in it")
        return
    try:
        delete_network(ec2, b.name, vpc_id, delete=_delete_now)
    except ClientError as exc:
        b.say(f"warning: platform {b.name} has a second VPC {vpc_id}, kept: {exc}")
        return
    b.say(f"removed a second VPC {vpc_id} of platform {b.name} (this one uses {kept})")


def zones(b: Finder) -> list[str]:
    found = b.aws.ec2.describe_availability_zones(
        Filters=[{"Name": "state", "Values": ["available"]}]
    )["AvailabilityZones"]
    names = sorted(
        z["ZoneName"]
        for z in found
        if z.get("ZoneType", "availability-zone") == "availability-zone"
    )
    if len(names) < 2:
        raise DynoformError(f"region {b.target.region} has fewer than two availability zones")
    return names[:MAX_ZONES]


def subnets(b: Finder, vpc_id: str) -> tuple[list[str], list[str]]:
    """The subnet ids and their zones, one per zone."""
    in_zones = zones(b)
    cidrs = subnet_cidrs(b.target.cidr, len(in_zones))
    subnet_ids, subnet_zones = [], []
    for index, (zone, cidr) in enumerate(zip(in_zones, cidrs, strict=True)):
        resource = f"subnet-{index}"
        found = _in_vpc(b.find("describe_subnets", "Subnets", resource), vpc_id)
        if found:
            subnet_ids.append(str(found[0]["SubnetId"]))
            subnet_zones.append(str(found[0]["AvailabilityZone"]))
            continue
        b.missing(f"subnet in {zone}")
        subnet = b.aws.ec2.create_subnet(
            VpcId=vpc_id,
            CidrBlock=cidr,
            AvailabilityZone=zone,
            TagSpecifications=tag_spec("subnet", b.name, resource),
        )["Subnet"]
        if not b.target.is_local:  # hosts get public addresses so the operator can SSH
            b.aws.ec2.modify_subnet_attribute(
                SubnetId=subnet["SubnetId"], MapPublicIpOnLaunch={"Value": True}
            )
        subnet_ids.append(str(subnet["SubnetId"]))
        subnet_zones.append(zone)
        b.created.append(f"subnet {subnet['SubnetId']} {cidr} {zone}")
    return subnet_ids, subnet_zones


def gateway(b: Finder, vpc_id: str) -> str:
    """The tagged gateway attached to the VPC; else a tagged one attached nowhere (an init
    stopped before attaching it), attached now; else a new one. One attached to another VPC
    (a second network) is never taken: a gateway attaches to one VPC only."""
    found = b.find("describe_internet_gateways", "InternetGateways", "igw")
    for igw in found:
        if any(a.get("VpcId") == vpc_id for a in igw.get("Attachments", [])):
            return str(igw["InternetGatewayId"])
    free = [str(igw["InternetGatewayId"]) for igw in found if not igw.get("Attachments")]
    b.missing("internet gateway attached to its VPC")
    if free:
        igw_id = free[0]
    else:
        igw_id = b.aws.ec2.create_internet_gateway(
            TagSpecifications=tag_spec("internet-gateway", b.name, "igw")
        )["InternetGateway"]["InternetGatewayId"]
        b.created.append(f"internet gateway {igw_id}")
    b.aws.ec2.attach_internet_gateway(InternetGatewayId=igw_id, VpcId=vpc_id)
    return str(igw_id)


def routes(b: Finder, vpc_id: str, igw_id: str, subnet_ids: list[str]) -> str:
    found = _in_vpc(b.find("describe_route_tables", "RouteTables", "routes"), vpc_id)
    if found:
        table = found[0]
    else:
        b.missing("route table")
        table = b.aws.ec2.create_route_table(
            VpcId=vpc_id, TagSpecifications=tag_spec("route-table", b.name, "routes")
        )["RouteTable"]
        b.created.append(f"route table {table['RouteTableId']}")
    table_id = str(table["RouteTableId"])
    if not any(r.get("DestinationCidrBlock") == "0.0.0.0/0" for r in table.get("Routes", [])):
        b.aws.ec2.create_route(
            RouteTableId=table_id, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw_id
        )
    associated = {a.get("SubnetId") for a in table.get("Associations", [])}
    for subnet_id in subnet_ids:
        if subnet_id not in associated:
            b.aws.ec2.associate_route_table(RouteTableId=table_id, SubnetId=subnet_id)
    return table_id


def _group(
    b: Finder, vpc_id: str, resource: str, description: str
) -> tuple[str, list[dict[str, Any]]]:
    found = _in_vpc(b.find("describe_security_groups", "SecurityGroups", resource), vpc_id)
    if found:
        return str(found[0]["GroupId"]), list(found[0].get("IpPermissions", []))
    b.missing(f"security group {resource}")
    group_id = b.aws.ec2.create_security_group(
        GroupName=f"dynoform-{b.name}-{resource}",
        Description=description,
        VpcId=vpc_id,
        TagSpecifications=tag_spec("security-group", b.name, resource),
    )["GroupId"]
    b.created.append(f"security group {group_id} ({resource})")
    return str(group_id), []


def _allow(
    b: Finder, group_id: str, existing: list[dict[str, Any]], wanted: list[dict[str, Any]]
) -> None:
    missing = [rule for rule in wanted if not any(_covers(have, rule) for have in existing)]
    if missing:
        # A group made a moment ago may not be visible yet (EC2's eventual consistency).
        eventually(
            b.aws.ec2.authorize_security_group_ingress, GroupId=group_id, IpPermissions=missing
        )


def security_groups(b: Finder, vpc_id: str, ssh_cidr: str | None) -> tuple[str, str]:
    """The hosts' group and the load balancer's, with the rules they need (runner, lb)."""
    lb_id, lb_rules = _group(b, vpc_id, "lb", "dynoform load balancer: HTTP and HTTPS")
    _allow(
        b,
        lb_id,
        lb_rules,
        [_cidr_rule(port, port, "0.0.0.0/0", "from anywhere") for port in (80, 443)],
    )
    runner_id, runner_rules = _group(b, vpc_id, "runners", "dynoform hosts: SSH, dyno ports")
    low, high = DYNO_PORTS
    wanted = [
        {
            "IpProtocol": "tcp",
            "FromPort": low,
            "ToPort": high,
            "UserIdGroupPairs": [{"GroupId": lb_id, "Description": "dyno ports from the LB"}],
        }
    ]
    if ssh_cidr or not any(r.get("FromPort") == 22 and r.get("IpRanges") for r in runner_rules):
        wanted.append(_cidr_rule(22, 22, ssh_cidr or operator_cidr(b.target), "SSH"))
    # The controller on one runner reaches the others over SSH (probes, converges, bootstraps).
    wanted.append(
        {
            "IpProtocol": "tcp",
            "FromPort": 22,
            "ToPort": 22,
            "UserIdGroupPairs": [{"GroupId": runner_id, "Description": "SSH between runners"}],
        }
    )
    _allow(b, runner_id, runner_rules, wanted)
    return runner_id, lb_id


def existing_groups(b: Finder, vpc_id: str) -> tuple[str, str]:
    """The two security groups as they are (loading the platform changes no rule)."""
    runner = _in_vpc(b.find("describe_security_groups", "SecurityGroups", "runners"), vpc_id)
    lb = _in_vpc(b.find("describe_security_groups", "SecurityGroups", "lb"), vpc_id)
    if not runner or not lb:
        b.missing("security groups")
    return str(runner[0]["GroupId"]), str(lb[0]["GroupId"])


def key_pair(b: Finder) -> tuple[str, str]:
    """The EC2 key pair of the operator's key, and the private key's path."""
    name = key_name(b.name)
    path = key_path(b.target)
    try:
        b.aws.ec2.describe_key_pairs(KeyNames=[name])
        if not path.exists():
            raise DynoformError(
                f"key pair {name} exists in EC2 but its private key {path} is not here",
                f"copy the key to {path}, or delete the key pair in EC2 and run platform:init",
            )
        return name, str(path)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "InvalidKeyPair.NotFound":
            raise
    b.missing("key pair")
    public = ensure_key_file(path)
    b.aws.ec2.import_key_pair(
        KeyName=name,
        PublicKeyMaterial=public.encode(),
        TagSpecifications=tag_spec("key-pair", b.name, "key"),
    )
    b.created.append(f"key pair {name} ({path})")
    return name, str(path)


def _in_vpc(found: list[dict[str, Any]], vpc_id: str) -> list[dict[str, Any]]:
    """The tagged resources of the platform's VPC (a second network's have the same tags)."""
    return [item for item in found if item.get("VpcId") == vpc_id]


def delete_network(
    ec2: Any, name: str, vpc_id: str | None = None, delete: Delete = retry_in_use
) -> list[str]:
    """The platform's security groups, subnets, route tables, gateways and VPCs (those of
    vpc_id only, when given), in that order; returns what was deleted."""
    done = []
    groups = _of(ec2.describe_security_groups(Filters=tag_filters(name))["SecurityGroups"], vpc_id)
    for group in groups:  # rules first: the groups refer to each other
        if group.get("IpPermissions"):
            ec2.revoke_security_group_ingress(
                GroupId=group["GroupId"], IpPermissions=group["IpPermissions"]
            )
    for group in groups:
        delete("security group", ec2.delete_security_group, GroupId=group["GroupId"])
        done.append(f"security group {group['GroupId']}")
    for subnet in _of(ec2.describe_subnets(Filters=tag_filters(name))["Subnets"], vpc_id):
        delete("subnet", ec2.delete_subnet, SubnetId=subnet["SubnetId"])
        done.append(f"subnet {subnet['SubnetId']}")
    for table in _of(ec2.describe_route_tables(Filters=tag_filters(name))["RouteTables"], vpc_id):
        for assoc in table.get("Associations", []):
            if not assoc.get("Main"):
                ec2.disassociate_route_table(AssociationId=assoc["RouteTableAssociationId"])
        delete("route table", ec2.delete_route_table, RouteTableId=table["RouteTableId"])
        done.append(f"route table {table['RouteTableId']}")
    gateways = ec2.describe_internet_gateways(Filters=tag_filters(name))["InternetGateways"]
    for igw in gateways:
        attached = [a["VpcId"] for a in igw.get("Attachments", [])]
        if vpc_id is not None and attached != [vpc_id]:
            continue  # the kept VPC's, or attached nowhere (gateway() may take that one)
        igw_id = igw["InternetGatewayId"]
        for attached_to in attached:
            delete(
                "internet gateway",
                ec2.detach_internet_gateway,
                InternetGatewayId=igw_id,
                VpcId=attached_to,
            )
        ec2.delete_internet_gateway(InternetGatewayId=igw_id)
        done.append(f"internet gateway {igw_id}")
    for found in _of(ec2.describe_vpcs(Filters=tag_filters(name))["Vpcs"], vpc_id):
        delete("VPC", ec2.delete_vpc, VpcId=found["VpcId"])
        done.append(f"vpc {found['VpcId']}")
    return done


def _of(found: list[dict[str, Any]], vpc_id: str | None) -> list[dict[str, Any]]:
    return found if vpc_id is None else _in_vpc(found, vpc_id)


def _delete_now(_what: str, call: Callable[..., Any], **kwargs: Any) -> None:
    """A delete tried once (removing a second network must not wait minutes on a busy one)."""
    call(**kwargs)


def _cidr_rule(low: int, high: int, cidr: str, description: str) -> dict[str, Any]:
    return {
        "IpProtocol": "tcp",
        "FromPort": low,
        "ToPort": high,
        "IpRanges": [{"CidrIp": cidr, "Description": description}],
    }


def _covers(have: dict[str, Any], want: dict[str, Any]) -> bool:
    """True when an existing permission already grants the wanted one."""
    if (have.get("IpProtocol"), have.get("FromPort"), have.get("ToPort")) != (
        want["IpProtocol"],
        want["FromPort"],
        want["ToPort"],
    ):
        return False
    have_cidrs = {r["CidrIp"] for r in have.get("IpRanges", [])}
    have_groups = {p["GroupId"] for p in have.get("UserIdGroupPairs", [])}
    want_cidrs = {r["CidrIp"] for r in want.get("IpRanges", [])}
    want_groups = {p["GroupId"] for p in want.get("UserIdGroupPairs", [])}
    return want_cidrs <= have_cidrs and want_groups <= have_groups
