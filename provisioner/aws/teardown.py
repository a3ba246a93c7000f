"""platform:destroy: every resource of the platform, hosts first, found by its tags.

Its own module because it reaches everything the platform holds, add-ons included
(aws/managed.py), while the platform's build imports none of them."""

from __future__ import annotations

from botocore.exceptions import ClientError

from provisioner.aws.iam import remove_controller_access
from provisioner.aws.listeners import platform_load_balancers
from provisioner.aws.managed import destroy_managed
from provisioner.aws.network import delete_network
from provisioner.aws.session import Aws, retry_in_use
from provisioner.aws.state import Documents, bucket_name
from provisioner.aws.tags import PLATFORM_TAG, key_name, tag_filters, tagged
from provisioner.targets import Target


def destroy_platform(aws: Aws, target: Target, delete_state: bool = False) -> list[str]:
    """Delete every resource of the platform (hosts first); returns what was deleted."""
    name = target.platform
    done = _hosts(aws, name)
    done += _load_balancers(aws, name)
    done += _certificates(aws, name)
    done += destroy_managed(aws, name)
    done += _target_groups(aws, name)
    done += _network(aws, name)
    done += remove_controller_access(aws.client("iam"), name)  # no host uses it any more
    if delete_state:
        done += _bucket(aws, name)
    return done


def _hosts(aws: Aws, name: str) -> list[str]:
    ec2 = aws.ec2
    live = ["pending", "running", "stopping", "stopped"]
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[*tag_filters(name), {"Name": "instance-state-name", "Values": live}]
    )
    ids = [i["InstanceId"] for page in pages for r in page["Reservations"] for i in r["Instances"]]
    if not ids:
        return []
    ec2.terminate_instances(InstanceIds=ids)
    ec2.get_waiter("instance_terminated").wait(
        InstanceIds=ids, WaiterConfig={"Delay": 5, "MaxAttempts": 120}
    )
    return [f"{len(ids)} hosts"]


def _load_balancers(aws: Aws, name: str) -> list[str]:
    """The platform's load balancers: the first and every shard, gaps and all."""
    done = []
    for lb in platform_load_balancers(aws, name):
        aws.elbv2.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
        done.append(f"load balancer {lb['LoadBalancerName']}")
    return done


def _certificates(aws: Aws, name: str) -> list[str]:
    """The platform's ACM certificates (the load balancer that used them is gone)."""
    acm = aws.client("acm")
    done = []
    for arn in tagged(aws, "acm", **{PLATFORM_TAG: name}):
        retry_in_use("certificate", acm.delete_certificate, CertificateArn=arn)
        done.append(f"certificate {arn.rsplit('/', 1)[-1]}")
    return done


def _target_groups(aws: Aws, name: str) -> list[str]:
    elbv2 = aws.elbv2
    done = []
    groups = [
        group
        for page in elbv2.get_paginator("describe_target_groups").paginate()
        for group in page.get("TargetGroups", [])
    ]
    for start in range(0, len(groups), 20):  # DescribeTags takes 20 ARNs at a time
        chunk = {g["TargetGroupArn"]: g for g in groups[start : start + 20]}
        described = elbv2.describe_tags(ResourceArns=list(chunk))["TagDescriptions"]
        for d in described:
            if {"Key": PLATFORM_TAG, "Value": name} not in d["Tags"]:
                continue
            arn = d["ResourceArn"]
            retry_in_use("target group", elbv2.delete_target_group, TargetGroupArn=arn)
            done.append(f"target group {chunk[arn]['TargetGroupName']}")
    return done


def _network(aws: Aws, name: str) -> list[str]:
    """Security groups, subnets, routes, gateways, VPCs (all of them: a second network too),
    and the key pair."""
    done = delete_network(aws.ec2, name)
    try:
        aws.ec2.delete_key_pair(KeyName=key_name(name))
        done.append(f"key pair {key_name(name)}")
    except ClientError:
        pass
    return done


def _bucket(aws: Aws, name: str) -> list[str]:
    bucket = bucket_name(name, aws.account_id())
    try:
        Documents(aws.s3, bucket).delete_prefix("")
        aws.s3.delete_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchBucket":
            raise
        return []
    return [f"bucket {bucket}"]
