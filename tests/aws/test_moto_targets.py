"""The local cloud's moto patch, in a subprocess so the rest of the suite keeps moto as it is."""

import json
import subprocess
import sys

SCRIPT = r"""
import json
import boto3
from moto import mock_aws
from provisioner.localcloud import motofix

motofix.apply()
with mock_aws():
    ec2 = boto3.client("ec2", region_name="us-east-1")
    elbv2 = boto3.client("elbv2", region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    tg = elbv2.create_target_group(Name="t", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="ip")
    arn = tg["TargetGroups"][0]["TargetGroupArn"]
    elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": "10.0.0.5", "Port": 20001}])
    elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": "10.0.0.5", "Port": 20002}])
    def health():
        d = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        return sorted([x["Target"]["Port"], x["TargetHealth"]["State"]] for x in d)
    out = {"both": health()}
    motofix.set_health({(arn, "10.0.0.5", 20002): "healthy"})
    out["fed"] = health()
    elbv2.deregister_targets(TargetGroupArn=arn, Targets=[{"Id": "10.0.0.5", "Port": 20001}])
    out["after"] = health()
    print(json.dumps(out))
"""


def test_targets_keyed_by_id_and_port_with_fed_health():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["both"] == [[20001, "initial"], [20002, "initial"]]
    assert out["fed"] == [[20001, "initial"], [20002, "healthy"]]
    assert out["after"] == [[20002, "healthy"]]
