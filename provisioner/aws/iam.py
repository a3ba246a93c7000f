"""The controller's AWS access: a role with one inline policy, in an instance profile that every
runner host is launched with, so the `dynoform-controller` service (root on the host) gets
short-lived credentials from the metadata service. Dynos and builds never reach that service:
the runner role's nftables table and each unit's IPAddressDeny= refuse it to their uids.

The policy is built by a pure function (tested as data) and names only this platform's
resources: its instances, subnets, security groups and target groups by their
`dynoform:platform` tag, its load balancer's rules and its bucket by name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import ClientError

from provisioner.aws.metrics import dyno_namespace
from provisioner.aws.tags import (
    PLATFORM_TAG,
    ROLE_TAG,
    Finder,
    key_name,
    lb_name,
    shard_name,
)

VERSION = "2012-10-17"
POLICY_NAME = "dynoform-controller"
RUNNER = "runner"  # the role tag of the hosts the controller launches and replaces
TRUST_POLICY = {
    "Version": VERSION,
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def controller_name(platform: str) -> str:
    """The role and the instance profile (IAM names are per account, like the bucket's)."""
    return f"dynoform-{platform}-controller"


def partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def controller_policy(
    platform: str, region: str, account: str, buckets: Sequence[str]
) -> dict[str, Any]:
    """The controller's inline policy (pure): what the CLI's library does to hosts, routes and
    state, limited to this platform's resources."""
    aws = partition(region)
    ec2 = f"arn:{aws}:ec2:{region}:{account}"
    elb = f"arn:{aws}:elasticloadbalancing:{region}:{account}"
    lb = lb_name(platform)
    shards = shard_name(platform, "*")  # shards 1, 2, ...
    own = {f"ec2:ResourceTag/{PLATFORM_TAG}": platform}
    rds = f"arn:{aws}:rds:{region}:{account}"
    # Managed Postgres instances and their snapshots (aws/managed.py): df-<platform>-postgres-…
    # (not df-<platform>-*, which would match platform <platform>-eu's too).
    snapshots = f"df-{platform}-postgres-*"
    statements: list[dict[str, Any]] = [
        # EC2's and ELBv2's Describe* calls take no resource ARN and no tag condition: they
        # always read the whole region. Everything that changes something is scoped below.
        _allow(
            "Describe",
            [
                "ec2:DescribeImages",
                "ec2:DescribeInstanceStatus",
                "ec2:DescribeInstances",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeSubnets",
                "elasticloadbalancing:DescribeListeners",
                "elasticloadbalancing:DescribeLoadBalancerAttributes",
                "elasticloadbalancing:DescribeLoadBalancers",
                "elasticloadbalancing:DescribeRules",
                "elasticloadbalancing:DescribeTags",
                "elasticloadbalancing:DescribeTargetGroupAttributes",
                "elasticloadbalancing:DescribeTargetGroups",
                "elasticloadbalancing:DescribeTargetHealth",
            ],
            "*",
        ),
        # Autoscaling reads the load balancer's response times. CloudWatch's read calls take no
        # resource ARN and no tag condition (nor a namespace one: `cloudwatch:namespace` binds
        # PutMetricData only), so they read every metric of the account and region.
        _allow("ReadMetrics", ["cloudwatch:GetMetricData", "cloudwatch:GetMetricStatistics"], "*"),
        # The metrics duty publishes the dynos' figures, to the platform's namespace only.
        _allow(
            "PublishDynoMetrics",
            ["cloudwatch:PutMetricData"],
            "*",
            {"cloudwatch:namespace": dyno_namespace(platform)},
        ),
        # The current Debian 13 AMI is read from Debian's public SSM parameters.
        _allow(
            "DebianImage",
            ["ssm:GetParameter"],
            f"arn:{aws}:ssm:{region}::parameter/aws/service/debian/*",
        ),
        # RunInstances is checked against every resource it touches. The instance and its
        # volume must be tagged as this platform's runner in the request itself...
        _allow(
            "LaunchRunners",
            ["ec2:RunInstances"],
            [f"{ec2}:instance/*", f"{ec2}:volume/*"],
            {
                f"aws:RequestTag/{PLATFORM_TAG}": platform,
                f"aws:RequestTag/{ROLE_TAG}": RUNNER,
            },
        ),
        # ...in this platform's subnets and security groups (found by their tag)...
        _allow(
            "LaunchIntoPlatformNetwork",
            ["ec2:RunInstances"],
            [f"{ec2}:subnet/*", f"{ec2}:security-group/*"],
            own,
        ),
        # ...with the platform's key pair; the network interface is made in the subnet above
        # and carries no tags; the image is Debian's public one (owned by another account).
        _allow(
            "LaunchWith",
            ["ec2:RunInstances"],
            [
                f"{ec2}:network-interface/*",
                f"{ec2}:key-pair/{key_name(platform)}",
                f"arn:{aws}:ec2:{region}::image/*",
            ],
        ),
        # Tags on create need CreateTags, allowed only as part of such a launch.
        _allow(
            "TagOnLaunch",
            ["ec2:CreateTags"],
            [f"{ec2}:instance/*", f"{ec2}:volume/*"],
            {"ec2:CreateAction": "RunInstances", f"aws:RequestTag/{PLATFORM_TAG}": platform},
        ),
        # Other tags on the platform's own instances; never the platform or role tag, so no
        # instance can be made to look like a runner of this platform.
        _allow(
            "TagOwnInstances",
            ["ec2:CreateTags"],
            f"{ec2}:instance/*",
            own,
            {"ForAllValues:StringNotEquals": {"aws:TagKeys": [PLATFORM_TAG, ROLE_TAG]}},
        ),
        _allow(
            "TerminateOwnRunners",
            ["ec2:TerminateInstances"],
            f"{ec2}:instance/*",
            {**own, f"ec2:ResourceTag/{ROLE_TAG}": RUNNER},
        ),
        # Launching with the instance profile passes its role: only this one, only to EC2.
        _allow(
            "PassOwnRole",
            ["iam:PassRole"],
            f"arn:{aws}:iam::{account}:role/{controller_name(platform)}",
            {"iam:PassedToService": "ec2.amazonaws.com"},
        ),
        _allow(
            "PlatformTargetGroups",
            [
                "elasticloadbalancing:DeregisterTargets",
                "elasticloadbalancing:ModifyTargetGroup",
                "elasticloadbalancing:ModifyTargetGroupAttributes",
                "elasticloadbalancing:RegisterTargets",
            ],
            f"{elb}:targetgroup/*/*",
            {f"aws:ResourceTag/{PLATFORM_TAG}": platform},
        ),
        _allow(
            "CreatePlatformTargetGroups",
            ["elasticloadbalancing:CreateTargetGroup"],
            f"{elb}:targetgroup/*/*",
            {f"aws:RequestTag/{PLATFORM_TAG}": platform},
        ),
        _allow(
            "TagNewTargetGroups",
            ["elasticloadbalancing:AddTags"],
            f"{elb}:targetgroup/*/*",
            {
                "elasticloadbalancing:CreateAction": "CreateTargetGroup",
                f"aws:RequestTag/{PLATFORM_TAG}": platform,
            },
        ),
        # Listener rules carry no tags: they are scoped by the load balancer's name in their
        # ARN (unique in the account and region).
        _allow(
            "PlatformRules",
            [
                "elasticloadbalancing:CreateRule",
                "elasticloadbalancing:DeleteRule",
                "elasticloadbalancing:ModifyRule",
            ],
            [
                f"{elb}:{kind}/app/{name}/*"
                for kind in ("listener", "listener-rule")
                for name in (lb, shards)  # the first load balancer, and the others
            ],
        ),
        # The drains duty turns the access logs of the platform's load balancers on and off.
        _allow(
            "PlatformAccessLogs",
            ["elasticloadbalancing:ModifyLoadBalancerAttributes"],
            [f"{elb}:loadbalancer/app/{name}/*" for name in (lb, shards)],
        ),
        # S3 has no tag conditions on buckets: the bucket is named. Versions: retention of
        # scheduled backups deletes every version of a self-hosted database's dump.
        _allow(
            "PlatformBucket",
            ["s3:ListBucket", "s3:ListBucketVersions"],
            [f"arn:{aws}:s3:::{b}" for b in buckets],
        ),
        _allow(
            "PlatformObjects",
            ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:GetObject", "s3:PutObject"],
            [f"arn:{aws}:s3:::{b}/*" for b in buckets],
        ),
        # Scheduled backups of managed (RDS) add-ons: snapshots of the platform's own
        # instances, named df-<platform>-..., made (tagged on creation) and pruned.
        _allow(
            "PlatformSnapshots",
            ["rds:AddTagsToResource", "rds:CreateDBSnapshot", "rds:DescribeDBSnapshots"],
            [f"{rds}:db:{snapshots}", f"{rds}:snapshot:{snapshots}"],
        ),
        _allow("PruneSnapshots", ["rds:DeleteDBSnapshot"], f"{rds}:snapshot:{snapshots}"),
    ]
    return {"Version": VERSION, "Statement": statements}


def _allow(
    sid: str,
    actions: list[str],
    resources: str | list[str],
    equals: dict[str, str] | None = None,
    other: dict[str, Any] | None = None,
) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Sid": sid,
        "Effect": "Allow",
        "Action": actions,
        "Resource": resources,
    }
    condition = {**({"StringEquals": equals} if equals else {}), **(other or {})}
    if condition:
        statement["Condition"] = condition
    return statement


