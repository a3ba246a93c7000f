"""The platform: network, security groups, key pair, state bucket and load balancer.

Every resource carries `dynoform:platform=<name>` and `dynoform:resource=<kind>` and is found by
those tags before anything is created, so `ensure_platform` may run any number of times and
creates each resource once. The same code serves AWS and the local cloud (moto).
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from provisioner import paths
from provisioner.aws import acmdns
from provisioner.aws.router import fixed_response_action
from provisioner.aws.session import Aws
from provisioner.aws.state import Documents, bucket_name
from provisioner.errors import DynoformError, NoPlatform, ValidationError
from provisioner.model.tls import Bundle, covers
from provisioner.targets import Target

PLATFORM_TAG = "dynoform:platform"
RESOURCE_TAG = "dynoform:resource"
ROLE_TAG = "dynoform:role"
MAX_ZONES = 3
DYNO_PORTS = (1024, 65535)  # dynos bind $PORT in this range; only the LB may reach them
NOT_FOUND_PAGE = (
    "<!doctype html><title>No such app</title>"
    "<h1>No such app</h1><p>There is no app at this address. "
    "<small>dynoform</small></p>"
)
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
CERT_WAIT_SECONDS = 1800  # DNS validation of a new ACM certificate takes minutes
CERT_POLL_SECONDS = 10.0
KEY_TYPES = ["RSA_1024", "RSA_2048", "RSA_3072", "RSA_4096", "EC_prime256v1", "EC_secp384r1"]


def not_found_action() -> list[dict[str, Any]]:
    return fixed_response_action(404, NOT_FOUND_PAGE)


def https_redirect_action() -> list[dict[str, Any]]:
    """HTTP -> the same URL on HTTPS, permanently (ALB placeholders keep host, path, query)."""
    return [
        {
            "Type": "redirect",
            "RedirectConfig": {
                "Protocol": "HTTPS",
                "Port": "443",
                "Host": "#{host}",
                "Path": "/#{path}",
                "Query": "#{query}",
                "StatusCode": "HTTP_301",
            },
        }
    ]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Platform:
    name: str
    target: str
    region: str
    cidr: str
    vpc_id: str
    subnet_ids: list[str]
    zones: list[str]
    igw_id: str
    route_table_id: str
    runner_sg_id: str
    lb_sg_id: str
    key_name: str
    key_path: str
    bucket: str
    lb_arn: str
    lb_dns: str
    listener_arn: str  # HTTP :80 (redirects to HTTPS)
    https_listener_arn: str = ""  # HTTPS :443 (empty: a record from before HTTPS)
    certificate_arn: str = ""
    created: list[str] = field(default_factory=list)

    @property
    def listener_arns(self) -> list[str]:
        """The listeners app rules go on: HTTPS, and HTTP when there is no HTTPS one."""
        return [self.https_listener_arn] if self.https_listener_arn else [self.listener_arn]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("created")
        return data


def tags(platform: str, resource: str, **extra: str) -> list[dict[str, str]]:
    pairs = {
        PLATFORM_TAG: platform,
        RESOURCE_TAG: resource,
        "Name": f"dynoform-{platform}-{resource}",
    }
    pairs.update(extra)
    return [{"Key": k, "Value": v} for k, v in pairs.items()]


def tag_spec(kind: str, platform: str, resource: str) -> list[dict[str, Any]]:
    return [{"ResourceType": kind, "Tags": tags(platform, resource)}]


def tag_filters(platform: str, resource: str | None = None) -> list[dict[str, Any]]:
    filters = [{"Name": f"tag:{PLATFORM_TAG}", "Values": [platform]}]
    if resource:
        filters.append({"Name": f"tag:{RESOURCE_TAG}", "Values": [resource]})
    return filters


def subnet_cidrs(vpc_cidr: str, count: int) -> list[str]:
    """One subnet per zone: the VPC split into 16 equal parts, the first `count` of them."""
    network = ipaddress.ip_network(vpc_cidr)
    prefix = min(network.prefixlen + 4, 28)
    return [str(net) for net in list(network.subnets(new_prefix=prefix))[:count]]


def lb_name(platform: str) -> str:
    return f"dynoform-{platform}"[:32].rstrip("-")


def key_name(platform: str) -> str:
    return f"dynoform-{platform}"


def key_path(target: Target) -> Path:
    return paths.config_dir() / "keys" / target.name / "id_ed25519"


def ensure_key_file(path: Path) -> str:
    """The operator's private key for this target (made once, 0600); returns its public line."""
    pub = path.with_name(path.name + ".pub")
    if path.exists() and pub.exists():
        return pub.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
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


