"""The controller's policy as data: exact JSON for a fixed platform (a golden file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from provisioner.aws import iam
from provisioner.aws.instances import RUNNER
from provisioner.aws.tags import PLATFORM_TAG

GOLDEN = Path(__file__).parent / "golden" / "iam"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, f"{name} differs from its golden file"


def _policy() -> dict:
    return iam.controller_policy(
        "plat", "eu-west-1", "123456789012", ["dynoform-plat-123456789012"]
    )


def test_policy_matches_golden_file() -> None:
    check_golden("controller-policy.json", json.dumps(_policy(), indent=2) + "\n")


def test_trust_policy_matches_golden_file() -> None:
    check_golden("controller-trust.json", json.dumps(iam.TRUST_POLICY, indent=2) + "\n")


def test_only_reads_go_unscoped() -> None:
    """Describe* calls, and CloudWatch's metric reads (they take no resource nor tag); the
    dynos' metrics are put to the platform's namespace only (PutMetricData takes no resource)."""
    for statement in _policy()["Statement"]:
        unscoped = statement["Resource"] == "*" and "Condition" not in statement
        assert unscoped == (statement["Sid"] in ("Describe", "ReadMetrics"))
        if statement["Sid"] == "PublishDynoMetrics":
            assert statement["Action"] == ["cloudwatch:PutMetricData"]
            assert statement["Condition"] == {
                "StringEquals": {"cloudwatch:namespace": "dynoform/plat"}
            }
        if statement["Sid"] == "Describe":
            assert all(":Describe" in action for action in statement["Action"])
        if statement["Sid"] == "ReadMetrics":
            assert statement["Action"] == [
                "cloudwatch:GetMetricData",
                "cloudwatch:GetMetricStatistics",
            ]


def test_every_change_is_tied_to_the_platform() -> None:
    """Each statement that changes something names the platform: by its tag in a condition, or
    in the ARN (key pair, role, load balancer, bucket, the add-ons' RDS names)."""
    for statement in _policy()["Statement"]:
        if statement["Sid"] in ("Describe", "ReadMetrics", "DebianImage"):
            continue
        text = json.dumps(statement)
        tagged = f"/{PLATFORM_TAG}" in text and '"plat"' in text
        named = "dynoform-plat" in text or ":df-plat-postgres-*" in text
        named = named or '"cloudwatch:namespace": "dynoform/plat"' in text
        assert tagged or named, statement["Sid"]


def test_runners_only_and_own_role_only() -> None:
    by_sid = {s["Sid"]: s for s in _policy()["Statement"]}
    assert iam.RUNNER == RUNNER
    assert by_sid["TerminateOwnRunners"]["Condition"]["StringEquals"] == {
        "ec2:ResourceTag/dynoform:platform": "plat",
        "ec2:ResourceTag/dynoform:role": "runner",
    }
    assert by_sid["PassOwnRole"]["Resource"] == (
        "arn:aws:iam::123456789012:role/dynoform-plat-controller"
    )


def test_partition_follows_the_region() -> None:
    policy = iam.controller_policy("p", "cn-north-1", "1", ["b"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["PlatformObjects"]["Resource"] == ["arn:aws-cn:s3:::b/*"]
    assert (
        by_sid["PruneSnapshots"]["Resource"]
        == "arn:aws-cn:rds:cn-north-1:1:snapshot:df-p-postgres-*"
    )
    assert iam.partition("us-gov-west-1") == "aws-us-gov"
    assert iam.partition("eu-west-1") == "aws"


def test_a_long_platform_name_reaches_only_its_own_shards() -> None:
    """Shards of a 21-character platform are `df-<platform>--<n>`: the policy names exactly
    those, not a cut prefix another platform's shards share."""
    policy = iam.controller_policy("abcdefghijklmnopqrstu", "eu-west-1", "123456789012", ["b"])
    text = json.dumps(policy)
    assert "loadbalancer/app/df-abcdefghijklmnopqrstu--*/*" in text
    assert "listener-rule/app/df-abcdefghijklmnopqrstu--*/*" in text
    assert "abcdefghijklmnopq--*" not in text