# executors -----------------------------------------------------------------------------------
def ensure_controller_access(b: Finder, bucket: str) -> str:
    """The role, its policy and the instance profile, made or brought up to date (with `create`;
    else NoPlatform when the profile is missing). Returns the instance profile's name."""
    iam = b.aws.client("iam")
    name = controller_name(b.name)
    if not b.create:
        if _get(iam.get_instance_profile, InstanceProfileName=name) is None:
            b.missing(f"controller instance profile {name}")
        return name
    policy = controller_policy(b.name, b.target.region, b.aws.account_id(), [bucket])
    b.created += _ensure_role(iam, b.name, name)
    b.created += _ensure_policy(iam, name, policy)
    b.created += _ensure_profile(iam, b.name, name)
    return name


def remove_controller_access(iam: Any, platform: str) -> list[str]:
    """The instance profile, the role and its policies; already gone counts as done."""
    name = controller_name(platform)
    done = []
    profile = _get(iam.get_instance_profile, InstanceProfileName=name)
    if profile is not None:
        for role in profile["InstanceProfile"]["Roles"]:
            iam.remove_role_from_instance_profile(
                InstanceProfileName=name, RoleName=role["RoleName"]
            )
        iam.delete_instance_profile(InstanceProfileName=name)
        done.append(f"instance profile {name}")
    if _get(iam.get_role, RoleName=name) is not None:
        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            iam.delete_role_policy(RoleName=name, PolicyName=policy)
        iam.delete_role(RoleName=name)
        done.append(f"role {name}")
    return done


