"""EC2 instances of the platform: the Debian 13 AMI, launch requests, listing, termination.

The launch request is built by a pure function (tested as data): IMDSv2 required with hop
limit 1, so dynos behind one more hop cannot reach the metadata service; an encrypted root
volume; tags for platform and role; runner hosts get the controller's instance profile
(aws/iam.py), whose credentials dynos and builds never reach (the metadata service is walled
off their uids).
"""

from __future__ import annotations

import base64
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from botocore.exceptions import ClientError

from provisioner.aws.platform import Platform
from provisioner.aws.session import NOT_YET_VISIBLE, Aws, error_code, eventually
from provisioner.aws.tags import PLATFORM_TAG, ROLE_TAG
from provisioner.errors import DynoformError, NotFound
from provisioner.model.sizes import architecture

DEBIAN_13_PARAMETER = "/aws/service/debian/release/13/latest/amd64"
DEBIAN_13_PARAMETERS = {  # Debian's public SSM parameters, by architecture
    "amd64": DEBIAN_13_PARAMETER,
    "arm64": "/aws/service/debian/release/13/latest/arm64",
}
RUNNER = "runner"
DEFAULT_TYPE = "t3.small"
ROOT_GIB = 20
LIVE_STATES = ["pending", "running", "stopping", "stopped"]
PROFILE_WAIT = 60.0  # seconds a new instance profile may take to be usable by RunInstances


@dataclass
class Host:
    id: str
    private_ip: str | None
    public_ip: str | None
    zone: str
    type: str
    state: str
    subnet_id: str | None
    role: str
    launched_at: str

    def address(self, local: bool) -> str:
        """Where to SSH: the private address on the local cloud, else the public one if any."""
        address = self.private_ip if local else (self.public_ip or self.private_ip)
        if not address:
            raise DynoformError(f"host {self.id} has no address yet (state {self.state})")
        return address

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def debian_ami(aws: Aws, arch: str = "amd64") -> str:
    """The current official Debian 13 AMI for the architecture (`amd64`, or `arm64` for
    Graviton types: sizes.architecture), from its public SSM parameter."""
    parameter = DEBIAN_13_PARAMETERS[arch]
    try:
        value = aws.ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
    except ClientError as exc:
        hint = "on the local cloud run `dynoform local up`; on AWS allow ssm:GetParameter"
        if arch != "amd64" and aws.target.is_local:
            hint = f"the local cloud runs amd64 hosts only: use a type such as {DEFAULT_TYPE}"
        raise DynoformError(
            f"cannot read the Debian 13 AMI from SSM parameter {parameter}: "
            f"{exc.response.get('Error', {}).get('Code')}",
            hint,
        ) from None
    return str(value)


def one_architecture(existing_types: list[str], wanted: str) -> None:
    """Refuse a runner type of another architecture than the platform's runners: a slug is
    built on one host and runs on all, and native code built for amd64 does not run on arm64."""
    have = {architecture(t) for t in existing_types}
    arch = architecture(wanted)
    if have and arch not in have:
        raise DynoformError(
            f"{wanted} is {arch}; this platform's runners are {', '.join(sorted(have))}: "
            "a slug built on one runs native code of that one",
            "keep one architecture: remove the other runners first (`hosts:remove`), then "
            "deploy again so that slugs are built anew",
        )


def root_device(aws: Aws, ami: str) -> str:
    try:
        images = aws.ec2.describe_images(ImageIds=[ami])["Images"]
    except ClientError:
        images = []
    return str(images[0].get("RootDeviceName") or "/dev/xvda") if images else "/dev/xvda"


def launch_request(
    platform: Platform,
    *,
    ami: str,
    device: str,
    instance_type: str,
    subnet_id: str,
    user_data: str,
    role: str = RUNNER,
) -> dict[str, Any]:
    """The run_instances arguments for one host (pure)."""
    tags = [
        {"Key": PLATFORM_TAG, "Value": platform.name},
        {"Key": ROLE_TAG, "Value": role},
        {"Key": "Name", "Value": f"dynoform-{platform.name}-{role}"},
    ]
    request: dict[str, Any] = {
        "ImageId": ami,
        "InstanceType": instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "KeyName": platform.key_name,
        "SubnetId": subnet_id,
        "SecurityGroupIds": [platform.runner_sg_id],
        "UserData": user_data,
        "MetadataOptions": {
            "HttpTokens": "required",
            "HttpPutResponseHopLimit": 1,
            "HttpEndpoint": "enabled",
        },
        "BlockDeviceMappings": [
            {
                "DeviceName": device,
                "Ebs": {
                    "VolumeSize": ROOT_GIB,
                    "VolumeType": "gp3",
                    "Encrypted": True,
                    "DeleteOnTermination": True,
                },
            }
        ],
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tags},
            {"ResourceType": "volume", "Tags": tags},
        ],
    }
    # Only runners carry the controller's credentials (for the controller, root on the host;
    # dynos and builds are walled off the metadata service). The add-on host gets none.
    if role == RUNNER and platform.instance_profile:
        request["IamInstanceProfile"] = {"Name": platform.instance_profile}
    return request


def spread(subnet_zones: dict[str, str], existing: list[str], count: int) -> list[str]:
    """Subnets for `count` new hosts, each time the zone with the fewest hosts (pure).

    subnet_zones maps subnet id -> zone; existing lists the zones of the current hosts.
    """
    load = Counter({zone: 0 for zone in subnet_zones.values()})
    load.update(z for z in existing if z in load)
    by_zone = {zone: subnet for subnet, zone in subnet_zones.items()}
    chosen = []
    for _ in range(count):
        zone = min(sorted(load), key=lambda z: load[z])
        chosen.append(by_zone[zone])
        load[zone] += 1
    return chosen


