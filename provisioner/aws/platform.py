"""The platform: network, security groups, key pair, state bucket, the controller's instance
profile, load balancer, certificate.

Every resource is found by its tags before anything is created (aws/tags.py), so
`ensure_platform` may run any number of times and creates each resource once. The same code
serves AWS and the local cloud (moto). The parts live by job: aws/network.py, aws/iam.py,
aws/listeners.py, aws/tlscerts.py; aws/teardown.py deletes it all.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from provisioner.aws import acmdns, listeners, network
from provisioner.aws.iam import ensure_controller_access
from provisioner.aws.router import ShardListeners
from provisioner.aws.session import Aws
from provisioner.aws.state import Documents, bucket_name
from provisioner.aws.tags import Finder, Say, say_on_stderr, shard_name
from provisioner.aws.tlscerts import PlatformCertificate
from provisioner.errors import NoPlatform, NotFound, ValidationError
from provisioner.model.names import validate_platform_name
from provisioner.model.tls import Bundle
from provisioner.targets import Target


@dataclass
class Shard:
    """One load balancer of the platform with its two listeners."""

    lb_arn: str
    lb_dns: str
    listener_arn: str  # HTTP :80 (redirects to HTTPS)
    https_listener_arn: str = ""  # HTTPS :443 (empty: shard 0 of a record from before HTTPS)

    @property
    def router(self) -> ShardListeners:
        if self.https_listener_arn:
            return ShardListeners(self.https_listener_arn, self.listener_arn)
        return ShardListeners(self.listener_arn)


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
    instance_profile: str = ""  # runner hosts' (empty: a record from before the controller)
    # Load balancers beyond the first (shards 1, 2, ...): made when the first is full.
    shards: list[Shard] = field(default_factory=list)
    created: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.shards = [Shard(**s) if isinstance(s, dict) else s for s in self.shards]

    @property
    def all_shards(self) -> list[Shard]:
        """Every load balancer of the platform, shard 0 (the fields above) first."""
        first = Shard(self.lb_arn, self.lb_dns, self.listener_arn, self.https_listener_arn)
        return [first, *self.shards]

    @property
    def listener_arns(self) -> list[str]:
        """The listeners app rules go on: HTTPS, and HTTP when there is no HTTPS one."""
        return [self.https_listener_arn] if self.https_listener_arn else [self.listener_arn]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("created")
        return data


def ensure_platform(
    aws: Aws,
    target: Target,
    ssh_cidr: str | None = None,
    say: Say = say_on_stderr,
    bundle: Bundle | None = None,
) -> Platform:
    """The platform of this target, creating whatever is missing (idempotent). With `bundle`,
    the HTTPS listener serves the user's own certificate for `*.<app domain>`."""
    return _build(Finder(aws, target, create=True, say=say), ssh_cidr, bundle)


def require_valid_name(aws: Aws, target: Target) -> None:
    """Refuse to make a platform under a name its AWS identifiers could not hold uniquely
    (model.names): before anything is made. A platform made earlier under such a name is
    kept (its identifiers are), so the name is looked up only when it fails the check."""
    try:
        validate_platform_name(target.platform)
    except ValidationError as invalid:
        try:
            load_platform(aws, target)
        except NotFound:
            raise invalid from None


def load_platform(aws: Aws, target: Target) -> Platform:
    """The existing platform; a clear error when any part is missing. Creates nothing."""
    return _build(Finder(aws, target, create=False), None, None)


def platform_json(platform: Platform) -> str:
    return json.dumps(platform.as_dict(), indent=2)


def _build(b: Finder, ssh_cidr: str | None, bundle: Bundle | None) -> Platform:
    """Each resource in dependency order: found, else (when creating) made."""
    vpc_id = network.vpc(b)
    subnet_ids, zones = network.subnets(b, vpc_id)
    igw_id = network.gateway(b, vpc_id)
    route_table_id = network.routes(b, vpc_id, igw_id, subnet_ids)
    if b.create:
        runner_sg, lb_sg = network.security_groups(b, vpc_id, ssh_cidr)
    else:
        runner_sg, lb_sg = network.existing_groups(b, vpc_id)
    key, path = network.key_pair(b)
    bucket = _bucket(b)
    instance_profile = ensure_controller_access(b, bucket)
    lb_arn, lb_dns = listeners.load_balancer(b, subnet_ids, lb_sg)
    certificate = PlatformCertificate(b, bundle)
    certificate_arn = certificate.arn()
    https_listener_arn = listeners.https_listener(b, lb_arn, certificate_arn)
    certificate.delete_replaced()  # the listener serves the new one now
    listener_arn = listeners.http_listener(b, lb_arn)
    _wildcard_record(b, lb_dns)
    shards = _more_shards(b, subnet_ids, lb_sg, certificate_arn)
    return Platform(
        name=b.name,
        target=b.target.name,
        region=b.target.region,
        cidr=b.target.cidr,
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
        instance_profile=instance_profile,
        shards=shards,
        created=b.created,
    )


def _wildcard_record(b: Finder, lb_dns: str) -> None:
    """On AWS, `*.<app domain>` CNAME the first load balancer (shard 0), so that every app's
    own name resolves; an app on another shard gets its own name's record when it is placed
    (Context._placed). Put in Route 53 when this account has the zone (UPSERT: idempotent),
    else the user is told."""
    if not b.create or b.target.is_local:
        return
    host = f"*.{b.target.app_domain}"
    zone = acmdns.hosted_zone(b.aws, b.target.app_domain)
    if zone is None:
        b.say(f"point {host} at {lb_dns} (a CNAME) where {b.target.app_domain} is served")
        return
    acmdns.put_records(b.aws, zone, [{"Name": host, "Type": "CNAME", "Value": lb_dns}])


def _more_shards(b: Finder, subnet_ids: list[str], lb_sg: str, certificate: str) -> list[Shard]:
    """Shards 1, 2, ... as far as they exist (their listeners completed when creating: an
    interrupted add_shard; a half-made last one is left out when only reading)."""
    found: list[Shard] = []
    while listeners.find_load_balancer(b, shard_name(b.name, len(found) + 1)):
        try:
            found.append(_shard(b, subnet_ids, lb_sg, certificate, len(found) + 1))
        except NoPlatform:
            break
    return found


def _shard(b: Finder, subnet_ids: list[str], lb_sg: str, certificate: str, index: int) -> Shard:
    lb_arn, lb_dns = listeners.load_balancer(b, subnet_ids, lb_sg, index)
    https = listeners.https_listener(b, lb_arn, certificate)
    return Shard(lb_arn, lb_dns, listeners.http_listener(b, lb_arn), https)


def add_shard(aws: Aws, target: Target, platform: Platform, say: Say = say_on_stderr) -> Platform:
    """The platform with one more load balancer (its listeners serving the platform's
    certificate), made because every shard is full."""
    b = Finder(aws, target, create=True, say=say)
    index = len(platform.all_shards)
    shard = _shard(b, platform.subnet_ids, platform.lb_sg_id, platform.certificate_arn, index)
    say(f"made load balancer shard {index} ({shard.lb_dns}): the others are full")
    return replace(platform, shards=[*platform.shards, shard], created=b.created)


def _bucket(b: Finder) -> str:
    name = bucket_name(b.name, b.aws.account_id())
    if b.create:
        docs = Documents(b.aws.s3, name)
        if docs.ensure_bucket(b.target.region):
            b.created.append(f"bucket {name}")
        if docs.ensure_lifecycle():
            b.created.append(f"bucket {name}: lifecycle rules for old versions")
    return name
