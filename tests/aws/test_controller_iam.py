"""The controller's instance profile against moto: made by init once, carried by runners (not
the add-on host), removed by destroy; a launch waits out a profile EC2 does not know yet."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from test_platform import SSH_CIDR, _seed_debian_parameter

from provisioner.aws import iam, instances
from provisioner.aws.platform import ensure_platform, load_platform
from provisioner.aws.teardown import destroy_platform
from provisioner.errors import NoPlatform

NAME = "dynoform-plat-controller"


def _access(aws) -> dict:
    """The role's trust and inline policies and the profile's roles, as IAM holds them."""
    client = aws.client("iam")
    role = client.get_role(RoleName=NAME)["Role"]
    policies = client.list_role_policies(RoleName=NAME)["PolicyNames"]
    profile = client.get_instance_profile(InstanceProfileName=NAME)["InstanceProfile"]
    return {
        "trust": role["AssumeRolePolicyDocument"],
        "policies": {
            p: client.get_role_policy(RoleName=NAME, PolicyName=p)["PolicyDocument"]
            for p in policies
        },
        "profile_roles": [r["RoleName"] for r in profile["Roles"]],
        "profile_tags": profile.get("Tags", []),
    }


def _runner_request(aws, platform, role=instances.RUNNER):
    ami = _seed_debian_parameter(aws)
    return instances.launch_request(
        platform, ami=ami, device="/dev/xvda", instance_type="t3.small",
        subnet_id=platform.subnet_ids[0], user_data="#cloud-config\n{}\n", role=role,
    )  # fmt: skip


def test_init_makes_role_policy_and_profile_once(aws, target, config_home):
    first = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    assert first.instance_profile == NAME
    assert f"role {NAME}" in first.created
    assert f"instance profile {NAME} (role {NAME})" in first.created
    held = _access(aws)
    assert held["trust"] == iam.TRUST_POLICY
    assert held["policies"] == {
        iam.POLICY_NAME: iam.controller_policy(
            "plat", "us-east-1", aws.account_id(), ["dynoform-plat-" + aws.account_id()]
        )
    }
    assert held["profile_roles"] == [NAME]
    assert held["profile_tags"] == [{"Key": "dynoform:platform", "Value": "plat"}]

    second = ensure_platform(aws, target)
    assert second.created == []  # platform:init says "up to date"
    assert _access(aws) == held
    assert load_platform(aws, target).instance_profile == NAME


def test_init_repairs_a_changed_policy_and_a_profile_without_its_role(aws, target, config_home):
    ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    held = _access(aws)
    client = aws.client("iam")
    wider = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}  # fmt: skip
    client.put_role_policy(
        RoleName=NAME, PolicyName=iam.POLICY_NAME, PolicyDocument=json.dumps(wider)
    )
    client.remove_role_from_instance_profile(InstanceProfileName=NAME, RoleName=NAME)
    again = ensure_platform(aws, target)
    assert again.created == [
        f"policy {iam.POLICY_NAME} of role {NAME}: updated",
        f"instance profile {NAME}: role {NAME} added",
    ]
    assert _access(aws) == held


def test_load_without_the_profile_points_to_init(aws, target, config_home):
    ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    iam.remove_controller_access(aws.client("iam"), "plat")
    with pytest.raises(NoPlatform, match="controller instance profile"):
        load_platform(aws, target)


def test_runners_carry_the_profile_and_the_addon_host_does_not(aws, target, config_home):
    platform = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    runner = instances.launch(aws, _runner_request(aws, platform))
    addon = instances.launch(aws, _runner_request(aws, platform, role="addon"))
    described = aws.ec2.describe_instances(InstanceIds=[runner.id, addon.id])["Reservations"]
    by_id = {i["InstanceId"]: i for r in described for i in r["Instances"]}
    profile_arn = aws.client("iam").get_instance_profile(InstanceProfileName=NAME)[
        "InstanceProfile"
    ]["Arn"]
    assert by_id[runner.id]["IamInstanceProfile"]["Arn"] == profile_arn
    assert "IamInstanceProfile" not in by_id[addon.id]


def test_a_record_from_before_the_controller_launches_without_a_profile(aws, target, config_home):
    platform = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    platform.instance_profile = ""
    assert "IamInstanceProfile" not in _runner_request(aws, platform)


def test_destroy_removes_role_policy_and_profile(aws, target, config_home):
    platform = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    instances.launch(aws, _runner_request(aws, platform))
    done = destroy_platform(aws, target)
    assert f"instance profile {NAME}" in done and f"role {NAME}" in done
    client = aws.client("iam")
    assert client.list_instance_profiles()["InstanceProfiles"] == []
    assert client.list_roles()["Roles"] == []
    again = destroy_platform(aws, target)  # already gone counts as done
    assert not [item for item in again if NAME in item]


def _not_ready() -> dict:
    message = "Value (dynoform-plat-controller) for parameter iamInstanceProfile.name is invalid. "
    return {
        "service_error_code": "InvalidParameterValue",
        "service_message": message + "Invalid IAM Instance Profile name",
        "http_status_code": 400,
    }


def test_launch_waits_for_a_new_profile(aws, monkeypatch):
    """AWS refuses a just-made profile for a few seconds: the launch is retried."""
    monkeypatch.setattr(instances.time, "sleep", lambda seconds: None)
    with Stubber(aws.ec2) as stub:
        stub.add_client_error("run_instances", **_not_ready())
        stub.add_client_error("run_instances", **_not_ready())
        stub.add_response("run_instances", {"Instances": [{"InstanceId": "i-0123456789abcdef0"}]})
        host = instances.launch(aws, {"MinCount": 1, "MaxCount": 1})
        stub.assert_no_pending_responses()
    assert host.id == "i-0123456789abcdef0"


def test_launch_gives_up_on_the_profile_and_never_retries_other_errors(aws, monkeypatch):
    monkeypatch.setattr(instances.time, "sleep", lambda seconds: None)
    with Stubber(aws.ec2) as stub:
        stub.add_client_error("run_instances", **_not_ready())
        with pytest.raises(ClientError, match="Invalid IAM Instance Profile"):
            instances.launch(aws, {"MinCount": 1, "MaxCount": 1}, profile_wait=0)
        stub.add_client_error(
            "run_instances", service_error_code="InvalidParameterValue", service_message="no"
        )
        with pytest.raises(ClientError, match="no"):
            instances.launch(aws, {"MinCount": 1, "MaxCount": 1})
        stub.assert_no_pending_responses()


def test_the_controller_routes_on_every_shard_but_never_makes_one(aws, target, config_home):
    """Its policy allows no CreateLoadBalancer: when every shard is full, the controller gets
    the quota error at once rather than AWS's AccessDenied after half a shard."""
    from provisioner.context import Context
    from provisioner.fleet import OnFleet

    ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    with Context(target, aws=aws) as cli:
        assert cli.router().grow is not None
    with Context(target, aws=aws, on_fleet=OnFleet("i-0abc", "/key")) as controller:
        assert controller.router().grow is None