def _ensure_role(iam: Any, platform: str, name: str) -> list[str]:
    role = _get(iam.get_role, RoleName=name)
    if role is None:
        iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
            Description=f"dynoform controller of platform {platform}",
            Tags=[{"Key": PLATFORM_TAG, "Value": platform}],
        )
        return [f"role {name}"]
    if _document(role["Role"]["AssumeRolePolicyDocument"]) != TRUST_POLICY:
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(TRUST_POLICY))
        return [f"role {name}: trust policy updated"]
    return []


def _ensure_policy(iam: Any, name: str, policy: dict[str, Any]) -> list[str]:
    have = _get(iam.get_role_policy, RoleName=name, PolicyName=POLICY_NAME)
    if have is not None and _document(have["PolicyDocument"]) == policy:
        return []
    iam.put_role_policy(RoleName=name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(policy))
    return [f"policy {POLICY_NAME} of role {name}" + (": updated" if have else "")]


def _ensure_profile(iam: Any, platform: str, name: str) -> list[str]:
    profile = _get(iam.get_instance_profile, InstanceProfileName=name)
    if profile is None:
        iam.create_instance_profile(
            InstanceProfileName=name, Tags=[{"Key": PLATFORM_TAG, "Value": platform}]
        )
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
        return [f"instance profile {name} (role {name})"]
    if name not in [r["RoleName"] for r in profile["InstanceProfile"]["Roles"]]:
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
        return [f"instance profile {name}: role {name} added"]
    return []


def _document(value: str | dict[str, Any]) -> dict[str, Any]:
    """A policy document as boto3 returns it: usually decoded already, else JSON text."""
    if isinstance(value, dict):
        return value
    return dict(json.loads(unquote(value)))


def _get(call: Any, **kwargs: Any) -> dict[str, Any] | None:
    """An IAM get_* call; None when the entity does not exist."""
    try:
        return dict(call(**kwargs))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchEntity":
            return None
        raise
