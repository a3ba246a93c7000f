"""Managed add-ons (RDS, ElastiCache) against moto: settings, security rules, config vars."""

from __future__ import annotations

import pytest

from provisioner.aws.managed import Managed, resource_id
from provisioner.aws.platform import ensure_platform
from provisioner.context import Context
from provisioner.errors import DynoformError
from provisioner.ops.addons import Addons
from provisioner.targets import Target


@pytest.fixture
def config_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("DYNOFORM_LOCAL_DIR", str(tmp_path / "local"))
    return tmp_path


@pytest.fixture
def platform(aws, config_home):
    return ensure_platform(
        aws, Target("test", region="us-east-1", platform="plat"), "203.0.113.7/32"
    )


@pytest.fixture
def said():
    return []


@pytest.fixture
def ops(aws, store, platform, said):
    store.create_app("shop")
    store.create_app("admin")
    managed = Managed(aws, platform, poll=0)
    ctx = Context(Target("test", region="us-east-1"), said.append, aws, store)
    return Addons(ctx, lambda name: managed)


def _ingress(aws, group_id):
    groups = aws.ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    return groups[0]["IpPermissions"]


def test_postgres_on_rds_private_encrypted_and_reachable_only_from_runners(
    aws, store, platform, ops, said
):
    addon = ops.create("shop", "postgres", "small", provider="managed")
    rds = aws.client("rds")
    instance = rds.describe_db_instances(DBInstanceIdentifier=resource_id("plat", addon.name))[
        "DBInstances"
    ][0]
    assert instance["Engine"] == "postgres"
    assert instance["DBInstanceClass"] == "db.t4g.micro"
    assert instance["StorageEncrypted"] is True
    assert instance["PubliclyAccessible"] is False
    assert instance["DBSubnetGroup"]["VpcId"] == platform.vpc_id
    subnets = {s["SubnetIdentifier"] for s in instance["DBSubnetGroup"]["Subnets"]}
    assert subnets == set(platform.subnet_ids)
    group_id = addon.resource["security_group"]
    assert [g["VpcSecurityGroupId"] for g in instance["VpcSecurityGroups"]] == [group_id]
    rules = _ingress(aws, group_id)
    assert len(rules) == 1
    assert (rules[0]["FromPort"], rules[0]["ToPort"]) == (5432, 5432)
    assert rules[0]["IpRanges"] == []
    assert [p["GroupId"] for p in rules[0]["UserIdGroupPairs"]] == [platform.runner_sg_id]

    config, _ = store.config("shop")
    endpoint = instance["Endpoint"]
    assert config["DATABASE_URL"] == (
        f"postgres://{addon.db_name}:{addon.secret}@{endpoint['Address']}:{endpoint['Port']}"
        f"/{addon.db_name}?sslmode=require"
    )
    assert store.releases("shop")[-1].description == "Set DATABASE_URL config var"
    stored = ops.get(addon.name)
    assert stored.state == "available" and stored.secret == addon.secret
    assert any("available" in line for line in said)  # progress while waiting
    assert all(addon.secret not in line for line in said)


def test_redis_on_elasticache_encrypted_with_auth_token(aws, store, platform, ops):
    addon = ops.create("shop", "redis", "medium", provider="managed")
    group = aws.client("elasticache").describe_replication_groups(
        ReplicationGroupId=resource_id("plat", addon.name)
    )["ReplicationGroups"][0]
    assert group["AtRestEncryptionEnabled"] is True
    assert group["TransitEncryptionEnabled"] is True
    assert group["AuthTokenEnabled"] is True
    assert group["CacheNodeType"] == "cache.t4g.small"
    rules = _ingress(aws, addon.resource["security_group"])
    assert [(r["FromPort"], r["UserIdGroupPairs"][0]["GroupId"]) for r in rules] == [
        (6379, platform.runner_sg_id)
    ]
    url = store.config("shop")[0]["REDIS_URL"]
    assert url.startswith(f"rediss://:{addon.secret}@") and url.endswith(":6379")


def test_attach_detach_and_destroy_leave_nothing_behind(aws, store, platform, ops):
    addon = ops.create("shop", "postgres", provider="managed")
    ops.attach(addon.name, "admin", "main")
    assert store.config("admin")[0]["MAIN_URL"] == store.config("shop")[0]["DATABASE_URL"]
    with pytest.raises(DynoformError, match="already attached"):
        ops.attach(addon.name, "admin")
    ops.detach(addon.name, "admin")
    with pytest.raises(DynoformError, match="only attachment"):
        ops.detach(addon.name, "shop")
    assert "MAIN_URL" not in store.config("admin")[0]
    ops.attach(addon.name, "admin")
    assert ops.resolve("DATABASE", "admin").name == addon.name

    group_id = addon.resource["security_group"]
    ops.destroy(addon.name)
    assert "DATABASE_URL" not in store.config("shop")[0]
    assert "DATABASE_URL" not in store.config("admin")[0]
    assert aws.client("rds").describe_db_instances()["DBInstances"] == []
    groups = aws.ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": [group_id]}])[
        "SecurityGroups"
    ]
    assert groups == []
    assert ops.all() == []
    assert [r.description for r in store.releases("shop")][-1] == "Remove DATABASE_URL config var"


