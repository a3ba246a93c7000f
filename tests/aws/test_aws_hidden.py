"""What moto hides and AWS does, with the local cloud's imitation on (`like_aws`): EC2's
delay before a new instance or security group is known, answers in small pages, S3's 409s;
and what platform:init and add-ons refuse before anything billed is made."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from test_platform import SSH_CIDR, _seed_debian_parameter

from provisioner.aws import acmdns, instances
from provisioner.aws.acm import AppCertificates
from provisioner.aws.billing import idle_billing
from provisioner.aws.managed import Managed, destroy_managed, resource_id
from provisioner.aws.platform import ensure_platform
from provisioner.aws.router import RouterTable
from provisioner.aws.rules import listener_rules
from provisioner.aws.state import Documents, StaleWrite
from provisioner.aws.teardown import destroy_platform
from provisioner.errors import DynoformError
from provisioner.model import addons as m
from provisioner.model.tls import AUTO


def _launch(aws, platform) -> instances.Host:
    ami = _seed_debian_parameter(aws)
    request = instances.launch_request(
        platform, ami=ami, device="/dev/xvda", instance_type="t3.small",
        subnet_id=platform.subnet_ids[0], user_data="#cloud-config\n{}\n",
    )  # fmt: skip
    return instances.launch(aws, request)


def test_new_groups_and_instances_are_waited_for(aws, target, config_home, like_aws):
    # The platform's security groups get their rules right after they are made.
    platform = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    # Longer than the fixture's 0.3 s: under CI's load, moto's answer to run_instances and the
    # next call took longer than that once, and the new instance was already visible.
    like_aws["visible_after"] = 2.0
    host = _launch(aws, platform)
    with pytest.raises(ClientError, match="InvalidInstanceID.NotFound"):
        aws.ec2.describe_instances(InstanceIds=[host.id])  # as AWS answers, for a moment
    assert instances.wait_running(aws, host.id, timeout=10).state == "running"
    fresh = _launch(aws, platform)
    instances.terminate(aws, [fresh.id])  # not yet known: retried, not lost
    assert {h.id for h in instances.list_hosts(aws, "plat")} == {host.id}


def test_rules_and_target_groups_past_the_first_page(aws, target, config_home, like_aws):
    platform = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    router = RouterTable(
        aws.elbv2, "plat", platform.vpc_id, [platform.https_listener_arn], target.app_domain
    )
    apps = [f"app{n}" for n in range(5)]
    for app in apps:
        router.ensure_rule(app)
    router.ensure_rule("app4", ["www.example.org"])  # found past page 2: changed, not added
    found = [
        r for r in listener_rules(aws.elbv2, platform.https_listener_arn) if not r["IsDefault"]
    ]
    assert len(found) == 5 and len({r["Priority"] for r in found}) == 5
    assert len(aws.elbv2.describe_rules(ListenerArn=platform.https_listener_arn)["Rules"]) == 2
    router.remove_app("app4")
    assert len(listener_rules(aws.elbv2, platform.https_listener_arn)) == 5  # 4 and the default
    done = destroy_platform(aws, target)
    assert sum(line.startswith("target group ") for line in done) == 4  # app4's went with it
    groups = aws.elbv2.get_paginator("describe_target_groups").paginate()
    assert [g for page in groups for g in page["TargetGroups"]] == []


def test_validation_takes_the_public_zone_past_the_first_page(aws, like_aws):
    route53 = aws.client("route53")
    vpc = aws.ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    route53.create_hosted_zone(
        Name="shop.example.net", CallerReference="private", VPC={"VPCRegion": "us-east-1", "VPCId": vpc},
        HostedZoneConfig={"PrivateZone": True, "Comment": "inside the VPC only"},
    )  # fmt: skip
    for n in range(4):
        route53.create_hosted_zone(Name=f"other{n}.example.net", CallerReference=f"o{n}")
    public = route53.create_hosted_zone(Name="shop.example.net", CallerReference="public")
    assert (
        acmdns.hosted_zone(aws, "www.shop.example.net")
        == public["HostedZone"]["Id"].rsplit("/", 1)[-1]
    )


def test_certificates_are_found_without_a_tag_call_each(aws, target, config_home, like_aws):
    platform = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    made = AppCertificates(aws, platform)
    arns = {made.request("shop", f"d{n}.example.org") for n in range(3)}
    made.request("blog", "blog.example.org")
    calls: list[str] = []
    fresh = AppCertificates(aws, platform)  # no memory of what it made: the tagging API only
    fresh.acm.meta.events.register(
        "before-call.acm.ListTagsForCertificate", lambda **kw: calls.append("tags")
    )
    mine = fresh.of_app("shop")
    assert {c.arn for c in mine} == arns and {c.kind for c in mine} == {AUTO}
    assert calls == []


def test_a_rule_priority_another_writer_takes_meanwhile_is_retried(aws):
    """Between reading the listener's rules and creating its own, another process takes the
    free priority: ELBv2 (moto as AWS) answers PriorityInUse, and the next free one is used."""
    from cli_support import http_load_balancer

    vpc, _, listener = http_load_balancer(aws)
    router = RouterTable(aws.elbv2, "plat", vpc, [listener], "apps.test")
    other = boto3.client("elbv2", region_name="us-east-1")
    taken: list[int] = []

    def another_writer(params, **kwargs):
        if not taken:
            taken.append(params["Priority"])
            other.create_rule(
                ListenerArn=listener, Priority=params["Priority"],
                Conditions=[{"Field": "host-header", "HostHeaderConfig": {"Values": ["o.test"]}}],
                Actions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "503"}}],
            )  # fmt: skip

    service = aws.elbv2.meta.service_model.service_id.hyphenize()
    aws.elbv2.meta.events.register(f"before-parameter-build.{service}.CreateRule", another_writer)
    router.ensure_rule("shop")
    held = {
        int(r["Priority"]): r["Conditions"][0]["HostHeaderConfig"]["Values"]
        for r in listener_rules(aws.elbv2, listener)
        if not r["IsDefault"]
    }
    assert taken == [100]
    assert held == {100: ["o.test"], 101: ["shop.apps.test"]}


def test_a_conditional_write_racing_another_is_retried(store, like_aws):
    like_aws["conflicts"] = 2
    store.docs.create("x/one", {"n": 1})
    assert store.docs.get("x/one").data == {"n": 1} and like_aws["conflicts"] == 0
    like_aws["conflicts"] = 99
    with pytest.raises(StaleWrite):
        store.docs.create("x/two", {"n": 2})


def test_init_refuses_a_domain_it_cannot_validate_before_making_anything(moto_cli, capsys):
    from cli_support import run

    assert moto_cli("targets:add", "t2", "--platform", "nozone")[0] == 0
    code, _, err = run(capsys, "-t", "t2", "platform:init", "--ssh-cidr", SSH_CIDR)
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("error: no public Route 53 zone for nozone.example.com")
    assert "--domain" in err and "--cert" in err
    ec2 = boto3.client("ec2", region_name="us-east-1")
    tagged = [{"Name": "tag:dynoform:platform", "Values": ["nozone"]}]
    assert ec2.describe_vpcs(Filters=tagged)["Vpcs"] == []
    assert (
        boto3.client("elbv2", region_name="us-east-1").describe_load_balancers()["LoadBalancers"]
        == []
    )
    code, _, err = run(capsys, "targets:add", "t3", "--platform", "a-very-long-platform-name")
    assert code == 1 and "platform name" in err


def test_a_command_that_would_make_the_platform_refuses_a_bad_name(
    moto_cli, capsys, tmp_path, monkeypatch
):
    """A target written by hand (targets:add would refuse it) with a name AWS identifiers
    cannot hold: a command that makes the platform on first use refuses before making it."""
    from cli_support import run

    toml = tmp_path / "config" / "dynoform" / "targets.toml"
    toml.write_text(
        toml.read_text() + '\n[targets.t4]\nregion = "us-east-1"\n'
        'platform = "a-very-long-platform-name"\ndomain = "dynoform.example.com"\n'
    )
    monkeypatch.setenv("DYNOFORM_SSH_CIDR", SSH_CIDR)
    code, _, err = run(capsys, "-t", "t4", "hosts:add")
    assert code == 1 and err.startswith("error: platform name 'a-very-long-platform-name'")
    ec2 = boto3.client("ec2", region_name="us-east-1")
    tagged = [{"Name": "tag:dynoform:platform", "Values": ["a-very-long-platform-name"]}]
    assert ec2.describe_vpcs(Filters=tagged)["Vpcs"] == []


def test_a_database_identifier_taken_by_another_is_not_ours(aws, target, config_home):
    platform = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    addon = m.Addon(
        name="postgres-aaaaaa", kind=m.POSTGRES, plan="small", provider="managed", app="shop"
    )
    aws.client("rds").create_db_instance(
        DBInstanceIdentifier=resource_id("plat", addon.name), DBInstanceClass="db.t4g.micro",
        Engine="postgres", MasterUsername="someone", MasterUserPassword="x" * 16,
    )  # fmt: skip
    with pytest.raises(DynoformError, match="exists already and is not postgres-aaaaaa"):
        Managed(aws, platform, poll=0.0).create(addon, lambda line: None)


def test_state_bucket_expires_old_versions_and_keeps_other_rules(aws, target, config_home):
    platform = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    docs = Documents(aws.s3, platform.bucket)
    rules = aws.s3.get_bucket_lifecycle_configuration(Bucket=platform.bucket)["Rules"]
    days = {
        r["ID"]: r.get("NoncurrentVersionExpiration", r.get("Expiration", {})).get(
            "NoncurrentDays", r.get("Expiration", {}).get("Days")
        )
        for r in rules
    }
    assert days == {
        "dynoform-old-versions": 30,
        "dynoform-caches-versions": 1,
        "dynoform-leases-versions": 1,
        "dynoform-controller-versions": 1,
        "dynoform-router-logs": 1,
    }
    assert docs.ensure_lifecycle() is False  # idempotent
    mine = {"ID": "mine", "Filter": {"Prefix": "exports/"}, "Status": "Enabled",
            "Expiration": {"Days": 3}}  # fmt: skip
    aws.s3.put_bucket_lifecycle_configuration(
        Bucket=platform.bucket, LifecycleConfiguration={"Rules": [mine]}
    )
    assert docs.ensure_lifecycle() is True
    ids = [
        r["ID"] for r in aws.s3.get_bucket_lifecycle_configuration(Bucket=platform.bucket)["Rules"]
    ]
    assert ids[0] == "mine" and len(ids) == 6


def test_info_lists_what_bills_while_idle(aws, target, config_home):
    platform = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    assert [(b.kind, b.count) for b in idle_billing(aws, "plat")] == [
        ("application load balancers", 1)
    ]
    _launch(aws, platform)
    billed = {b.kind: (b.count, b.detail) for b in idle_billing(aws, "plat")}
    assert billed["instances"] == (1, "1 t3.small")
    assert billed["EBS volumes"] == (1, "20 GiB")
    assert "RDS instances" not in billed and "NAT gateways" not in billed


def test_every_shard_bills_and_is_destroyed_even_after_a_gap(aws, target, config_home):
    """Shards are found in the region's list, not by counting up until one is missing: an
    interrupted destroy that deleted shard 1 leaves shard 2, which still bills. A load
    balancer with a shard's name but not the platform's tag is someone else's."""
    platform = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    elbv2 = aws.elbv2
    for shard in (1, 2):
        elbv2.create_load_balancer(
            Name=f"dynoform-plat--{shard}", Subnets=platform.subnet_ids,
            Tags=[{"Key": "dynoform:platform", "Value": "plat"}],
        )  # fmt: skip
    elbv2.create_load_balancer(Name="dynoform-plat--3", Subnets=platform.subnet_ids)
    gone = elbv2.describe_load_balancers(Names=["dynoform-plat--1"])["LoadBalancers"][0]
    elbv2.delete_load_balancer(LoadBalancerArn=gone["LoadBalancerArn"])
    billed = {b.kind: (b.count, b.detail) for b in idle_billing(aws, "plat")}
    assert billed["application load balancers"] == (2, "dynoform-plat, dynoform-plat--2")
    done = destroy_platform(aws, target)
    assert "load balancer dynoform-plat--2" in done
    left = [lb["LoadBalancerName"] for lb in elbv2.describe_load_balancers()["LoadBalancers"]]
    assert left == ["dynoform-plat--3"]


