"""The load balancer's access logs, which carry the router's lines to log drains.

The ALB writes them (gzipped, every 5 minutes) under PREFIX in the platform's bucket once
`access_logs.s3.*` is set on it; the local cloud's router writes its own lines there every
few seconds when the same attributes are set (localcloud/lb.py). The controller's leader reads
what is there, ships it, and deletes it (`pending`, `read`, `delete`).
"""

from __future__ import annotations

import gzip
import json
from typing import Any

from botocore.exceptions import ClientError

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
        _allow_delivery(aws.s3, bucket, aws.account_id())
    aws.elbv2.modify_load_balancer_attributes(
        LoadBalancerArn=lb_arn,
        Attributes=[
            {"Key": "access_logs.s3.enabled", "Value": "true"},
            {"Key": "access_logs.s3.bucket", "Value": bucket},
            {"Key": "access_logs.s3.prefix", "Value": PREFIX},
        ],
    )
    return True


def delivery_statement(bucket: str, account: str) -> dict[str, Any]:
    """What lets ELB's log delivery write the access logs (regions from August 2022 on; older
    regions name their ELB account instead: see AWS's "Enable access logs" page)."""
    return {
        "Sid": "DynoformAlbAccessLogs",
        "Effect": "Allow",
        "Principal": {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"},
        "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{bucket}/{PREFIX}/AWSLogs/{account}/*",
    }


def _allow_delivery(s3: Any, bucket: str, account: str) -> None:
    try:
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchBucketPolicy":
            raise
        policy = {"Version": "2012-10-17", "Statement": []}
    statement = delivery_statement(bucket, account)
    others = [s for s in policy["Statement"] if s.get("Sid") != statement["Sid"]]
    policy["Statement"] = [*others, statement]
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def pending(s3: Any, bucket: str) -> list[str]:
    """The oldest access-log objects not shipped yet (their keys sort by time)."""
    resp = s3.list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/", MaxKeys=MAX_KEYS)
    return [obj["Key"] for obj in resp.get("Contents", [])]


def read(s3: Any, bucket: str, key: str) -> list[str]:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    if key.endswith(".gz"):
        body = gzip.decompress(body)
    return body.decode("utf-8", errors="replace").splitlines()


def delete(s3: Any, bucket: str, key: str) -> None:
    """The object goes with its versions (the bucket is versioned: none are left to pile up)."""
    delete_versions(s3, bucket, key)


def disable(aws: Aws, lb_arn: str) -> None:
    """No drain is left on the platform: the access logs stop."""
    aws.elbv2.modify_load_balancer_attributes(
        LoadBalancerArn=lb_arn, Attributes=[{"Key": "access_logs.s3.enabled", "Value": "false"}]
    )
