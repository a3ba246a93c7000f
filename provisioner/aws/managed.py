"""The managed add-on provider: Postgres on RDS and Redis on ElastiCache, in the platform's VPC.

Each add-on gets its own security group that admits its port only from the runners' group, so
destroying it leaves no rule behind. Storage is encrypted at rest (Redis in transit too, with an
auth token); the generated password lives only in the state store and in the config var.
Creation waits until AWS reports the resource available, reporting each status change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, BinaryIO

from botocore.exceptions import ClientError

from provisioner.aws.platform import Platform
from provisioner.aws.session import Aws, eventually
from provisioner.aws.tags import PLATFORM_TAG, RESOURCE_TAG, tag_filters
from provisioner.errors import DynoformError, Unsupported
from provisioner.model import addons as m

Say = Callable[[str], None]
WAIT_TIMEOUT = 3600.0
POLL_SECONDS = 15.0
REDIS_PORT = 6379


def resource_id(platform: str, addon: str) -> str:
    """RDS and ElastiCache identifiers: unique per platform, at most 40 characters."""
    return f"df-{platform}-{addon}"[:40].rstrip("-")


def subnet_group_name(platform: str) -> str:
    return f"dynoform-{platform}"


def _tags(platform: Platform, addon: m.Addon) -> list[dict[str, str]]:
    return [
        {"Key": PLATFORM_TAG, "Value": platform.name},
        {"Key": RESOURCE_TAG, "Value": f"addon-{addon.name}"},
        {"Key": "dynoform:addon", "Value": addon.name},
        {"Key": "dynoform:app", "Value": addon.app},
    ]


def db_instance_request(platform: Platform, addon: m.Addon, sg_id: str) -> dict[str, Any]:
    """create_db_instance arguments (pure): private, encrypted, backed up, in the VPC."""
    plan = m.PLANS[m.POSTGRES][addon.plan]
    return {
        "DBInstanceIdentifier": resource_id(platform.name, addon.name),
        "Engine": "postgres",
        "DBInstanceClass": plan["instance_class"],
        "AllocatedStorage": plan["storage_gib"],
        "StorageType": "gp3",
        "DBName": addon.db_name,
        "MasterUsername": addon.db_name,
        "MasterUserPassword": addon.secret,
        "VpcSecurityGroupIds": [sg_id],
        "DBSubnetGroupName": subnet_group_name(platform.name),
        "PubliclyAccessible": False,
        "StorageEncrypted": True,
        "BackupRetentionPeriod": 7,
        "CopyTagsToSnapshot": True,
        "AutoMinorVersionUpgrade": True,
        "Tags": _tags(platform, addon),
    }


def replication_group_request(platform: Platform, addon: m.Addon, sg_id: str) -> dict[str, Any]:
    """create_replication_group arguments (pure): encrypted at rest and in transit, auth token."""
    plan = m.PLANS[m.REDIS][addon.plan]
    return {
        "ReplicationGroupId": resource_id(platform.name, addon.name),
        "ReplicationGroupDescription": f"dynoform add-on {addon.name} of {addon.app}",
        "Engine": "redis",
        "CacheNodeType": plan["node_type"],
        "NumCacheClusters": 1,
        "Port": REDIS_PORT,
        "CacheSubnetGroupName": subnet_group_name(platform.name),
        "SecurityGroupIds": [sg_id],
        "AtRestEncryptionEnabled": True,
        "TransitEncryptionEnabled": True,
        "AuthToken": addon.secret,
        "Tags": _tags(platform, addon),
    }


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class Managed:
    """RDS and ElastiCache through boto3 for one platform."""

    name = m.MANAGED

    def __init__(
        self, aws: Aws, platform: Platform | Callable[[], Platform], poll: float | None = None
    ) -> None:
        self.aws = aws
        self._platform = platform  # or how to find it: looked up when first needed
        self.poll = POLL_SECONDS if poll is None else poll

    @property
    def platform(self) -> Platform:
        if callable(self._platform):
            self._platform = self._platform()
        return self._platform

    @property
    def rds(self) -> Any:
        return self.aws.client("rds")

    @property
    def elasticache(self) -> Any:
        return self.aws.client("elasticache")

    # network ----------------------------------------------------------------------------------
    def _security_group(self, addon: m.Addon, port: int) -> str:
        """The add-on's own group: its port from the runners' group, nothing else."""
        resource = f"addon-{addon.name}"
        ec2 = self.aws.ec2
        found = ec2.describe_security_groups(Filters=tag_filters(self.platform.name, resource))
        if found["SecurityGroups"]:
            return str(found["SecurityGroups"][0]["GroupId"])
        group_id = str(
            ec2.create_security_group(
                GroupName=f"dynoform-{self.platform.name}-{resource}",
                Description=f"dynoform add-on {addon.name}: port {port} from runners",
                VpcId=self.platform.vpc_id,
                TagSpecifications=[{"ResourceType": "security-group",
                                    "Tags": _tags(self.platform, addon)}],
            )["GroupId"]
        )  # fmt: skip
        pair = {"GroupId": self.platform.runner_sg_id, "Description": "from dynos"}
        eventually(  # the group is new: EC2 may not know it for a moment
            ec2.authorize_security_group_ingress,
            GroupId=group_id,
            IpPermissions=[{"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
                            "UserIdGroupPairs": [pair]}],
        )  # fmt: skip
        return group_id

    def _delete_security_group(self, addon: m.Addon) -> None:
        found = self.aws.ec2.describe_security_groups(
            Filters=tag_filters(self.platform.name, f"addon-{addon.name}")
        )["SecurityGroups"]
        for group in found:
            deadline = time.monotonic() + 600
            while True:  # AWS keeps the group in use until the network interfaces are gone
                try:
                    self.aws.ec2.delete_security_group(GroupId=group["GroupId"])
                    break
                except ClientError as exc:
                    if _code(exc) != "DependencyViolation" or time.monotonic() > deadline:
                        raise
                    time.sleep(self.poll)

    def _subnet_groups(self, kind: str) -> None:
        name = subnet_group_name(self.platform.name)
        subnets = self.platform.subnet_ids
        description = f"dynoform platform {self.platform.name}"
        try:
            if kind == m.POSTGRES:
                self.rds.create_db_subnet_group(
                    DBSubnetGroupName=name, DBSubnetGroupDescription=description,
                    SubnetIds=subnets,
                )  # fmt: skip
            else:
                self.elasticache.create_cache_subnet_group(
                    CacheSubnetGroupName=name, CacheSubnetGroupDescription=description,
                    SubnetIds=subnets,
                )  # fmt: skip
        except ClientError as exc:
            if "AlreadyExists" not in _code(exc):
                raise

    # lifecycle --------------------------------------------------------------------------------
    def create(self, addon: m.Addon, say: Say) -> None:
        self._subnet_groups(addon.kind)
        ident = resource_id(self.platform.name, addon.name)
        if addon.kind == m.POSTGRES:
            sg = self._security_group(addon, m.POSTGRES_PORT)
            addon.resource.update(security_group=sg, db_instance=ident)
            try:
                self.rds.create_db_instance(**db_instance_request(self.platform, addon, sg))
            except ClientError as exc:
                if _code(exc) != "DBInstanceAlreadyExists":
                    raise
                self._must_be_ours(addon, ident, self._db_instance_tags(ident))
            say(f"creating RDS instance {ident} (this takes several minutes)")
            instance = self._wait(lambda: self._db_instance(ident), "DBInstanceStatus", say)
            endpoint = instance["Endpoint"]
            addon.resource.update(host=endpoint["Address"], port=int(endpoint["Port"]),
                                  database=addon.db_name)  # fmt: skip
        else:
            sg = self._security_group(addon, REDIS_PORT)
            addon.resource.update(security_group=sg, replication_group=ident)
            try:
                self.elasticache.create_replication_group(
                    **replication_group_request(self.platform, addon, sg)
                )
            except ClientError as exc:
                if "AlreadyExists" not in _code(exc):
                    raise
                self._must_be_ours(addon, ident, self._replication_group_tags(ident))
            say(f"creating ElastiCache replication group {ident} (this takes several minutes)")
            group = self._wait(lambda: self._replication_group(ident), "Status", say)
            endpoint = group["NodeGroups"][0]["PrimaryEndpoint"]
            addon.resource.update(host=endpoint["Address"], port=int(endpoint["Port"]), tls=True)

    def _must_be_ours(self, addon: m.Addon, ident: str, tags: list[dict[str, str]]) -> None:
        """An identifier already taken is this add-on's own (a create retried) only when its
        tags say so; anything else is someone else's database, never to be handed out."""
        if not owned_by(tags, self.platform.name, addon.name):
            raise DynoformError(
                f"{ident} exists already and is not {addon.name} of platform "
                f"{self.platform.name}: it is left alone",
                "delete or rename it in the AWS console if it is a leftover, then retry",
            )

    def _db_instance_tags(self, ident: str) -> list[dict[str, str]]:
        instance = self._db_instance(ident) or {}
        if "TagList" in instance:
            return list(instance["TagList"])
        arn = instance.get("DBInstanceArn")
        return list(self.rds.list_tags_for_resource(ResourceName=arn)["TagList"]) if arn else []

    def _replication_group_tags(self, ident: str) -> list[dict[str, str]]:
        group = self._replication_group(ident) or {}
        if not group.get("ARN"):
            return []
        return list(self.elasticache.list_tags_for_resource(ResourceName=group["ARN"])["TagList"])

    def url(self, addon: m.Addon) -> str:
        res = addon.resource
        if addon.kind == m.POSTGRES:
            user = str(res.get("user", addon.db_name))  # a restored snapshot keeps its user
            database = str(res.get("database", addon.db_name))
            return m.postgres_url(
                user, addon.secret, res["host"], int(res["port"]), database, tls=True
            )
        return m.redis_url(addon.secret, res["host"], int(res["port"]), tls=True)

    def attach(self, addon: m.Addon, attachment: m.Attachment, say: Say) -> str:
        """The add-on's group admits the runners' group, so every app's dynos: the same URL."""
        return self.url(addon)

    def detach(self, addon: m.Addon, attachment: m.Attachment, say: Say) -> None:
        """Nothing in AWS is per attachment: the app's var going is the whole detach."""

    def info(self, addon: m.Addon) -> dict[str, str]:
        """Where it lives, for addons:info: the endpoint AWS gave it."""
        res = addon.resource
        return {"endpoint": f"{res['host']}:{res.get('port')}"} if res.get("host") else {}

    def _db_instance(self, ident: str) -> dict[str, Any] | None:
        try:
            found = self.rds.describe_db_instances(DBInstanceIdentifier=ident)["DBInstances"]
        except ClientError as exc:
            if _code(exc) == "DBInstanceNotFound":
                return None
            raise
        return dict(found[0]) if found else None

    def _replication_group(self, ident: str) -> dict[str, Any] | None:
        try:
            found = self.elasticache.describe_replication_groups(ReplicationGroupId=ident)
        except ClientError as exc:
            if _code(exc) == "ReplicationGroupNotFoundFault":
                return None
            raise
        groups = found["ReplicationGroups"]
        return dict(groups[0]) if groups else None

    def _wait(
        self, describe: Callable[[], dict[str, Any] | None], key: str, say: Say,
        want: str | None = "available",
    ) -> dict[str, Any]:  # fmt: skip
        """Poll until status is `want` (or, with want=None, until the resource is gone)."""
        deadline = time.monotonic() + WAIT_TIMEOUT
        started = time.monotonic()
        last = ""
        while True:
            found = describe()
            state = "deleted" if found is None else str(found.get(key, ""))
            if state != last:
                say(f"  {state} after {time.monotonic() - started:.0f} s")
                last = state
            if found is None and want is None:
                return {}
            if found is None:
                raise DynoformError("the resource disappeared while waiting for it")
            if want is not None and state == want:
                return found
            if state in ("failed", "incompatible-parameters", "create-failed"):
                raise DynoformError(f"AWS reports the add-on {state}", "see the AWS console")
            if time.monotonic() > deadline:
                raise DynoformError(f"still {state} after {WAIT_TIMEOUT:.0f} s", "retry later")
            time.sleep(self.poll)

    def destroy(self, addon: m.Addon, say: Say) -> None:
        ident = resource_id(self.platform.name, addon.name)
        if addon.kind == m.POSTGRES:
            try:
                self.rds.delete_db_instance(
                    DBInstanceIdentifier=ident, SkipFinalSnapshot=True,
                    DeleteAutomatedBackups=True,
                )  # fmt: skip
                say(f"deleting RDS instance {ident}")
            except ClientError as exc:
                if _code(exc) != "DBInstanceNotFound":
                    raise
            self._wait(lambda: self._db_instance(ident), "DBInstanceStatus", say, want=None)
        else:
            try:
                self.elasticache.delete_replication_group(ReplicationGroupId=ident)
                say(f"deleting ElastiCache replication group {ident}")
            except ClientError as exc:
                if _code(exc) != "ReplicationGroupNotFoundFault":
                    raise
            self._wait(lambda: self._replication_group(ident), "Status", say, want=None)
        self._delete_security_group(addon)

    # backups: RDS snapshots ----------------------------------------------------------------------
    def capture_backup(self, addon: m.Addon, backup: m.Backup, say: Say) -> m.Backup:
        if addon.kind != m.POSTGRES:
            raise Unsupported(f"{addon.name} is not a Postgres add-on")
        ident = resource_id(self.platform.name, addon.name)
        snapshot = f"{ident}-{backup.id}"[:63]
        self.rds.create_db_snapshot(DBSnapshotIdentifier=snapshot, DBInstanceIdentifier=ident,
                                    Tags=_tags(self.platform, addon))  # fmt: skip
        say(f"RDS snapshot {snapshot}")
        self._wait(lambda: self._snapshot(snapshot), "Status", say)
        return replace(backup, snapshot=snapshot)

    def _snapshot(self, snapshot: str) -> dict[str, Any] | None:
        try:
            found = self.rds.describe_db_snapshots(DBSnapshotIdentifier=snapshot)["DBSnapshots"]
        except ClientError as exc:
            if _code(exc) == "DBSnapshotNotFound":
                return None
            raise
        return dict(found[0]) if found else None

    def restore_backup(self, backup: m.Backup, addon: m.Addon, say: Say) -> None:
        """Replace addon's instance with one made from the snapshot (RDS restores only anew);
        its endpoint and user change in addon.resource."""
        if addon.kind != m.POSTGRES:
            raise Unsupported(f"{addon.name} is not a Postgres add-on")
        if backup.snapshot is None:
            raise Unsupported("a managed add-on restores only RDS snapshots")
        snapshot = backup.snapshot
        self.destroy_instance_only(addon, say)
        ident = resource_id(self.platform.name, addon.name)
        sg = str(addon.resource["security_group"])
        plan = m.PLANS[m.POSTGRES][addon.plan]
        self.rds.restore_db_instance_from_db_snapshot(
            DBInstanceIdentifier=ident, DBSnapshotIdentifier=snapshot,
            DBInstanceClass=plan["instance_class"], VpcSecurityGroupIds=[sg],
            DBSubnetGroupName=subnet_group_name(self.platform.name), PubliclyAccessible=False,
            Tags=_tags(self.platform, addon),
        )  # fmt: skip
        say(f"restoring {snapshot} as {ident}")
        self._wait(lambda: self._db_instance(ident), "DBInstanceStatus", say)
        # The snapshot carries the source's master password: set this add-on's own again.
        self.rds.modify_db_instance(DBInstanceIdentifier=ident, MasterUserPassword=addon.secret,
                                    ApplyImmediately=True)  # fmt: skip
        instance = self._wait(lambda: self._db_instance(ident), "DBInstanceStatus", say)
        endpoint = instance["Endpoint"]
        source = m.database_name(backup.addon)  # the snapshot keeps its user and database
        addon.resource.update(host=endpoint["Address"], port=int(endpoint["Port"]), user=source,
                              database=source)  # fmt: skip

    def delete_backup(self, backup: m.Backup, say: Say) -> None:
        """Delete the backup's RDS snapshot (manual snapshots outlive their instance)."""
        if backup.snapshot is None:
            return
        try:
            self.rds.delete_db_snapshot(DBSnapshotIdentifier=backup.snapshot)
        except ClientError as exc:
            if _code(exc) != "DBSnapshotNotFound":
                raise
        say(f"deleted RDS snapshot {backup.snapshot}")

    def download_backup(self, backup: m.Backup, handle: BinaryIO) -> None:
        raise Unsupported(
            f"{backup.ref} is an RDS snapshot: it stays in AWS",
            "restore it into an add-on: dynoform pg:backups:restore",
        )

    def destroy_instance_only(self, addon: m.Addon, say: Say) -> None:
        ident = resource_id(self.platform.name, addon.name)
        try:
            self.rds.delete_db_instance(DBInstanceIdentifier=ident, SkipFinalSnapshot=True)
        except ClientError as exc:
            if _code(exc) != "DBInstanceNotFound":
                raise
        self._wait(lambda: self._db_instance(ident), "DBInstanceStatus", say, want=None)