def test_platform_policy_prints_the_clis_and_the_controllers(moto_cli):
    code, out, _ = moto_cli("platform:policy")
    assert code == 0
    actions = {a for s in json.loads(out)["Statement"] for a in s["Action"]}
    assert {"ec2:RunInstances", "iam:PassRole", "tag:GetResources"} <= actions
    code, out, _ = moto_cli("platform:policy", "--controller")
    assert code == 0
    controller = json.loads(out)
    assert "dynoform-dynoform-123456789012" in json.dumps(controller)  # its bucket only
    scoped = [s for s in controller["Statement"] if s.get("Condition")]
    assert scoped  # narrower: most of what it may change is this platform's by tag


def test_platform_destroy_deletes_the_addons_snapshots_that_bill(aws):
    rds = aws.client("rds")
    tags = [{"Key": "dynoform:platform", "Value": "plat"}]
    rds.create_db_instance(
        DBInstanceIdentifier="df-plat-postgres-aaaaaa", DBInstanceClass="db.t4g.micro",
        Engine="postgres", MasterUsername="u", MasterUserPassword="x" * 16, Tags=tags,
    )  # fmt: skip
    rds.create_db_snapshot(
        DBSnapshotIdentifier="df-plat-postgres-aaaaaa-b1",
        DBInstanceIdentifier="df-plat-postgres-aaaaaa",
        Tags=tags,
    )
    rds.create_db_snapshot(  # another platform's: left alone
        DBSnapshotIdentifier="someone-elses", DBInstanceIdentifier="df-plat-postgres-aaaaaa"
    )
    billed = {b.kind: b.detail for b in idle_billing(aws, "plat")}
    assert billed["RDS snapshots"] == "df-plat-postgres-aaaaaa-b1"
    assert "RDS snapshot df-plat-postgres-aaaaaa-b1" in destroy_managed(aws, "plat")
    left = rds.describe_db_snapshots(SnapshotType="manual")["DBSnapshots"]
    assert [s["DBSnapshotIdentifier"] for s in left] == ["someone-elses"]


