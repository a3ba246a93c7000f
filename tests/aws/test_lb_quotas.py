"""AWS's default ELBv2 quotas: moto enforces them as AWS does (motofix.quotas, applied by
conftest), and the router checks them first, failing with one line and leaving nothing."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from cli_support import http_load_balancer

from provisioner.aws.router import RouterTable, RouterTarget, target_group_name
from provisioner.errors import DynoformError
from provisioner.plan.shards import Quotas

CERT = "arn:aws:acm:us-east-1:123456789012:certificate/"


@pytest.fixture
def lb(aws):
    return http_load_balancer(aws)


def _code(call, **kwargs) -> str:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return str(caught.value.response["Error"]["Code"])


def _rule(elbv2, listener: str, priority: int, hosts: list[str], groups: list[str] = ()):
    forward = {"ForwardConfig": {"TargetGroups": [{"TargetGroupArn": g} for g in groups]}}
    actions = [{"Type": "forward", **forward}] if groups else [
        {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "503"}}
    ]  # fmt: skip
    return dict(
        ListenerArn=listener,
        Priority=priority,
        Conditions=[{"Field": "host-header", "HostHeaderConfig": {"Values": hosts}}],
        Actions=actions,
    )


def _groups(elbv2, vpc: str, count: int) -> list[str]:
    return [
        elbv2.create_target_group(Name=f"g{i}", Protocol="HTTP", Port=80, VpcId=vpc)[
            "TargetGroups"
        ][0]["TargetGroupArn"]
        for i in range(count)
    ]


# moto meets AWS's walls -------------------------------------------------------------------------
def test_moto_refuses_a_101st_rule_and_a_6th_condition_value(aws, lb):
    _, _, listener = lb
    elbv2 = aws.elbv2
    for i in range(100):
        elbv2.create_rule(**_rule(elbv2, listener, i + 1, [f"h{i}.test"]))
    assert _code(elbv2.create_rule, **_rule(elbv2, listener, 101, ["x.test"])) == "TooManyRules"
    rule = elbv2.describe_rules(ListenerArn=listener)["Rules"][0]["RuleArn"]
    six = [f"v{i}.test" for i in range(6)]
    conditions = [{"Field": "host-header", "HostHeaderConfig": {"Values": six}}]
    assert _code(elbv2.modify_rule, RuleArn=rule, Conditions=conditions) == "ValidationError"


def test_moto_counts_the_rules_of_every_listener_of_a_load_balancer(aws, lb):
    """AWS's quota is 100 rules per load balancer, not per listener."""
    _, arn, listener = lb
    elbv2 = aws.elbv2
    other = elbv2.create_listener(
        LoadBalancerArn=arn,
        Protocol="HTTP",
        Port=8080,
        DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}],
    )["Listeners"][0]["ListenerArn"]
    for i in range(50):
        elbv2.create_rule(**_rule(elbv2, listener, i + 1, [f"h{i}.test"]))
        elbv2.create_rule(**_rule(elbv2, other, i + 1, [f"h{i}.test"]))
    assert _code(elbv2.create_rule, **_rule(elbv2, other, 51, ["x.test"])) == "TooManyRules"


def test_moto_refuses_a_1001st_target_behind_one_load_balancer(aws, lb):
    vpc, _, listener = lb
    elbv2 = aws.elbv2
    groups = _groups(elbv2, vpc, 3)
    for i, group in enumerate(groups[:2]):
        elbv2.create_rule(**_rule(elbv2, listener, i + 1, [f"h{i}.test"], [group]))
    targets = [{"Id": f"10.42.{i // 250}.{i % 250 + 1}", "Port": 20000} for i in range(1001)]
    elbv2.register_targets(TargetGroupArn=groups[0], Targets=targets[:600])
    elbv2.register_targets(TargetGroupArn=groups[1], Targets=targets[600:1000])
    refused = _code(elbv2.register_targets, TargetGroupArn=groups[1], Targets=targets[1000:])
    assert refused == "TooManyTargets"
    elbv2.register_targets(TargetGroupArn=groups[2], Targets=targets[1000:])  # on no balancer