def owned_by(tags: list[dict[str, str]], platform: str, addon: str) -> bool:
    """Whether a database's tags name this platform and add-on (pure)."""
    pairs = {t.get("Key"): t.get("Value") for t in tags}
    return pairs.get(PLATFORM_TAG) == platform and pairs.get("dynoform:addon") == addon


# platform:destroy ---------------------------------------------------------------------------------
def tagged_with(tags: list[dict[str, str]], platform: str) -> bool:
    return {"Key": PLATFORM_TAG, "Value": platform} in [
        {"Key": t.get("Key"), "Value": t.get("Value")} for t in tags
    ]


def platform_databases(aws: Aws, platform: str) -> list[str]:
    rds = aws.client("rds")
    found = []
    for page in rds.get_paginator("describe_db_instances").paginate():
        for instance in page.get("DBInstances", []):
            tags = instance.get("TagList") or rds.list_tags_for_resource(
                ResourceName=instance["DBInstanceArn"]
            ).get("TagList", [])
            if tagged_with(tags, platform):
                found.append(str(instance["DBInstanceIdentifier"]))
    return found


def platform_snapshots(aws: Aws, platform: str) -> list[str]:
    """The platform's manual RDS snapshots (add-on backups): they outlive their instance."""
    rds = aws.client("rds")
    pages = rds.get_paginator("describe_db_snapshots").paginate(SnapshotType="manual")
    return [
        str(snapshot["DBSnapshotIdentifier"])
        for page in pages
        for snapshot in page.get("DBSnapshots", [])
        if tagged_with(snapshot.get("TagList") or [], platform)
    ]


