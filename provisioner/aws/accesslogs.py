"""The load balancer's access logs, which carry the router's lines to log drains.

The ALB writes them (gzipped, every 5 minutes) under PREFIX in the platform's bucket once
`access_logs.s3.*` is set on it; the local cloud's router writes its own lines there every
few seconds when the same attributes are set (localcloud/lb.py). The controller's leader reads
what is there, ships it, and deletes it (`pending`, `read`, `delete`).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from provisioner.aws.platform import Platform
from provisioner.aws.session import Aws
from provisioner.aws.state import delete_versions

PREFIX = "router-logs"
LOCAL_PREFIX = f"{PREFIX}/local/"  # where the local cloud's router writes
MAX_KEYS = 100  # objects read per tick


def enable(aws: Aws, lb_arn: str, bucket: str, local: bool) -> bool:
    """Turn the load balancer's access logs on (into the platform's bucket); True if it was
    off. On AWS the bucket must let the ALB's log delivery write there first."""
    attrs = {
        a["Key"]: a["Value"]
        for a in aws.elbv2.describe_load_balancer_attributes(LoadBalancerArn=lb_arn)["Attributes"]
    }
    if (
        attrs.get("access_logs.s3.enabled") == "true"
        and attrs.get("access_logs.s3.bucket") == bucket
    ):
        return False
    if not local:
        _allow_delivery(aws.s3, bucket, aws.account_id(), aws.target.region)
    aws.elbv2.modify_load_balancer_attributes(
        LoadBalancerArn=lb_arn,
        Attributes=[
            {"Key": "access_logs.s3.enabled", "Value": "true"},
            {"Key": "access_logs.s3.bucket", "Value": bucket},
            {"Key": "access_logs.s3.prefix", "Value": PREFIX},
        ],
    )
    return True


# Regions older than August 2022 deliver access logs from an ELB account of the region's own
# (AWS's "Enable access logs" page); newer ones from the log delivery service principal.
ELB_ACCOUNTS = {
    "us-east-1": "127311923021",
    "us-east-2": "033677994240",
    "us-west-1": "027434742980",
    "us-west-2": "797873946194",
    "af-south-1": "098369216593",
    "ap-east-1": "754344448648",
    "ap-south-1": "718504428378",
    "ap-northeast-1": "582318560864",
    "ap-northeast-2": "600734575887",
    "ap-northeast-3": "383597477331",
    "ap-southeast-1": "114774131450",
    "ap-southeast-2": "783225319266",
    "ca-central-1": "985666609251",
    "eu-central-1": "054676820928",
    "eu-west-1": "156460612806",
    "eu-west-2": "652711504416",
    "eu-west-3": "009996457667",
    "eu-south-1": "635631232127",
    "eu-north-1": "897822967062",
    "me-south-1": "076674570225",
    "sa-east-1": "507241528517",
}


def delivery_statement(bucket: str, account: str, region: str) -> dict[str, Any]:
    """What lets the ALB's log delivery write the access logs into the bucket."""
    elb = ELB_ACCOUNTS.get(region)
    principal = (
        {"AWS": f"arn:aws:iam::{elb}:root"}
        if elb
        else {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}
    )
    return {
        "Sid": "DynoformAlbAccessLogs",
        "Effect": "Allow",
        "Principal": principal,
        "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{bucket}/{PREFIX}/AWSLogs/{account}/*",
    }


def _allow_delivery(s3: Any, bucket: str, account: str, region: str) -> None:
    try:
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchBucketPolicy":
            raise
        policy = {"Version": "2012-10-17", "Statement": []}
    statement = delivery_statement(bucket, account, region)
    others = [s for s in policy["Statement"] if s.get("Sid") != statement["Sid"]]
    policy["Statement"] = [*others, statement]
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def pending(s3: Any, bucket: str) -> list[str]:
    """The oldest access-log objects not shipped yet (their keys sort by time)."""
    resp = s3.list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/", MaxKeys=MAX_KEYS)
    return [obj["Key"] for obj in resp.get("Contents", [])]


def read(s3: Any, bucket: str, key: str) -> Iterator[str]:
    """The object's lines, read as a stream (an ALB's object may be large)."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    stream = gzip.GzipFile(fileobj=body) if key.endswith(".gz") else body
    try:
        yield from lines_of(stream)
    finally:
        body.close()


def lines_of(stream: Any, chunk: int = 65536) -> Iterator[str]:
    """Lines of a stream that has only read(n) (botocore's body, a GzipFile)."""
    rest = b""
    while data := stream.read(chunk):
        *whole, rest = (rest + data).split(b"\n")
        for line in whole:
            yield line.rstrip(b"\r").decode("utf-8", errors="replace")
    if rest:
        yield rest.decode("utf-8", errors="replace")


def delete(s3: Any, bucket: str, key: str) -> None:
    """The object goes with its versions (the bucket is versioned: none are left to pile up)."""
    delete_versions(s3, bucket, key)


def disable(aws: Aws, lb_arn: str) -> bool:
    """No drain is left on the platform: the access logs stop; True if they were on."""
    attrs = aws.elbv2.describe_load_balancer_attributes(LoadBalancerArn=lb_arn)["Attributes"]
    if {a["Key"]: a["Value"] for a in attrs}.get("access_logs.s3.enabled") != "true":
        return False
    aws.elbv2.modify_load_balancer_attributes(
        LoadBalancerArn=lb_arn, Attributes=[{"Key": "access_logs.s3.enabled", "Value": "false"}]
    )
    return True


def ensure(aws: Aws, platform: Platform, on: bool, local: bool, policy: bool = True) -> bool:
    """Every load balancer of the platform (each shard) with its access logs on (some app has
    drains) or off; True if one changed. policy=False: the bucket policy is left as it is
    (the controller may not change it; `drains:add` put the statement there, for every shard)."""
    changed = False
    for shard in platform.all_shards:
        if on:
            changed = enable(aws, shard.lb_arn, platform.bucket, local or not policy) or changed
        else:
            changed = disable(aws, shard.lb_arn) or changed
    return changed
