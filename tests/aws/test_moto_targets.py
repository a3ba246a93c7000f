"""The local cloud's moto patch, in a subprocess so the rest of the suite keeps moto as it is."""

import json
import os
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


ACM_SCRIPT = r"""
import json
import boto3
from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding, PublicFormat, load_pem_private_key,
)
from moto import mock_aws
from provisioner import authority
from provisioner.localcloud import ca, motofix

def public(thing):
    return thing.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)

motofix.apply()
with mock_aws():
    acm = boto3.client("acm", region_name="us-east-1")
    arn = acm.request_certificate(DomainName="www.example.test", ValidationMethod="DNS")[
        "CertificateArn"
    ]
    described = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    held = acm.get_certificate(CertificateArn=arn)
    key, chain = motofix.acm_key(arn)
    root = ca.ensure_ca()
    print(json.dumps({
        "status": described["Status"],
        "type": described["Type"],
        "names": described["SubjectAlternativeNames"],
        "signed_by_local_ca": authority.signed_by(held["Certificate"].encode(), root.cert_pem),
        "chain_is_the_ca": chain.strip() == root.cert_pem.strip(),
        "key_matches": public(load_pem_private_key(key, None))
        == public(x509.load_pem_x509_certificate(held["Certificate"].encode())),
        "unknown": motofix.acm_key(arn[:-4] + "0000"),
    }))
"""


def test_local_acm_issues_requested_certificates_from_the_local_ca(tmp_path):
    """No DNS to validate through: issued at once, signed by the local CA, key and chain held
    for the local router."""
    result = subprocess.run(
        [sys.executable, "-c", ACM_SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "DYNOFORM_LOCAL_DIR": str(tmp_path)},
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {
        "status": "ISSUED",
        "type": "AMAZON_ISSUED",
        "names": ["www.example.test"],
        "signed_by_local_ca": True,
        "chain_is_the_ca": True,
        "key_matches": True,
        "unknown": None,
    }