def test_moto_refuses_a_101st_target_group_behind_one_load_balancer(aws, lb):
    vpc, _, listener = lb
    elbv2 = aws.elbv2
    groups = _groups(elbv2, vpc, 101)
    for i in range(20):  # 5 target groups a rule: 100
        elbv2.create_rule(
            **_rule(elbv2, listener, i + 1, [f"h{i}.test"], groups[5 * i : 5 * i + 5])
        )
    refused = _code(elbv2.create_rule, **_rule(elbv2, listener, 50, ["x.test"], groups[100:]))
    assert refused == "TooManyUniqueTargetGroupsPerLoadBalancer"
    elbv2.create_rule(**_rule(elbv2, listener, 51, ["y.test"], groups[:1]))  # one it has: fine


def test_moto_refuses_a_26th_certificate_and_a_1001st_target(aws, lb):
    vpc, arn, _ = lb
    elbv2 = aws.elbv2
    https = _https_listener(aws, arn)
    # the default certificate does not count; one attached twice counts once
    certs = [{"CertificateArn": f"{CERT}c{i}"} for i in range(25)]
    elbv2.add_listener_certificates(ListenerArn=https, Certificates=certs)
    elbv2.add_listener_certificates(ListenerArn=https, Certificates=certs[:1])
    more = [{"CertificateArn": f"{CERT}c25"}]
    assert _code(elbv2.add_listener_certificates, ListenerArn=https, Certificates=more) == (
        "TooManyCertificates"
    )
    group = _groups(elbv2, vpc, 1)[0]
    targets = [{"Id": f"10.42.{i // 250}.{i % 250 + 1}", "Port": 20000} for i in range(1001)]
    elbv2.register_targets(TargetGroupArn=group, Targets=targets[:1000])
    assert _code(elbv2.register_targets, TargetGroupArn=group, Targets=targets[1000:]) == (
        "TooManyTargets"
    )


def test_moto_refuses_a_51st_application_load_balancer_in_a_region(aws, lb):
    _, arn, _ = lb  # one
    elbv2 = aws.elbv2
    subnets = elbv2.describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"][0][
        "AvailabilityZones"
    ]
    subnet_ids = [z["SubnetId"] for z in subnets]
    for i in range(3):  # network load balancers have a quota of their own
        elbv2.create_load_balancer(Name=f"n{i}", Subnets=subnet_ids, Type="network")
    for i in range(49):
        elbv2.create_load_balancer(Name=f"a{i}", Subnets=subnet_ids)
    refused = _code(elbv2.create_load_balancer, Name="late", Subnets=subnet_ids)
    assert refused == "TooManyLoadBalancers"
    elbv2.create_load_balancer(Name="n3", Subnets=subnet_ids, Type="network")


def test_a_shard_beyond_the_regions_quota_is_refused_before_it_is_made(aws, target, config_home):
    from test_platform import SSH_CIDR

    from provisioner.aws.platform import add_shard, ensure_platform

    platform = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    elbv2 = aws.elbv2
    for i in range(3):
        elbv2.create_load_balancer(Name=f"n{i}", Subnets=platform.subnet_ids, Type="network")
    for i in range(48):  # with the platform's: 49
        elbv2.create_load_balancer(Name=f"a{i}", Subnets=platform.subnet_ids)
    platform = add_shard(aws, target, platform, say=lambda _: None)  # the 50th
    with pytest.raises(DynoformError) as caught:
        add_shard(aws, target, platform, say=lambda _: None)
    assert caught.value.message == (
        "cannot make load balancer dynoform-plat--2: AWS's quota of 50 Application Load "
        "Balancers per region is reached"
    )
    assert [s.lb_dns for s in platform.shards] == [platform.all_shards[1].lb_dns]
    names = {lb["LoadBalancerName"] for lb in elbv2.describe_load_balancers()["LoadBalancers"]}
    assert "dynoform-plat--2" not in names