def _host(instance: dict[str, Any]) -> Host:
    tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
    return Host(
        id=instance["InstanceId"],
        private_ip=instance.get("PrivateIpAddress"),
        public_ip=instance.get("PublicIpAddress"),
        zone=instance.get("Placement", {}).get("AvailabilityZone", ""),
        type=instance.get("InstanceType", ""),
        state=instance.get("State", {}).get("Name", ""),
        subnet_id=instance.get("SubnetId"),
        role=tags.get(ROLE_TAG, ""),
        launched_at=str(instance.get("LaunchTime", "")),
    )


def launch(aws: Aws, request: dict[str, Any], profile_wait: float = PROFILE_WAIT) -> Host:
    """Run one instance. A new instance profile takes a few seconds to reach EC2 (it answers
    "Invalid IAM Instance Profile" until then), and so may a new security group
    (InvalidGroup.NotFound): retried for `profile_wait` seconds."""
    deadline = time.monotonic() + profile_wait
    delay = 1.0
    while True:
        try:
            instance = aws.ec2.run_instances(**request)["Instances"][0]
            return _host(instance)
        except ClientError as exc:
            not_yet = _profile_not_ready(exc) or error_code(exc) in NOT_YET_VISIBLE
            if not not_yet or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 1.5, 5)


def _profile_not_ready(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    message = str(error.get("Message", "")).lower()
    return error.get("Code") == "InvalidParameterValue" and "iam instance profile" in message


def list_hosts(aws: Aws, platform: str, role: str | None = RUNNER) -> list[Host]:
    filters = [
        {"Name": f"tag:{PLATFORM_TAG}", "Values": [platform]},
        {"Name": "instance-state-name", "Values": LIVE_STATES},
    ]
    if role:
        filters.append({"Name": f"tag:{ROLE_TAG}", "Values": [role]})
    hosts: list[Host] = []
    paginator = aws.ec2.get_paginator("describe_instances")
    for page in paginator.paginate(Filters=filters):
        for reservation in page["Reservations"]:
            hosts.extend(_host(i) for i in reservation["Instances"])
    return sorted(hosts, key=lambda h: (h.launched_at, h.id))


def get_host(aws: Aws, platform: str, instance_id: str) -> Host:
    for host in list_hosts(aws, platform, role=None):
        if host.id == instance_id:
            return host
    raise NotFound(f"no host {instance_id} in platform {platform!r}", "see `dynoform hosts`")


def wait_running(
    aws: Aws, instance_id: str, timeout: float = 300, cancel: threading.Event | None = None
) -> Host:
    deadline = time.monotonic() + timeout
    delay = 0.5
    while True:
        if cancel is not None and cancel.is_set():
            raise DynoformError(f"waiting for host {instance_id} was cancelled")
        # Right after RunInstances, EC2 may not know the id yet (eventual consistency).
        reservations = eventually(aws.ec2.describe_instances, InstanceIds=[instance_id])[
            "Reservations"
        ]
        host = _host(reservations[0]["Instances"][0])
        if host.state == "running":
            return host
        if host.state in ("shutting-down", "terminated", "stopped"):
            raise DynoformError(f"host {instance_id} is {host.state}, not running")
        if time.monotonic() > deadline:
            raise DynoformError(f"host {instance_id} still {host.state} after {timeout:.0f} s")
        time.sleep(delay)
        delay = min(delay * 1.5, 5)


def impaired(aws: Aws, instance_ids: list[str]) -> set[str]:
    """Those of the instances whose EC2 status checks (instance or system) fail."""
    found: set[str] = set()
    for start in range(0, len(instance_ids), 100):
        statuses = aws.ec2.describe_instance_status(InstanceIds=instance_ids[start : start + 100])
        for status in statuses.get("InstanceStatuses", []):
            checks = (status.get("InstanceStatus", {}), status.get("SystemStatus", {}))
            if any(check.get("Status") == "impaired" for check in checks):
                found.add(str(status["InstanceId"]))
    return found


TERMINATE_ATTEMPTS = 4


class LeftRunning(DynoformError):
    """Instances that could not be terminated: they may still run, and bill."""


def terminate(
    aws: Aws,
    instance_ids: list[str],
    attempts: int = TERMINATE_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Terminate the instances, retried; when EC2 keeps refusing, LeftRunning names them (an
    unmanaged instance bills until someone terminates it: never let that pass silently)."""
    if not instance_ids:
        return
    delay = 1.0
    for attempt in range(attempts):
        try:
            eventually(aws.ec2.terminate_instances, InstanceIds=instance_ids, sleep=sleep)
            return
        except ClientError as exc:
            if error_code(exc) == "InvalidInstanceID.NotFound":
                return  # unknown for a minute past its launch: gone, nothing bills
            if attempt == attempts - 1:
                raise LeftRunning(
                    f"could not terminate {', '.join(instance_ids)} ({error_code(exc)}): "
                    "it may still run and bill",
                    f"terminate it yourself: `dynoform hosts:remove ID`, or in the EC2 console "
                    f"(tagged {PLATFORM_TAG})",
                ) from exc
        sleep(delay)
        delay *= 2


def user_data_of(aws: Aws, instance_id: str) -> str:
    """The instance's user-data as text (for tests and diagnosis)."""
    attr = aws.ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    value = attr.get("UserData", {}).get("Value", "")
    return base64.b64decode(value).decode() if value else ""
