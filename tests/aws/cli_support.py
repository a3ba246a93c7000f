"""Running the CLI in-process against moto, as the tests/aws CLI tests do; and what the tests
count of a platform's network."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from moto import mock_aws

from provisioner.aws.tags import tag_filters
from provisioner.cli.main import main

DEFAULT_DOMAIN = "dynoform.example.com"  # target t1's app domain (platform "dynoform")


def public_zone(domain: str) -> str:
    """A public Route 53 zone for the domain (platform:init on AWS needs one to validate its
    certificate through); returns its id."""
    import boto3

    route53 = boto3.client("route53", region_name="us-east-1")
    zone = route53.create_hosted_zone(Name=domain, CallerReference=f"tests-{domain}")
    return str(zone["HostedZone"]["Id"]).rsplit("/", 1)[-1]


def run(capsys: Any, *args: str) -> tuple[int, str, str]:
    """`dynoform ARGS` in this process: (exit status, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@contextmanager
def platform_cli(
    tmp_path: Path, monkeypatch: Any, capsys: Any, *target_args: str
) -> Iterator[Callable[..., tuple[int, str, str]]]:
    """An initialised platform on target `t1` in moto; yields `call(*args)` for the CLI."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("DYNOFORM_LOCAL_DIR", str(tmp_path / "local"))
    monkeypatch.chdir(tmp_path)
    with mock_aws():
        code, _, err = run(capsys, "targets:add", "t1", "--region", "us-east-1", *target_args)
        assert code == 0, err
        given = list(target_args)
        public_zone(given[given.index("--domain") + 1] if "--domain" in given else DEFAULT_DOMAIN)

        def call(*args: str) -> tuple[int, str, str]:
            return run(capsys, "-t", "t1", *args)

        code, _, err = call("platform:init", "--ssh-cidr", "203.0.113.7/32")
        assert code == 0, err
        yield call


def http_load_balancer(aws) -> tuple[str, str, str]:
    """A VPC, a load balancer and its HTTP listener (404 by default): (vpc, lb arn, listener)."""
    ec2, elbv2 = aws.ec2, aws.elbv2
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.42.{i}.0/24", AvailabilityZone=f"us-east-1{z}")[
            "Subnet"
        ]["SubnetId"]
        for i, z in ((1, "a"), (2, "b"))
    ]
    arn = elbv2.create_load_balancer(Name="df-test", Subnets=subnets)["LoadBalancers"][0][
        "LoadBalancerArn"
    ]
    not_found = {"StatusCode": "404", "ContentType": "text/plain"}
    listener = elbv2.create_listener(
        LoadBalancerArn=arn,
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": not_found}],
    )["Listeners"][0]["ListenerArn"]
    return vpc, arn, listener


def network_counts(aws: Any, platform: str) -> dict[str, int]:
    """How many of each part of its network the platform's tags find."""
    ec2, found = aws.ec2, tag_filters(platform)
    return {
        "vpcs": len(ec2.describe_vpcs(Filters=found)["Vpcs"]),
        "subnets": len(ec2.describe_subnets(Filters=found)["Subnets"]),
        "igws": len(ec2.describe_internet_gateways(Filters=found)["InternetGateways"]),
        "route_tables": len(ec2.describe_route_tables(Filters=found)["RouteTables"]),
        "groups": len(ec2.describe_security_groups(Filters=found)["SecurityGroups"]),
    }