def test_a_var_in_use_is_refused_before_anything_is_made(aws, store, ops):
    ops.create("shop", "redis", provider="managed")
    with pytest.raises(DynoformError, match="REDIS_URL is already set"):
        ops.create("shop", "redis", provider="managed")
    assert len(ops.all()) == 1
    second = ops.create("shop", "redis", as_name="cache", provider="managed")
    assert "CACHE_URL" in store.config("shop")[0]
    assert second.attachments[0].var == "CACHE_URL"


def test_snapshot_backup_and_restore_into_another_addon(aws, store, platform, ops):
    source = ops.create("shop", "postgres", provider="managed")
    target = ops.create("admin", "postgres", provider="managed")
    managed = ops.providers("managed")

    def take(addon, backup_id):
        return {"snapshot": managed.capture(addon, backup_id, lambda line: None)}

    record = ops.capture(source.name, take)
    snapshots = aws.client("rds").describe_db_snapshots(SnapshotType="manual")["DBSnapshots"]
    assert [s["DBSnapshotIdentifier"] for s in snapshots] == [record["snapshot"]]
    found_source, found = ops.find_backup(source.name)
    assert found == record and found_source.name == source.name

    target = ops.get(target.name)
    managed.restore(record["snapshot"], source, target, lambda line: None)
    ops.refresh(target)
    url = store.config("admin")[0]["DATABASE_URL"]
    assert url.startswith(f"postgres://{source.db_name}:{target.secret}@")
    assert url.endswith(f"/{source.db_name}?sslmode=require")


def test_an_app_going_away_takes_its_own_addons_and_drops_its_attachments(aws, store, ops):
    own = ops.create("shop", "postgres", provider="managed")
    other = ops.create("admin", "redis", provider="managed")
    ops.attach(other.name, "shop")
    ops.attach(own.name, "admin", "shop_db")
    releases = len(store.releases("shop"))
    assert ops.destroy_app_addons("shop") == [own.name]
    assert len(store.releases("shop")) == releases  # nothing rolled for the app being removed
    assert [a.name for a in ops.all()] == [other.name]
    assert [t.app for t in ops.get(other.name).attachments] == ["admin"]
    assert "SHOP_DB_URL" not in store.config("admin")[0]
    assert aws.client("rds").describe_db_instances()["DBInstances"] == []


def test_self_hosted_addon_hosts_group_admits_databases_only_from_runners(aws, store, platform):
    from provisioner.fleet import Fleet
    from provisioner.ops.selfhosted import ensure_security_group

    fleet = Fleet(aws, Target("test", platform="plat"), platform, store.docs)
    group_id = ensure_security_group(fleet)
    assert ensure_security_group(fleet) == group_id  # found by its tags the second time
    rules = {(r["FromPort"], r["ToPort"]): r for r in _ingress(aws, group_id)}
    assert set(rules) == {(5432, 5432), (6380, 6479), (22, 22)}
    for ports in ((5432, 5432), (6380, 6479)):
        assert rules[ports]["IpRanges"] == []
        assert [p["GroupId"] for p in rules[ports]["UserIdGroupPairs"]] == [platform.runner_sg_id]
    assert [r["CidrIp"] for r in rules[(22, 22)]["IpRanges"]] == ["203.0.113.7/32"]


def test_platform_destroy_deletes_managed_addons_and_their_network(aws, store, ops, monkeypatch):
    from moto.core.responses import EmptyResult
    from moto.elasticache.responses import ElastiCacheResponse

    from provisioner.aws.teardown import destroy_platform

    def delete_cache_subnet_group(self):  # moto 5.2 lacks this API: a stand-in on its side
        self.elasticache_backend.cache_subnet_groups.pop(self._get_param("CacheSubnetGroupName"))
        return EmptyResult()

    monkeypatch.setattr(
        ElastiCacheResponse, "delete_cache_subnet_group", delete_cache_subnet_group, raising=False
    )
    monkeypatch.setattr("provisioner.aws.managed.POLL_SECONDS", 0.0)
    pg = ops.create("shop", "postgres", "small", provider="managed")
    redis = ops.create("shop", "redis", "small", provider="managed")
    done = destroy_platform(aws, Target("test", region="us-east-1", platform="plat"))
    assert f"RDS instance {resource_id('plat', pg.name)}" in done
    assert f"ElastiCache replication group {resource_id('plat', redis.name)}" in done
    assert {"RDS subnet group dynoform-plat", "ElastiCache subnet group dynoform-plat"} <= set(done)
    assert aws.client("rds").describe_db_instances()["DBInstances"] == []
    groups = aws.client("elasticache").describe_replication_groups()["ReplicationGroups"]
    assert [g["Status"] for g in groups] == ["deleting"]  # moto keeps it so for ever
    assert aws.client("rds").describe_db_subnet_groups()["DBSubnetGroups"] == []
    assert aws.client("elasticache").describe_cache_subnet_groups()["CacheSubnetGroups"] == []
    assert (
        aws.ec2.describe_vpcs(Filters=[{"Name": "tag:dynoform:platform", "Values": ["plat"]}])[
            "Vpcs"
        ]
        == []
    )