def test_the_controller_terminates_a_failed_launch_left_running(aws, store, target, config_home):
    from provisioner.context import Context
    from provisioner.ops import controller

    platform = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    host = _launch(aws, platform)  # its launch failed and so did the terminate
    with Context(target, lambda line: None, aws, store) as ctx:
        ctl = controller.Controller(ctx, "runner-1")
        assert ctl._lead()
        pins = {host.id: {"failed": "boot timed out", "bootstrapped": False}}
        ctl._forget_gone(ctx.fleet(), {}, {host.id: host}, pins)
    state = aws.ec2.describe_instances(InstanceIds=[host.id])["Reservations"][0]["Instances"][0]
    assert state["State"]["Name"] in ("shutting-down", "terminated")


def _pin(ctx, host_id: str, **fields) -> None:  # type: ignore[no-untyped-def]
    from provisioner.fleet import pin_key
    from provisioner.remote.hostkeys import generate_host_keys, pin_record

    ctx.store.docs.create(pin_key(host_id), pin_record(host_id, generate_host_keys(), **fields))


def test_a_new_leader_declares_lost_a_launch_its_predecessor_left_half_way(
    aws, store, target, config_home
):  # type: ignore[no-untyped-def]
    # The leader launched a host, then its own host went (CI, 12-02): nobody will finish that
    # bootstrap, and waiting ABANDONED_LIMIT kept the fleet short for five minutes.
    from provisioner.context import Context
    from provisioner.ops import controller
    from provisioner.plan import controller as plan

    platform = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    orphan, mine = _launch(aws, platform), _launch(aws, platform)
    with Context(target, lambda line: None, aws, store) as ctx:
        ctl = controller.Controller(ctx, "runner-1", probe=lambda ip: True)
        assert ctl._lead()
        _pin(ctx, orphan.id, bootstrapped=False, launched_by="i-gone:41")
        _pin(ctx, mine.id, bootstrapped=False, launched_by=ctl.lease.holder)  # type: ignore[union-attr]
        fleet = ctx.fleet()
        views, _ = ctl._look(fleet, ctl._runner_pins(fleet))
        verdicts = plan.judge(list(views.values()), {}, ctl.clock())
    assert verdicts == [
        plan.Verdict(
            orphan.id, "abandoned half-way: the controller that launched it no longer leads"
        )
    ]


def test_a_leader_whose_own_host_is_terminated_launches_nothing(aws, store, target, config_home):  # type: ignore[no-untyped-def]
    from provisioner.context import Context
    from provisioner.fleet import SIZE_DOC
    from provisioner.ops import controller

    platform = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    own, other = _launch(aws, platform), _launch(aws, platform)
    said: list[str] = []
    with Context(target, said.append, aws, store) as ctx:
        _pin(ctx, own.id, bootstrapped=True)
        _pin(ctx, other.id, bootstrapped=True)
        ctx.store.docs.create(SIZE_DOC, {"runners": 2})
        aws.ec2.terminate_instances(InstanceIds=[own.id])
        ctl = controller.Controller(ctx, own.id, probe=lambda ip: False)
        assert ctl._lead()
        ctl.loop()
    assert f"host {own.id} is lost: terminated" in said, said
    assert not [line for line in said if line.startswith("launching")], said
