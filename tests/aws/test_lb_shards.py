"""A platform past one load balancer's quotas: 121 apps with routes and 30 HTTPS custom domains
spread over shards (new load balancers made on demand), each app's rules and certificates on
its own shard, and a domain the full shard cannot take refused before anything changes."""

from __future__ import annotations

import json

import boto3
import pytest
from cli_support import platform_cli

from provisioner.context import Context
from provisioner.errors import DynoformError
from provisioner.ops import domains, router

APPS = [f"a{i:03}" for i in range(121)]


def _listener_hosts(elbv2, listener: str) -> set[str]:
    pages = elbv2.get_paginator("describe_rules").paginate(ListenerArn=listener)
    return {
        v
        for page in pages
        for r in page["Rules"]
        for c in r["Conditions"]
        for v in c.get("HostHeaderConfig", {}).get("Values", [])
    }


def test_a_platform_past_the_old_ceiling(tmp_path, monkeypatch, capsys):
    with platform_cli(tmp_path, monkeypatch, capsys, "--domain", "apps.example.org") as call:
        route53 = boto3.client("route53", region_name="us-east-1")
        route53.create_hosted_zone(Name="apps.example.org", CallerReference="shards")
        said: list[str] = []
        with Context.open("t1", say=said.append) as ctx:
            for app in APPS:
                record = ctx.store.create_app(app)
                router.sync_rules(ctx, record)
            for app in APPS[:30]:  # 25 on shard 0, 5 on shard 1
                domains.add(ctx, app, f"www.{app}.example.com")

            # shard 0 holds 25 apps, each with its certificate: no room for a 26th certificate
            before = ctx.store.app("a000").domains
            with pytest.raises(DynoformError) as caught:
                domains.add(ctx, "a000", "shop.a000.example.com")
            assert caught.value.message == (
                "a000's load balancer (shard 0): AWS's quota of 25 certificates per "
                "Application Load Balancer is reached"
            )
            assert ctx.store.app("a000").domains == before
            assert ctx.store.domain_owner("shop.a000.example.com") is None
            router.sync_rules(ctx, ctx.store.app("a000"))  # later deploys are not blocked

            shards = ctx.platform(create=False).all_shards
            placed = {app: ctx.router().shard_of(app) for app in APPS}

        assert len(shards) == 5  # 25 apps a load balancer: each keeps room for a certificate
        assert [sum(1 for s in placed.values() if s == i) for i in range(5)] == [25] * 4 + [21]
        assert (
            said.count("made load balancer shard 1 (" + shards[1].lb_dns + "): the others are full")
            == 1
        )
        # apps beyond shard 0 get their own name's record (the wildcard points at shard 0)
        assert any(
            s.startswith("a025.apps.example.org: a CNAME to load balancer shard 1 put in Route 53")
            for s in said
        )
        records = {
            (r["Name"].rstrip("."), r["ResourceRecords"][0]["Value"])
            for zone in route53.list_hosted_zones()["HostedZones"]
            for r in route53.list_resource_record_sets(HostedZoneId=zone["Id"])[
                "ResourceRecordSets"
            ]
            if r["Type"] == "CNAME"
        }
        assert ("a025.apps.example.org", shards[1].lb_dns) in records
        assert ("a120.apps.example.org", shards[4].lb_dns) in records
        assert not any(name == "a024.apps.example.org" for name, _ in records)
        elbv2 = boto3.client("elbv2", region_name="us-east-1")
        for index, shard in enumerate(shards):
            hosts = _listener_hosts(elbv2, shard.https_listener_arn)
            mine = [a for a, s in placed.items() if s == index]
            assert {f"{a}.apps.example.org" for a in mine} <= hosts
            assert not {f"{a}.apps.example.org" for a in APPS if a not in mine} & hosts
            served = elbv2.describe_listener_certificates(ListenerArn=shard.https_listener_arn)
            extra = [c for c in served["Certificates"] if not c.get("IsDefault")]
            assert len(extra) == {0: 25, 1: 5}.get(index, 0)
        assert "www.a029.example.com" in _listener_hosts(elbv2, shards[1].https_listener_arn)

        # the record lists every shard; a later `platform:info` finds them, destroy deletes them
        info = json.loads(call("platform:info", "--json")[1])
        assert [s["lb_dns"] for s in info["shards"]] == [s.lb_dns for s in shards[1:]]
        hint = call("domains:add", "www.a100.example.com", "-a", "a100")[2]
        assert f"point www.a100.example.com at {shards[4].lb_dns}" in hint
        code, _, err = call("platform:destroy", "--yes")
        assert code == 0, err
        assert elbv2.describe_load_balancers()["LoadBalancers"] == []
