"""The CLI's IAM policy covers every AWS call the code makes, and names none it does not."""

from __future__ import annotations

import re
from pathlib import Path

import botocore.session
from botocore import xform_name

from provisioner.aws.policy import CLI_CALLS, cli_actions, cli_policy

ROOT = Path(__file__).resolve().parents[2] / "provisioner"
SERVICES = [
    "acm", "cloudwatch", "ec2", "elasticache", "elbv2", "iam", "rds",
    "resourcegroupstaggingapi", "route53", "s3", "ssm", "sts",
]  # fmt: skip
WORD = re.compile(r"\b[a-z][a-z0-9_]+\b")


def _operations() -> set[str]:
    """Every boto3 method name of the services dynoform uses."""
    session = botocore.session.get_session()
    return {
        xform_name(op)
        for service in SERVICES
        for op in session.get_service_model(service).operation_names
    }


def _called() -> set[str]:
    """The operation names in the code: called (`ec2.run_instances(`), handed to a retry
    (`eventually(ec2.describe_instances, ...)`) or named for a paginator or Finder.find.
    The local cloud is left out: it talks to moto, never to AWS with the user's credentials."""
    operations = _operations()
    found: set[str] = set()
    for path in ROOT.rglob("*.py"):
        if "localcloud" in path.parts or path.name == "policy.py":
            continue
        found |= set(WORD.findall(path.read_text())) & operations
    return found


def test_every_call_in_the_code_is_in_the_policy_and_nothing_else():
    called = _called()
    assert sorted(called - set(CLI_CALLS)) == []  # calls the policy would refuse
    assert sorted(set(CLI_CALLS) - called) == []  # permissions nothing uses


def test_the_policy_is_one_statement_per_service():
    policy = cli_policy()
    assert policy["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in policy["Statement"]]
    assert sids == [
        "DynoformAcm", "DynoformCloudwatch", "DynoformEc2", "DynoformElasticache",
        "DynoformElasticloadbalancing", "DynoformIam", "DynoformRds", "DynoformRoute53",
        "DynoformS3", "DynoformSsm", "DynoformTag",
    ]  # fmt: skip
    listed = [a for s in policy["Statement"] for a in s["Action"]]
    assert listed == cli_actions() and len(set(listed)) == len(listed)
    assert all(re.fullmatch(r"[a-z0-9-]+:[A-Z][A-Za-z0-9]+", a) for a in listed)
    assert {"iam:PassRole", "tag:GetResources", "ec2:RunInstances"} <= set(listed)