class _Builder:
    """Finds each resource by its tags and creates what is missing, in dependency order."""

    def __init__(
        self,
        aws: Aws,
        target: Target,
        create: bool,
        say: Callable[[str], None] = _say,
        bundle: Bundle | None = None,
    ) -> None:
        self.aws = aws
        self.target = target
        self.name = target.platform
        self.create = create
        self.say = say
        self.bundle = bundle  # the user's own wildcard certificate, to import
        self.created: list[str] = []
        self._replaced: list[str] = []  # ACM's certificate, once the user's one serves

    def _missing(self, what: str) -> None:
        if not self.create:
            raise NoPlatform(
                f"platform {self.name!r} on target {self.target.name!r} has no {what}",
                "create it with `dynoform platform:init`",
            )

    def _find(self, describe: str, key: str, resource: str, **kwargs: Any) -> list[dict[str, Any]]:
        method = getattr(self.aws.ec2, describe)
        found = method(Filters=tag_filters(self.name, resource), **kwargs)[key]
        return list(found)

    def vpc(self) -> str:
        found = self._find("describe_vpcs", "Vpcs", "vpc")
        if found:
            return str(found[0]["VpcId"])
        self._missing("VPC")
        vpc = self.aws.ec2.create_vpc(
            CidrBlock=self.target.cidr, TagSpecifications=tag_spec("vpc", self.name, "vpc")
        )["Vpc"]
        vpc_id = str(vpc["VpcId"])
        self.aws.ec2.get_waiter("vpc_available").wait(VpcIds=[vpc_id])
        for attribute in ("EnableDnsSupport", "EnableDnsHostnames"):
            self.aws.ec2.modify_vpc_attribute(VpcId=vpc_id, **{attribute: {"Value": True}})
        self.created.append(f"vpc {vpc_id} {self.target.cidr}")
        return vpc_id

    def zones(self) -> list[str]:
        zones = self.aws.ec2.describe_availability_zones(
            Filters=[{"Name": "state", "Values": ["available"]}]
        )["AvailabilityZones"]
        names = sorted(
            z["ZoneName"]
            for z in zones
            if z.get("ZoneType", "availability-zone") == "availability-zone"
        )
        if len(names) < 2:
            raise DynoformError(
                f"region {self.target.region} has fewer than two availability zones"
            )
        return names[:MAX_ZONES]

    def subnets(self, vpc_id: str) -> tuple[list[str], list[str]]:
        zones = self.zones()
        cidrs = subnet_cidrs(self.target.cidr, len(zones))
        subnet_ids, subnet_zones = [], []
        for index, (zone, cidr) in enumerate(zip(zones, cidrs, strict=True)):
            resource = f"subnet-{index}"
            found = self._find("describe_subnets", "Subnets", resource)
            if found:
                subnet_ids.append(str(found[0]["SubnetId"]))
                subnet_zones.append(str(found[0]["AvailabilityZone"]))
                continue
            self._missing(f"subnet in {zone}")
            subnet = self.aws.ec2.create_subnet(
                VpcId=vpc_id,
                CidrBlock=cidr,
                AvailabilityZone=zone,
                TagSpecifications=tag_spec("subnet", self.name, resource),
            )["Subnet"]
            if not self.target.is_local:  # hosts get public addresses so the operator can SSH
                self.aws.ec2.modify_subnet_attribute(
                    SubnetId=subnet["SubnetId"], MapPublicIpOnLaunch={"Value": True}
                )
            subnet_ids.append(str(subnet["SubnetId"]))
            subnet_zones.append(zone)
            self.created.append(f"subnet {subnet['SubnetId']} {cidr} {zone}")
        return subnet_ids, subnet_zones

    def gateway(self, vpc_id: str) -> str:
        found = self._find("describe_internet_gateways", "InternetGateways", "igw")
        if found:
            igw_id = str(found[0]["InternetGatewayId"])
        else:
            self._missing("internet gateway")
            igw_id = self.aws.ec2.create_internet_gateway(
                TagSpecifications=tag_spec("internet-gateway", self.name, "igw")
            )["InternetGateway"]["InternetGatewayId"]
            self.created.append(f"internet gateway {igw_id}")
            found = [{"Attachments": []}]
        if not any(a.get("VpcId") == vpc_id for a in found[0].get("Attachments", [])):
            self.aws.ec2.attach_internet_gateway(InternetGatewayId=igw_id, VpcId=vpc_id)
        return igw_id

    def routes(self, vpc_id: str, igw_id: str, subnet_ids: list[str]) -> str:
        found = self._find("describe_route_tables", "RouteTables", "routes")
        if found:
            table = found[0]
        else:
            self._missing("route table")
            table = self.aws.ec2.create_route_table(
                VpcId=vpc_id, TagSpecifications=tag_spec("route-table", self.name, "routes")
            )["RouteTable"]
            self.created.append(f"route table {table['RouteTableId']}")
        table_id = str(table["RouteTableId"])
        if not any(r.get("DestinationCidrBlock") == "0.0.0.0/0" for r in table.get("Routes", [])):
            self.aws.ec2.create_route(
                RouteTableId=table_id, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw_id
            )
        associated = {a.get("SubnetId") for a in table.get("Associations", [])}
        for subnet_id in subnet_ids:
            if subnet_id not in associated:
                self.aws.ec2.associate_route_table(RouteTableId=table_id, SubnetId=subnet_id)
        return table_id

    def group(
        self, vpc_id: str, resource: str, description: str
    ) -> tuple[str, list[dict[str, Any]]]:
        found = self._find("describe_security_groups", "SecurityGroups", resource)
        if found:
            return str(found[0]["GroupId"]), list(found[0].get("IpPermissions", []))
        self._missing(f"security group {resource}")
        group_id = self.aws.ec2.create_security_group(
            GroupName=f"dynoform-{self.name}-{resource}",
            Description=description,
            VpcId=vpc_id,
            TagSpecifications=tag_spec("security-group", self.name, resource),
        )["GroupId"]
        self.created.append(f"security group {group_id} ({resource})")
        return str(group_id), []

    def _allow(
        self, group_id: str, existing: list[dict[str, Any]], wanted: list[dict[str, Any]]
    ) -> None:
        missing = [rule for rule in wanted if not any(_covers(have, rule) for have in existing)]
        if missing:
            self.aws.ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=missing)

    def security_groups(self, vpc_id: str, ssh_cidr: str | None) -> tuple[str, str]:
        lb_id, lb_rules = self.group(vpc_id, "lb", "dynoform load balancer: HTTP and HTTPS")
        self._allow(
            lb_id,
            lb_rules,
            [_cidr_rule(port, port, "0.0.0.0/0", "from anywhere") for port in (80, 443)],
        )
        runner_id, runner_rules = self.group(vpc_id, "runners", "dynoform hosts: SSH, dyno ports")
        low, high = DYNO_PORTS
        wanted = [
            {
                "IpProtocol": "tcp",
                "FromPort": low,
                "ToPort": high,
                "UserIdGroupPairs": [{"GroupId": lb_id, "Description": "dyno ports from the LB"}],
            }
        ]
        if ssh_cidr or not any(r.get("FromPort") == 22 for r in runner_rules):
            wanted.append(_cidr_rule(22, 22, ssh_cidr or operator_cidr(self.target), "SSH"))
        self._allow(runner_id, runner_rules, wanted)
        return runner_id, lb_id

    def key_pair(self) -> tuple[str, str]:
        name = key_name(self.name)
        path = key_path(self.target)
        try:
            self.aws.ec2.describe_key_pairs(KeyNames=[name])
            if not path.exists():
                raise DynoformError(
                    f"key pair {name} exists in EC2 but its private key {path} is not here",
                    f"copy the key to {path}, or delete the key pair in EC2 and run platform:init",
                )
            return name, str(path)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "InvalidKeyPair.NotFound":
                raise
        self._missing("key pair")
        public = ensure_key_file(path)
        self.aws.ec2.import_key_pair(
            KeyName=name,
            PublicKeyMaterial=public.encode(),
            TagSpecifications=tag_spec("key-pair", self.name, "key"),
        )
        self.created.append(f"key pair {name} ({path})")
        return name, str(path)

    def bucket(self) -> str:
        name = bucket_name(self.name, self.aws.account_id())
        if self.create:
            if Documents(self.aws.s3, name).ensure_bucket(self.target.region):
                self.created.append(f"bucket {name}")
        return name

    def load_balancer(self, subnet_ids: list[str], lb_sg: str) -> tuple[str, str]:
        name = lb_name(self.name)
        try:
            found = self.aws.elbv2.describe_load_balancers(Names=[name])["LoadBalancers"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "LoadBalancerNotFound":
                raise
            found = []
        if found:
            return str(found[0]["LoadBalancerArn"]), str(found[0]["DNSName"])
        self._missing("load balancer")
        lb = self.aws.elbv2.create_load_balancer(
            Name=name,
            Subnets=subnet_ids,
            SecurityGroups=[lb_sg],
            Scheme="internet-facing",
            Type="application",
            IpAddressType="ipv4",
            Tags=tags(self.name, "lb"),
        )["LoadBalancers"][0]
        self.created.append(f"load balancer {name}")
        return str(lb["LoadBalancerArn"]), str(lb["DNSName"])

    def _listeners(self, lb_arn: str) -> dict[int, dict[str, Any]]:
        found = self.aws.elbv2.describe_listeners(LoadBalancerArn=lb_arn)["Listeners"]
        return {int(ln["Port"]): ln for ln in found}

    def listener(self, lb_arn: str) -> str:
        """HTTP :80, whose default action redirects to HTTPS (an older 404 default is changed)."""
        existing = self._listeners(lb_arn).get(80)
        if existing is not None:
            arn = str(existing["ListenerArn"])
            if self.create and not _same_actions(
                existing.get("DefaultActions", []), https_redirect_action()
            ):
                self.aws.elbv2.modify_listener(
                    ListenerArn=arn, DefaultActions=https_redirect_action()
                )
                self.created.append("HTTP listener :80 now redirects to HTTPS")
            return arn
        self._missing("HTTP listener")
        listener = self.aws.elbv2.create_listener(
            LoadBalancerArn=lb_arn,
            Protocol="HTTP",
            Port=80,
            DefaultActions=https_redirect_action(),
            Tags=tags(self.name, "listener-http"),
        )["Listeners"][0]
        self.created.append("HTTP listener :80 (redirect to HTTPS)")
        return str(listener["ListenerArn"])

    def https_listener(self, lb_arn: str, certificate_arn: str) -> str:
        """HTTPS :443 with the platform's certificate; unknown hosts get the 404 page."""
        existing = self._listeners(lb_arn).get(443)
        if existing is not None:
            arn = str(existing["ListenerArn"])
            current = [c.get("CertificateArn") for c in existing.get("Certificates", [])]
            if self.create and certificate_arn and current[:1] != [certificate_arn]:
                self.aws.elbv2.modify_listener(
                    ListenerArn=arn, Certificates=[{"CertificateArn": certificate_arn}]
                )
                self.created.append("HTTPS listener :443 certificate replaced")
            return arn
        self._missing("HTTPS listener")
        listener = self.aws.elbv2.create_listener(
            LoadBalancerArn=lb_arn,
            Protocol="HTTPS",
            Port=443,
            SslPolicy=TLS_POLICY,
            Certificates=[{"CertificateArn": certificate_arn}],
            DefaultActions=not_found_action(),
            Tags=tags(self.name, "listener-https"),
        )["Listeners"][0]
        self.created.append("HTTPS listener :443 (404 page)")
        return str(listener["ListenerArn"])

    # certificates -----------------------------------------------------------------------
    def _own_certificate(self) -> dict[str, Any] | None:
        """The platform's certificate in ACM, found by its tags (newest first)."""
        acm = self.aws.client("acm")
        found = []
        # AWS lists only RSA certificates unless asked; the local CA's are EC.
        pages = acm.get_paginator("list_certificates").paginate(Includes={"keyTypes": KEY_TYPES})
        for page in pages:
            for summary in page.get("CertificateSummaryList", []):
                arn = summary["CertificateArn"]
                pairs = acm.list_tags_for_certificate(CertificateArn=arn).get("Tags", [])
                have = {t["Key"]: t.get("Value") for t in pairs}
                if have.get(PLATFORM_TAG) == self.name and have.get(RESOURCE_TAG) == "cert":
                    found.append(acm.describe_certificate(CertificateArn=arn)["Certificate"])
        if not found:
            return None
        return max(found, key=lambda c: str(c.get("ImportedAt") or c.get("CreatedAt") or ""))

    def certificate(self) -> str:
        """The HTTPS certificate: on `local` the local CA's wildcard certificate imported into
        ACM (re-imported in place when the CA issued a new one); on AWS a wildcard certificate
        requested from ACM with DNS validation (records put in Route 53 when the zone is
        there, else printed), waited for until issued."""
        existing = self._own_certificate()
        if existing is not None and not self.create:
            return str(existing["CertificateArn"])  # loading: whichever certificate serves
        if self.bundle is not None:
            return self._imported_certificate(existing, self.bundle)
        if existing is not None and existing.get("Type") == "IMPORTED" and not self._ours(existing):
            return str(existing["CertificateArn"])  # the user's own: kept until they replace it
        if self.target.is_local:
            return self._local_certificate(existing)
        if existing is not None:
            arn = str(existing["CertificateArn"])
            if existing.get("Status") != "ISSUED":
                self._validate(arn)
            return arn
        self._missing("certificate")
        domain = self.target.app_domain
        arn = str(
            self.aws.client("acm").request_certificate(
                DomainName=f"*.{domain}",
                SubjectAlternativeNames=[f"*.{domain}", domain],
                ValidationMethod="DNS",
                IdempotencyToken=self.name.replace("-", "")[:32] or "dynoform",
                Tags=tags(self.name, "cert"),
            )["CertificateArn"]
        )
        self.created.append(f"certificate *.{domain} (ACM, DNS validation)")
        self._validate(arn)
        return arn

    def _ours(self, described: dict[str, Any]) -> bool:
        """Whether a platform certificate is dynoform's own (ACM's, or the local CA's)."""
        if described.get("Type") != "IMPORTED":
            return True
        if not self.target.is_local:
            return False
        from provisioner.localcloud import ca

        held = self.aws.client("acm").get_certificate(CertificateArn=described["CertificateArn"])
        return ca.signed_by(str(held["Certificate"]).encode(), ca.ensure_ca().cert_pem)

    def _imported_certificate(self, existing: dict[str, Any] | None, bundle: Bundle) -> str:
        """The user's certificate for `*.<domain>`: imported, or re-imported in place over an
        earlier imported one (same ARN); ACM's own is replaced by it."""
        from provisioner.localcloud.ca import fingerprint

        domain = self.target.app_domain
        if not any(covers(name, f"app.{domain}") for name in bundle.names):
            raise ValidationError(
                "platform certificate",
                f"must cover *.{domain} (it names {', '.join(bundle.names)})",
            )
        acm = self.aws.client("acm")
        kwargs = bundle.import_args()
        if existing is not None and existing.get("Type") == "IMPORTED":
            arn = str(existing["CertificateArn"])
            held = acm.get_certificate(CertificateArn=arn)["Certificate"]
            if fingerprint(held) == fingerprint(bundle.cert_pem):
                return arn
            acm.import_certificate(CertificateArn=arn, **kwargs)
            acm.add_tags_to_certificate(CertificateArn=arn, Tags=tags(self.name, "cert"))
            self.created.append(f"certificate for {', '.join(bundle.names)} re-imported (yours)")
            return arn
        arn = str(acm.import_certificate(Tags=tags(self.name, "cert"), **kwargs)["CertificateArn"])
        self.created.append(f"certificate for {', '.join(bundle.names)} imported (yours)")
        if existing is not None:
            self._replaced.append(str(existing["CertificateArn"]))
        return arn

    def _local_certificate(self, existing: dict[str, Any] | None) -> str:
        from provisioner.localcloud import ca

        acm = self.aws.client("acm")
        issued = ca.server_cert(ca.server_names(self.target.app_domain))
        chain = ca.ensure_ca().cert_pem
        if existing is not None:
            arn = str(existing["CertificateArn"])
            held = acm.get_certificate(CertificateArn=arn)["Certificate"]
            if ca.fingerprint(held) == issued.fingerprint:
                return arn
            acm.import_certificate(
                CertificateArn=arn,
                Certificate=issued.cert_pem,
                PrivateKey=issued.key_pem,
                CertificateChain=chain,
            )
            self.created.append("certificate re-imported (issued again by the local CA)")
            return arn
        self._missing("certificate")
        arn = str(
            acm.import_certificate(
                Certificate=issued.cert_pem,
                PrivateKey=issued.key_pem,
                CertificateChain=chain,
                Tags=tags(self.name, "cert"),
            )["CertificateArn"]
        )
        self.created.append("certificate *.localhost (local CA, imported into ACM)")
        return arn

    def _validate(self, arn: str) -> None:
        """Put the DNS validation records in Route 53 (or print them), then wait for ACM."""
        acm = self.aws.client("acm")
        records: list[dict[str, str]] = []
        for _ in range(15):  # ACM fills in the records a few seconds after the request
            described = acm.describe_certificate(CertificateArn=arn)["Certificate"]
            records = acmdns.validation_records(described)
            if records or described.get("Status") == "ISSUED":
                break
            time.sleep(2)
        zone = acmdns.hosted_zone(self.aws, self.target.app_domain)
        if records and zone:
            acmdns.put_records(self.aws, zone, records)
            self.say(f"certificate validation records put in Route 53 zone {zone}")
        elif records and described.get("Status") != "ISSUED":
            self.say("add these DNS records to validate the certificate, then wait:")
            for r in records:
                self.say(f"  {r['Name']} {r['Type']} {r['Value']}")
        self.say(f"waiting for ACM to issue {arn} (DNS validation; Ctrl-C and init again resumes)")
        deadline = time.monotonic() + CERT_WAIT_SECONDS
        while True:
            status = acm.describe_certificate(CertificateArn=arn)["Certificate"].get("Status")
            if status == "ISSUED":
                return
            if status not in ("PENDING_VALIDATION", None) or time.monotonic() > deadline:
                raise DynoformError(
                    f"certificate {arn} is {status}, not issued",
                    "check the DNS validation records, then run platform:init again",
                )
            time.sleep(CERT_POLL_SECONDS)

    def build(self, ssh_cidr: str | None = None) -> Platform:
        vpc_id = self.vpc()
        subnet_ids, zones = self.subnets(vpc_id)
        igw_id = self.gateway(vpc_id)
        route_table_id = self.routes(vpc_id, igw_id, subnet_ids)
        runner_sg, lb_sg = self.security_groups(vpc_id, ssh_cidr) if self.create else self._groups()
        key, path = self.key_pair()
        bucket = self.bucket()
        lb_arn, lb_dns = self.load_balancer(subnet_ids, lb_sg)
        certificate_arn = self.certificate()
        https_listener_arn = self.https_listener(lb_arn, certificate_arn)
        for arn in self._replaced:  # the listener serves the new one now
            _retry("certificate", self.aws.client("acm").delete_certificate, CertificateArn=arn)
            self.created.append(f"deleted the certificate it replaced ({arn.rsplit('/', 1)[-1]})")
        listener_arn = self.listener(lb_arn)
        return Platform(
            name=self.name,
            target=self.target.name,
            region=self.target.region,
            cidr=self.target.cidr,
            vpc_id=vpc_id,
            subnet_ids=subnet_ids,
            zones=zones,
            igw_id=igw_id,
            route_table_id=route_table_id,
            runner_sg_id=runner_sg,
            lb_sg_id=lb_sg,
            key_name=key,
            key_path=path,
            bucket=bucket,
            lb_arn=lb_arn,
            lb_dns=lb_dns,
            listener_arn=listener_arn,
            https_listener_arn=https_listener_arn,
            certificate_arn=certificate_arn,
            created=self.created,
        )

    def _groups(self) -> tuple[str, str]:
        runner = self._find("describe_security_groups", "SecurityGroups", "runners")
        lb = self._find("describe_security_groups", "SecurityGroups", "lb")
        if not runner or not lb:
            self._missing("security groups")
        return str(runner[0]["GroupId"]), str(lb[0]["GroupId"])


def _cidr_rule(low: int, high: int, cidr: str, description: str) -> dict[str, Any]:
    return {
        "IpProtocol": "tcp",
        "FromPort": low,
        "ToPort": high,
        "IpRanges": [{"CidrIp": cidr, "Description": description}],
    }


def _same_actions(have: list[dict[str, Any]], want: list[dict[str, Any]]) -> bool:
    """Whether listener default actions match (ignoring fields AWS adds, such as Order)."""
    if len(have) != len(want):
        return False
    for got, wanted in zip(have, want, strict=True):
        for key, value in wanted.items():
            current = got.get(key)
            if isinstance(value, dict):
                if not isinstance(current, dict) or any(
                    str(current.get(k)) != str(v) for k, v in value.items()
                ):
                    return False
            elif current != value:
                return False
    return True


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


def ensure_platform(
    aws: Aws,
    target: Target,
    ssh_cidr: str | None = None,
    say: Callable[[str], None] = _say,
    bundle: Bundle | None = None,
) -> Platform:
    """The platform of this target, creating whatever is missing (idempotent). With `bundle`,
    the HTTPS listener serves the user's own certificate for `*.<app domain>`."""
    return _Builder(aws, target, create=True, say=say, bundle=bundle).build(ssh_cidr)


def load_platform(aws: Aws, target: Target) -> Platform:
    """The existing platform; a clear error when any part is missing. Creates nothing."""
    return _Builder(aws, target, create=False).build()


def platform_json(platform: Platform) -> str:
    return json.dumps(platform.as_dict(), indent=2)


# destroy ---------------------------------------------------------------------------------------
def _retry(what: str, call: Any, *args: Any, **kwargs: Any) -> None:
    """AWS keeps dependencies (LB interfaces, terminating instances) for a while: retry."""
    delay = 2.0
    for _ in range(40):
        try:
            call(*args, **kwargs)
            return
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code.endswith("NotFound") or code.endswith(".NotFound"):
                return
            busy = ("DependencyViolation", "ResourceInUse", "ResourceInUseException")
            if code not in (*busy, "InvalidIPAddress.InUse"):
                raise
            time.sleep(delay)
            delay = min(delay * 1.5, 15)
    raise DynoformError(
        f"{what} is still in use after several minutes", "run platform:destroy again"
    )


def _delete_certificates(aws: Aws, name: str) -> list[str]:
    """The platform's ACM certificates (the load balancer that used them is gone)."""
    acm = aws.client("acm")
    done = []
    pages = acm.get_paginator("list_certificates").paginate(Includes={"keyTypes": KEY_TYPES})
    for page in pages:
        for summary in page.get("CertificateSummaryList", []):
            arn = summary["CertificateArn"]
            pairs = acm.list_tags_for_certificate(CertificateArn=arn).get("Tags", [])
            if {"Key": PLATFORM_TAG, "Value": name} in pairs:
                _retry("certificate", acm.delete_certificate, CertificateArn=arn)
                done.append(f"certificate {summary.get('DomainName', arn)}")
    return done


def destroy_platform(aws: Aws, target: Target, delete_state: bool = False) -> list[str]:
    """Delete every resource of the platform (hosts first); returns what was deleted."""
    name = target.platform
    ec2, elbv2 = aws.ec2, aws.elbv2
    done: list[str] = []
    reservations = ec2.describe_instances(
        Filters=[
            *tag_filters(name),
            {
                "Name": "instance-state-name",
                "Values": ["pending", "running", "stopping", "stopped"],
            },
        ]
    )["Reservations"]
    ids = [i["InstanceId"] for r in reservations for i in r["Instances"]]
    if ids:
        ec2.terminate_instances(InstanceIds=ids)
        ec2.get_waiter("instance_terminated").wait(
            InstanceIds=ids, WaiterConfig={"Delay": 5, "MaxAttempts": 120}
        )
        done.append(f"{len(ids)} hosts")
    try:
        lbs = elbv2.describe_load_balancers(Names=[lb_name(name)])["LoadBalancers"]
    except ClientError:
        lbs = []
    for lb in lbs:
        elbv2.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
        done.append(f"load balancer {lb['LoadBalancerName']}")
    done += _delete_certificates(aws, name)
    from provisioner.aws.managed import destroy_managed  # it imports this module

    done += destroy_managed(aws, name)
    for group in elbv2.describe_target_groups().get("TargetGroups", []):
        tag_list = elbv2.describe_tags(ResourceArns=[group["TargetGroupArn"]])["TagDescriptions"]
        if any(
            t["Key"] == PLATFORM_TAG and t["Value"] == name for d in tag_list for t in d["Tags"]
        ):
            _retry(
                "target group", elbv2.delete_target_group, TargetGroupArn=group["TargetGroupArn"]
            )
            done.append(f"target group {group['TargetGroupName']}")
    groups = ec2.describe_security_groups(Filters=tag_filters(name))["SecurityGroups"]
    for group in groups:  # rules first: the groups refer to each other
        if group.get("IpPermissions"):
            ec2.revoke_security_group_ingress(
                GroupId=group["GroupId"], IpPermissions=group["IpPermissions"]
            )
    for group in groups:
        _retry("security group", ec2.delete_security_group, GroupId=group["GroupId"])
        done.append(f"security group {group['GroupId']}")
    for subnet in ec2.describe_subnets(Filters=tag_filters(name))["Subnets"]:
        _retry("subnet", ec2.delete_subnet, SubnetId=subnet["SubnetId"])
        done.append(f"subnet {subnet['SubnetId']}")
    for table in ec2.describe_route_tables(Filters=tag_filters(name))["RouteTables"]:
        for assoc in table.get("Associations", []):
            if not assoc.get("Main"):
                ec2.disassociate_route_table(AssociationId=assoc["RouteTableAssociationId"])
        _retry("route table", ec2.delete_route_table, RouteTableId=table["RouteTableId"])
        done.append(f"route table {table['RouteTableId']}")
    for igw in ec2.describe_internet_gateways(Filters=tag_filters(name))["InternetGateways"]:
        for attachment in igw.get("Attachments", []):
            _retry(
                "internet gateway",
                ec2.detach_internet_gateway,
                InternetGatewayId=igw["InternetGatewayId"],
                VpcId=attachment["VpcId"],
            )
        ec2.delete_internet_gateway(InternetGatewayId=igw["InternetGatewayId"])
        done.append(f"internet gateway {igw['InternetGatewayId']}")
    for vpc in ec2.describe_vpcs(Filters=tag_filters(name))["Vpcs"]:
        _retry("VPC", ec2.delete_vpc, VpcId=vpc["VpcId"])
        done.append(f"vpc {vpc['VpcId']}")
    try:
        ec2.delete_key_pair(KeyName=key_name(name))
        done.append(f"key pair {key_name(name)}")
    except ClientError:
        pass
    if delete_state:
        bucket = bucket_name(name, aws.account_id())
        docs = Documents(aws.s3, bucket)
        try:
            docs.delete_prefix("")
            aws.s3.delete_bucket(Bucket=bucket)
            done.append(f"bucket {bucket}")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchBucket":
                raise
    return done