# the router checks first: one line, nothing left behind ----------------------------------------
def _router(aws, lb, **limits) -> RouterTable:
    vpc, _, listener = lb
    return RouterTable(aws.elbv2, "test", vpc, [listener], "apps.test", limits=Quotas(**limits))


def _app_rules(aws, listener: str) -> list[list[str]]:
    pages = aws.elbv2.get_paginator("describe_rules").paginate(ListenerArn=listener)
    rules = [r for page in pages for r in page["Rules"]]
    ordered = sorted(rules, key=lambda r: int(r["Priority"]) if r["Priority"].isdigit() else 0)
    return [
        c["HostHeaderConfig"]["Values"]
        for r in ordered
        if not r["IsDefault"]
        for c in r["Conditions"]
    ]


def test_the_101st_app_is_refused_before_any_target_group_is_made(aws, lb):
    router = _router(aws, lb, certificates=1000)  # AWS's 100 target groups per load balancer
    for i in range(100):
        router.ensure_rule(f"a{i}")
    with pytest.raises(DynoformError) as caught:
        router.ensure_rule("late")
    assert caught.value.message == (
        "every load balancer of the platform: AWS's quota of 100 target groups per "
        "Application Load Balancer is reached"
    )
    assert caught.value.hint == "destroy an app you no longer need"
    assert router.target_group_arn("late") is None
    assert len(_app_rules(aws, lb[2])) == 100


def test_each_app_keeps_room_for_a_certificate(aws, lb):
    router = _router(aws, lb)  # AWS's defaults: 25 apps, each may add an HTTPS domain
    for i in range(25):
        router.ensure_rule(f"a{i}")
    with pytest.raises(DynoformError, match="AWS's quota of 25 certificates per Application"):
        router.ensure_rule("late")
    assert router.target_group_arn("late") is None


def test_an_app_in_maintenance_keeps_its_place(aws, lb):
    """Its rule answers 503 itself (no target group behind it), yet the app is there: when it
    comes back, and when it adds a domain, it needs its room."""
    router = _router(aws, lb)
    for i in range(24):
        router.ensure_rule(f"a{i}")
    router.ensure_rule("resting", maintenance=True)
    with pytest.raises(DynoformError, match="AWS's quota of 25 certificates per Application"):
        router.ensure_rule("late")
    assert router.target_group_arn("late") is None


def test_many_domains_are_packed_into_rules_of_five(aws, lb):
    router = _router(aws, lb)
    domains = [f"d{i}.example.org" for i in range(9)]
    router.ensure_rule("shop", domains)
    assert _app_rules(aws, lb[2]) == [
        ["shop.apps.test", *domains[:4]],
        ["shop.apps.test", *domains[4:8]],
        ["shop.apps.test", domains[8]],
    ]
    router.ensure_rule("shop", [*domains[1:], "new.example.org"])  # d0 goes, new takes its place
    assert _app_rules(aws, lb[2]) == [
        ["shop.apps.test", "d1.example.org", "d2.example.org", "d3.example.org", "new.example.org"],
        ["shop.apps.test", *domains[4:8]],
        ["shop.apps.test", domains[8]],
    ]
    router.ensure_rule("shop", maintenance=True)
    assert _app_rules(aws, lb[2]) == [["shop.apps.test"]]
    router.remove_app("shop")
    assert _app_rules(aws, lb[2]) == []


def test_rules_beyond_the_load_balancers_quota_are_refused_before_any_change(aws, lb):
    router = _router(aws, lb, rules=3)
    router.ensure_rule("shop", ["a.example.org"])
    router.ensure_rule("blog")
    with pytest.raises(DynoformError) as caught:
        router.ensure_rule("shop", [f"d{i}.example.org" for i in range(9)])  # 3 rules: 2 more
    assert caught.value.message == (
        "shop's load balancer: AWS's quota of 3 rules per Application Load Balancer is reached"
    )
    assert _app_rules(aws, lb[2]) == [["shop.apps.test", "a.example.org"], ["blog.apps.test"]]
    with pytest.raises(DynoformError, match="quota of 3 rules per Application Load Balancer"):
        router.check_room("shop", [f"d{i}.example.org" for i in range(9)], False, 0)


