"""A platform with a second tagged network (two `platform:init` at once, before one build at a
time): init and info use the load balancer's network; concurrent inits make one network."""

from __future__ import annotations

import threading

from cli_support import network_counts

from provisioner.aws.platform import ensure_platform, load_platform
from provisioner.aws.session import Aws
from provisioner.aws.tags import tags
from provisioner.context import Context
from provisioner.ops import platform as platform_ops

SSH_CIDR = "203.0.113.7/32"


# One platform's network: its VPC, gateway, route table, a subnet per zone, two groups.
ONE_NETWORK = {"vpcs": 1, "igws": 1, "subnets": 3, "route_tables": 1, "groups": 2}


def _lb_vpc(aws, platform) -> str:
    lb = aws.elbv2.describe_load_balancers(LoadBalancerArns=[platform.lb_arn])["LoadBalancers"]
    return str(lb[0]["VpcId"])


def _second_network(aws, target) -> str:
    """What the init that lost the race left: its own tagged VPC, made before the platform's
    (EC2 lists it first), with its own tagged gateway made after the platform's (listed
    second), subnets, route table and security groups. Returns its VPC id."""
    ec2, name = aws.ec2, target.platform
    other = ec2.create_vpc(CidrBlock=target.cidr)["Vpc"]["VpcId"]  # untagged while we build
    platform = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    ec2.create_tags(Resources=[other], Tags=tags(name, "vpc"))
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.create_tags(Resources=[igw], Tags=tags(name, "igw"))
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=other)
    subnet = ec2.create_subnet(VpcId=other, CidrBlock=platform.cidr.replace("/16", "/20"))
    ec2.create_tags(Resources=[subnet["Subnet"]["SubnetId"]], Tags=tags(name, "subnet-0"))
    table = ec2.create_route_table(VpcId=other)["RouteTable"]["RouteTableId"]
    ec2.create_tags(Resources=[table], Tags=tags(name, "routes"))
    for resource in ("lb", "runners"):
        group = ec2.create_security_group(
            GroupName=f"dynoform-{name}-{resource}", Description="the other", VpcId=other
        )["GroupId"]
        ec2.create_tags(Resources=[group], Tags=tags(name, resource))
    return str(other)


def _tied_to(aws, platform, vpc_id: str) -> None:
    """Every network part of the platform is in vpc_id, its gateway attached there."""
    ec2 = aws.ec2
    igw = ec2.describe_internet_gateways(InternetGatewayIds=[platform.igw_id])
    assert [a["VpcId"] for a in igw["InternetGateways"][0]["Attachments"]] == [vpc_id]
    subnets = ec2.describe_subnets(SubnetIds=platform.subnet_ids)["Subnets"]
    assert {s["VpcId"] for s in subnets} == {vpc_id}
    table = ec2.describe_route_tables(RouteTableIds=[platform.route_table_id])["RouteTables"]
    assert table[0]["VpcId"] == vpc_id
    groups = ec2.describe_security_groups(GroupIds=[platform.runner_sg_id, platform.lb_sg_id])
    assert {g["VpcId"] for g in groups["SecurityGroups"]} == {vpc_id}


def test_info_and_init_use_the_load_balancers_network(aws, target, config_home):
    other = _second_network(aws, target)
    info = load_platform(aws, target)  # was: Resource.AlreadyAssociated (the other's gateway)
    vpc_id = _lb_vpc(aws, info)
    assert info.vpc_id == vpc_id != other
    _tied_to(aws, info, vpc_id)
    said: list[str] = []
    init = ensure_platform(aws, target, say=said.append)
    assert init.as_dict() == info.as_dict()
    assert init.created == []


def test_init_removes_the_unused_second_network(aws, target, config_home):
    other = _second_network(aws, target)
    said: list[str] = []
    ensure_platform(aws, target, say=said.append)
    assert network_counts(aws, target.platform) == ONE_NETWORK
    assert any(other in line and "removed" in line for line in said), said
    said.clear()
    ensure_platform(aws, target, say=said.append)  # nothing more to do
    assert said == []


def test_a_second_network_with_a_host_is_kept(aws, target, config_home):
    other = _second_network(aws, target)
    subnet = aws.ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [other]}])
    aws.ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet["Subnets"][0]["SubnetId"],
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags(target.platform, "host")}],
    )
    said: list[str] = []
    platform = ensure_platform(aws, target, say=said.append)
    assert platform.vpc_id != other
    assert network_counts(aws, target.platform)["vpcs"] == 2
    assert any(other in line and "kept" in line for line in said), said


def test_two_inits_at_once_make_one_network(aws, target, config_home):
    """Each init lists the VPCs before either makes one (held at a barrier after the
    listing, as two processes started together may be): still one network, both succeed."""
    listed = threading.Barrier(2, timeout=5)

    def hold(**_: object) -> None:
        try:
            listed.wait()
        except threading.BrokenBarrierError:
            pass  # the other init waits for this one's lease: it lists later

    outcomes: list[object] = []
    said: list[str] = []

    def init() -> None:
        own = Aws(target)
        own.ec2.meta.events.register("after-call.ec2.DescribeVpcs", hold)
        try:
            with Context(target, said.append, aws=own) as ctx:
                outcomes.append(platform_ops.init(ctx, ssh_cidr=SSH_CIDR))
        except Exception as exc:  # noqa: BLE001 - the assertion below shows it
            outcomes.append(exc)

    threads = [threading.Thread(target=init) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [type(o).__name__ for o in outcomes] == ["Platform", "Platform"], outcomes
    assert network_counts(aws, target.platform) == ONE_NETWORK
    assert said.count("waiting for another platform:init to finish (one build at a time)") == 1
    first, second = outcomes
    assert first.as_dict() == second.as_dict()  # type: ignore[attr-defined]
    made = [line for platform in outcomes for line in platform.created]  # type: ignore[attr-defined]
    assert len([line for line in made if line.startswith("vpc ")]) == 1, made


def test_init_says_it_made_the_state_bucket_once(aws, target, config_home):
    """The lease's store makes the state bucket before the build looks for it: init still
    lists it among what it made, and a second init makes nothing."""
    with Context(target, aws=aws) as ctx:
        first = platform_ops.init(ctx, ssh_cidr=SSH_CIDR)
        assert f"bucket {ctx.store.docs.bucket}" in first.created
    with Context(target, aws=aws) as ctx:
        assert platform_ops.init(ctx).created == []
