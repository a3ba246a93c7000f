"""Managed add-ons (RDS, ElastiCache) against moto: settings, security rules, config vars."""

from __future__ import annotations

import pytest

from provisioner.aws.managed import resource_id
from provisioner.aws.platform import ensure_platform
from provisioner.context import Context
from provisioner.errors import DynoformError, Unsupported
from provisioner.model import addons as m
from provisioner.ops import addons
from provisioner.targets import Target


@pytest.fixture
def platform(aws, config_home):
    return ensure_platform(
        aws, Target("test", region="us-east-1", platform="plat"), "203.0.113.7/32"
    )


@pytest.fixture
def said():
    return []


@pytest.fixture
def ctx(aws, store, platform, said, monkeypatch):
    monkeypatch.setattr("provisioner.aws.managed.POLL_SECONDS", 0.0)
    store.create_app("shop")
    store.create_app("admin")
    target = Target("test", region="us-east-1", platform="plat")
    with Context(target, said.append, aws, store) as ctx:
        yield ctx


def _ingress(aws, group_id):
    groups = aws.ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    return groups[0]["IpPermissions"]


def test_postgres_on_rds_private_encrypted_and_reachable_only_from_runners(
    aws, store, platform, ctx, said
):
    addon = addons.create(ctx, "shop", "postgres", "small", provider="managed")
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
    stored = addons.get(ctx, addon.name)
    assert stored.state == "available" and stored.secret == addon.secret
    assert any("available" in line for line in said)  # progress while waiting
    assert all(addon.secret not in line for line in said)


def test_redis_on_elasticache_encrypted_with_auth_token(aws, store, platform, ctx):
    addon = addons.create(ctx, "shop", "redis", "medium", provider="managed")
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


def test_attach_detach_and_destroy_leave_nothing_behind(aws, store, platform, ctx):
    addon = addons.create(ctx, "shop", "postgres", provider="managed")
    addons.attach(ctx, addon.name, "admin", "main")
    assert store.config("admin")[0]["MAIN_URL"] == store.config("shop")[0]["DATABASE_URL"]
    with pytest.raises(DynoformError, match="already attached"):
        addons.attach(ctx, addon.name, "admin")
    addons.detach(ctx, addon.name, "admin")
    with pytest.raises(DynoformError, match="only attachment"):
        addons.detach(ctx, addon.name, "shop")
    assert "MAIN_URL" not in store.config("admin")[0]
    addons.attach(ctx, addon.name, "admin")
    assert addons.resolve(ctx, "DATABASE", "admin").name == addon.name

    group_id = addon.resource["security_group"]
    addons.destroy(ctx, addon.name)
    assert "DATABASE_URL" not in store.config("shop")[0]
    assert "DATABASE_URL" not in store.config("admin")[0]
    assert aws.client("rds").describe_db_instances()["DBInstances"] == []
    groups = aws.ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": [group_id]}])[
        "SecurityGroups"
    ]
    assert groups == []
    assert addons.list_addons(ctx) == []
    assert [r.description for r in store.releases("shop")][-1] == "Remove DATABASE_URL config var"


def test_a_var_in_use_is_refused_before_anything_is_made(aws, store, ctx):
    addons.create(ctx, "shop", "redis", provider="managed")
    with pytest.raises(DynoformError, match="REDIS_URL is already set"):
        addons.create(ctx, "shop", "redis", provider="managed")
    assert len(addons.list_addons(ctx)) == 1
    second = addons.create(ctx, "shop", "redis", as_name="cache", provider="managed")
    assert "CACHE_URL" in store.config("shop")[0]
    assert second.attachments[0].var == "CACHE_URL"


def test_snapshot_backup_and_restore_into_another_addon(aws, store, platform, ctx):
    source = addons.create(ctx, "shop", "postgres", provider="managed")
    target = addons.create(ctx, "admin", "postgres", provider="managed")
    before = store.config("admin")[0]["DATABASE_URL"]

    backup = addons.capture_backup(ctx, "DATABASE", "shop")
    snapshots = aws.client("rds").describe_db_snapshots(SnapshotType="manual")["DBSnapshots"]
    assert [s["DBSnapshotIdentifier"] for s in snapshots] == [backup.snapshot]
    assert backup.size is None and backup.ref == f"{source.name}:{backup.id}"
    assert addons.find_backup(ctx, source.name) == backup
    assert addons.backups(ctx, source.name) == [backup]
    assert addons.get(ctx, source.name).resource["backups"] == [
        {"id": backup.id, "addon": source.name, "created_at": backup.created_at,
         "snapshot": backup.snapshot}
    ]  # fmt: skip

    addons.restore_backup(ctx, backup.ref, target.name)
    url = store.config("admin")[0]["DATABASE_URL"]
    assert url != before
    assert url.startswith(f"postgres://{source.db_name}:{target.secret}@")
    assert url.endswith(f"/{source.db_name}?sslmode=require")
    assert addons.get(ctx, target.name).resource["user"] == source.db_name