def _https_listener(aws, arn: str) -> str:
    """An HTTPS listener on the load balancer, its default certificate one that never counts."""
    default = aws.client("acm").request_certificate(DomainName="lb.test")["CertificateArn"]
    return aws.elbv2.create_listener(
        LoadBalancerArn=arn,
        Protocol="HTTPS",
        Port=443,
        Certificates=[{"CertificateArn": default}],
        DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}],
    )["Listeners"][0]["ListenerArn"]


def _https_router(aws, lb, **limits) -> tuple[RouterTable, str]:
    """A router whose app rules go on an HTTPS listener, the HTTP one holding only those of
    apps on plain HTTP (as a platform's)."""
    vpc, arn, http = lb
    https = _https_listener(aws, arn)
    router = RouterTable(
        aws.elbv2, "test", vpc, [https], "apps.test", http_listener_arn=http,
        limits=Quotas(**limits),
    )  # fmt: skip
    return router, https


def test_rules_on_both_listeners_count_against_one_quota(aws, lb):
    router, https = _https_router(aws, lb, rules=3)
    router.ensure_rule("shop", plain_http=True)  # one rule on each listener
    router.ensure_rule("blog")
    with pytest.raises(DynoformError, match="quota of 3 rules per Application Load Balancer"):
        router.ensure_rule("blog", plain_http=True)
    assert _app_rules(aws, lb[2]) == [["shop.apps.test"]]
    assert _app_rules(aws, https) == [["shop.apps.test"], ["blog.apps.test"]]
    with pytest.raises(
        DynoformError, match="every load balancer of the platform: AWS's quota of 3"
    ):
        router.ensure_rule("late")  # a new app: no room for its rule
    assert router.target_group_arn("late") is None


def test_targets_beyond_the_load_balancers_quota_are_one_line(aws, lb):
    router = _router(aws, lb)
    router.ensure_rule("shop")
    router.ensure_rule("blog")
    router.register(
        "shop", {RouterTarget(f"10.42.{i // 250}.{i % 250 + 1}", 20000) for i in range(600)}
    )
    blog = {RouterTarget(f"10.43.{i // 250}.{i % 250 + 1}", 20000) for i in range(401)}
    with pytest.raises(DynoformError) as caught:
        router.register("blog", blog)
    assert caught.value.message == (
        "blog's load balancer (shard 0): AWS's quota of 1000 targets per Application Load "
        "Balancer is reached"
    )
    assert router.targets("blog") == set()  # AWS refuses the whole call


def test_targets_beyond_the_quota_are_refused_before_any_is_registered(aws, lb):
    router = _router(aws, lb)
    router.ensure_rule("shop")
    many = {RouterTarget(f"10.42.1.{i % 250 + 1}", 20000 + i) for i in range(1001)}
    with pytest.raises(DynoformError) as caught:
        router.register("shop", many)
    assert caught.value.message == (
        "shop's target group: AWS's quota of 1000 targets per target group is reached"
    )
    assert router.targets("shop") == set()
    assert target_group_name("test", "shop") in router.target_group_arn("shop")


def test_a_new_app_that_aws_refuses_leaves_no_target_group(aws, lb):
    """Should AWS refuse what the checks let through (another writer filled the listener
    meanwhile), the new app's target group goes again."""
    elbv2, listener = aws.elbv2, lb[2]
    for i in range(100):  # someone else's rules fill the listener
        elbv2.create_rule(**_rule(elbv2, listener, i + 1, [f"h{i}.test"]))
    router = _router(aws, lb, rules=1000)  # checks that let it through
    with pytest.raises(ClientError, match="TooManyRules"):
        router.ensure_rule("late")
    assert router.target_group_arn("late") is None
    assert elbv2.describe_target_groups()["TargetGroups"] == []