def platform_caches(aws: Aws, platform: str) -> list[str]:
    elasticache = aws.client("elasticache")
    found = []
    for page in elasticache.get_paginator("describe_replication_groups").paginate():
        for group in page.get("ReplicationGroups", []):
            tags = elasticache.list_tags_for_resource(ResourceName=group["ARN"]).get("TagList", [])
            if tagged_with(tags, platform):
                found.append(str(group["ReplicationGroupId"]))
    return found


def _subnet_group_exists(describe: Callable[[], Any]) -> bool:
    try:
        describe()
    except ClientError as exc:
        if "NotFound" in _code(exc):
            return False
        raise
    return True


def _delete_subnet_group(delete: Callable[[], Any], in_use: str) -> None:
    """Delete a subnet group once nothing uses it (AWS takes minutes to delete a database)."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while True:
        try:
            delete()
            return
        except ClientError as exc:
            if "NotFound" in _code(exc):
                return
            if _code(exc) != in_use or time.monotonic() > deadline:
                raise
        time.sleep(POLL_SECONDS)


def destroy_managed(aws: Aws, platform: str) -> list[str]:
    """Delete every managed add-on of the platform (no final snapshot: the platform is going),
    their snapshots (as addons:destroy deletes an add-on's backups) and its subnet groups. Their security groups go with the platform's, which
    destroy_platform retries while AWS still holds them."""
    rds, elasticache = aws.client("rds"), aws.client("elasticache")
    done = []
    for ident in platform_databases(aws, platform):
        try:
            rds.delete_db_instance(
                DBInstanceIdentifier=ident, SkipFinalSnapshot=True, DeleteAutomatedBackups=True
            )
        except ClientError as exc:
            if _code(exc) not in ("DBInstanceNotFound", "InvalidDBInstanceState"):
                raise  # InvalidDBInstanceState: already being deleted
        done.append(f"RDS instance {ident}")
    for ident in platform_caches(aws, platform):
        try:
            elasticache.delete_replication_group(ReplicationGroupId=ident)
        except ClientError as exc:
            if _code(exc) not in ("ReplicationGroupNotFoundFault", "InvalidReplicationGroupState"):
                raise
        done.append(f"ElastiCache replication group {ident}")
    for snapshot in platform_snapshots(aws, platform):  # backups go with their add-ons
        try:
            rds.delete_db_snapshot(DBSnapshotIdentifier=snapshot)
        except ClientError as exc:
            if _code(exc) not in ("DBSnapshotNotFound", "InvalidDBSnapshotState"):
                raise
        done.append(f"RDS snapshot {snapshot}")
    name = subnet_group_name(platform)
    if _subnet_group_exists(lambda: rds.describe_db_subnet_groups(DBSubnetGroupName=name)):
        _delete_subnet_group(
            lambda: rds.delete_db_subnet_group(DBSubnetGroupName=name),
            "InvalidDBSubnetGroupStateFault",
        )
        done.append(f"RDS subnet group {name}")
    if _subnet_group_exists(
        lambda: elasticache.describe_cache_subnet_groups(CacheSubnetGroupName=name)
    ):
        _delete_subnet_group(
            lambda: elasticache.delete_cache_subnet_group(CacheSubnetGroupName=name),
            "CacheSubnetGroupInUse",
        )
        done.append(f"ElastiCache subnet group {name}")
    return done