def test_what_a_provider_cannot_do_is_refused_with_one_typed_error(aws, store, ctx, tmp_path):
    redis = addons.create(ctx, "shop", "redis", provider="managed")
    with pytest.raises(Unsupported, match=f"{redis.name} is not a Postgres add-on"):
        addons.capture_backup(ctx, redis.name)
    pg = addons.create(ctx, "shop", "postgres", provider="managed")
    backup = addons.capture_backup(ctx, pg.name)
    with pytest.raises(Unsupported, match="is an RDS snapshot"):
        addons.download_backup(ctx, backup.ref, tmp_path / "x.dump")
    assert not list(tmp_path.glob("x.dump*"))  # no partial file left
    # a snapshot cannot go into a self-hosted add-on (refused before any host is asked)
    other = m.Addon(
        "postgres-abc123", "postgres", "small", "self-hosted", "admin", state="available"
    )
    other.resource.update(host_id="i-0123456789abcdef0", host="198.18.0.9", port=5432)
    store.docs.create("addons/postgres-abc123.json", other.to_dict())
    with pytest.raises(Unsupported, match="restores only pg_dump backups"):
        addons.restore_backup(ctx, backup.ref, other.name)


def test_info_shows_where_it_lives_and_never_the_password(ctx):
    addon = addons.create(ctx, "shop", "postgres", provider="managed")
    addons.capture_backup(ctx, addon.name)
    found = addons.info(ctx, "DATABASE_URL", "shop")
    res = found.addon.resource
    assert found.lines == {
        "name": addon.name, "kind": "postgres", "plan": "small", "provider": "managed",
        "state": "available", "owner": "shop", "created_at": addon.created_at,
        "attachments": "shop as DATABASE_URL", "endpoint": f"{res['host']}:{res['port']}",
        "backups": "1",
    }  # fmt: skip
    assert addon.secret not in str(found.lines)


def test_an_app_going_away_takes_its_own_addons_and_drops_its_attachments(aws, store, ctx):
    own = addons.create(ctx, "shop", "postgres", provider="managed")
    other = addons.create(ctx, "admin", "redis", provider="managed")
    addons.attach(ctx, other.name, "shop")
    addons.attach(ctx, own.name, "admin", "shop_db")
    releases = len(store.releases("shop"))
    assert addons.destroy_app_addons(ctx, "shop") == [own.name]
    assert len(store.releases("shop")) == releases  # nothing rolled for the app being removed
    assert [a.name for a in addons.list_addons(ctx)] == [other.name]
    assert [t.app for t in addons.get(ctx, other.name).attachments] == ["admin"]
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


def test_platform_destroy_deletes_managed_addons_and_their_network(aws, store, ctx, monkeypatch):
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
    pg = addons.create(ctx, "shop", "postgres", "small", provider="managed")
    redis = addons.create(ctx, "shop", "redis", "small", provider="managed")
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


def test_a_self_hosted_addon_whose_host_is_gone_is_destroyed_without_it(store, ctx, said):
    addon = m.Addon("redis-abc123", "redis", "small", "self-hosted", "shop",
                    store.app_id("shop"), "available")  # fmt: skip
    addon.resource.update(host_id="i-0123456789abcdef0", host="198.18.0.9", port=6380)
    addon.attachments.append(m.Attachment("shop", "REDIS_URL", store.app_id("shop")))
    store.docs.create("addons/redis-abc123.json", addon.to_dict())
    store.save_config("shop", {"REDIS_URL": "redis://:x@198.18.0.9:6380"}, None)
    assert addons.used_ports(ctx, "i-0123456789abcdef0") == {6380}

    assert addons.destroy_app_addons(ctx, "shop") == ["redis-abc123"]
    assert addons.list_addons(ctx) == []
    assert said[-1] == "destroyed add-on redis-abc123"
    assert not any("removed redis-abc123" in line for line in said)  # no host was asked
