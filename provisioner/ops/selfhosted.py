"""The self-hosted add-on provider: Debian's PostgreSQL and Redis on a fleet host of role `addon`.

One add-on host per platform, launched like the runners (pinned host keys, encrypted volume,
IMDSv2) but in its own security group, which admits the database ports only from the runners'
group. The `addon` playbook installs the packages and makes them listen on the private address
only, with password authentication. Each Postgres add-on is a role and a database of the same
name (`pg_hba` `sameuser`: a role reaches only its own database); each Redis add-on is its own
`redis-server@<name>` instance with its own port, password and data directory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, BinaryIO

from provisioner.aws import instances
from provisioner.aws.session import eventually
from provisioner.aws.tags import tag_filters, tag_spec
from provisioner.context import Context
from provisioner.errors import DynoformError, NotFound, Unsupported
from provisioner.fleet import BOOT_TIMEOUT, Fleet, SshRunner, pin_key
from provisioner.model import addons as m
from provisioner.ops.buildhost import curl_config
from provisioner.remote.hostkeys import cloud_config, generate_host_keys, pin_record
from provisioner.remote.ssh import Connection
from provisioner.store import now_iso

if TYPE_CHECKING:  # loaded to provision an add-on's host only
    from provisioner import playbook as pb

ROLE = "addon"
HOST_TYPE = "t3.medium"
SG_RESOURCE = "addons"
WORK_DIR = "/srv/dynoform-addons/work"
Say = Callable[[str], None]


def ensure_security_group(f: Fleet) -> str:
    """The add-on hosts' group: SSH as the runners have it, database ports only from runners."""
    ec2 = f.aws.ec2
    found = ec2.describe_security_groups(Filters=tag_filters(f.platform.name, SG_RESOURCE))
    if found["SecurityGroups"]:
        return str(found["SecurityGroups"][0]["GroupId"])
    group_id = str(
        ec2.create_security_group(
            GroupName=f"dynoform-{f.platform.name}-{SG_RESOURCE}",
            Description="dynoform add-on hosts: SSH, Postgres and Redis from runners",
            VpcId=f.platform.vpc_id,
            TagSpecifications=tag_spec("security-group", f.platform.name, SG_RESOURCE),
        )["GroupId"]
    )
    runners = ec2.describe_security_groups(GroupIds=[f.platform.runner_sg_id])["SecurityGroups"]
    ssh = [p for p in runners[0].get("IpPermissions", []) if p.get("FromPort") == 22]
    runner_sg = f.platform.runner_sg_id
    eventually(  # the group is new: EC2 may not know it for a moment
        ec2.authorize_security_group_ingress,
        GroupId=group_id,
        IpPermissions=[addon_ingress(runner_sg), redis_ingress(runner_sg), *ssh],
    )
    return group_id


def addon_ingress(runner_sg: str) -> dict[str, Any]:
    pair = {"GroupId": runner_sg, "Description": "Postgres from dynos"}
    return {"IpProtocol": "tcp", "FromPort": m.POSTGRES_PORT, "ToPort": m.POSTGRES_PORT,
            "UserIdGroupPairs": [pair]}  # fmt: skip


def redis_ingress(runner_sg: str) -> dict[str, Any]:
    pair = {"GroupId": runner_sg, "Description": "Redis from dynos"}
    return {"IpProtocol": "tcp", "FromPort": m.REDIS_FIRST_PORT, "ToPort": m.REDIS_LAST_PORT,
            "UserIdGroupPairs": [pair]}  # fmt: skip


def addon_hosts(f: Fleet) -> list[instances.Host]:
    return [
        h for h in instances.list_hosts(f.aws, f.platform.name, role=ROLE) if h.state == "running"
    ]


def launch_host(f: Fleet, say: Say) -> instances.Host:
    """Launch, pin and wait for one add-on host; terminated again if anything fails."""
    group_id = ensure_security_group(f)
    ami = instances.debian_ami(f.aws)
    keys = generate_host_keys()
    request = instances.launch_request(
        f.platform,
        ami=ami,
        device=instances.root_device(f.aws, ami),
        instance_type=HOST_TYPE,
        subnet_id=f.platform.subnet_ids[0],
        user_data=cloud_config(keys),
        role=ROLE,
    )
    request["SecurityGroupIds"] = [group_id]
    host = instances.launch(f.aws, request)
    say(f"launched add-on host {host.id}; booting")
    try:
        f.docs.create(
            pin_key(host.id),
            pin_record(host.id, keys, role=ROLE, type=HOST_TYPE, created_at=now_iso(),
                       bootstrapped=False),
        )  # fmt: skip
        host = instances.wait_running(f.aws, host.id, BOOT_TIMEOUT, f.cancel)
        f.connect(host, retry_for=BOOT_TIMEOUT)
        return host
    except BaseException:
        instances.terminate(f.aws, [host.id])
        f.docs.delete(pin_key(host.id))
        raise


def bootstrap(f: Fleet, host: instances.Host, say: Say, check: bool = False) -> pb.Report:
    """Run the `addon` role; templates get the host's private address and the VPC range."""
    from provisioner import playbook as pb

    role, templates = pb.load_role(ROLE)
    extra = {"private_ip": host.private_ip, "vpc_cidr": f.platform.cidr}
    role = pb.Role(role.name, {**role.vars, **extra}, role.specs)
    runner = SshRunner(f.connect(host, retry_for=BOOT_TIMEOUT))
    steps = role.steps(pb.gather(runner), templates)

    def report(step: pb.StepReport) -> None:
        if step.changed:
            say(f"add-on host {host.id}: {step.name}")

    result = pb.run_steps(steps, runner, check=check, on_step=report)
    if not check:
        record = f.pin(host.id)
        record.update(bootstrapped=True, bootstrapped_at=now_iso(), role=ROLE)
        f.docs.put(pin_key(host.id), record)
    return result


def ensure_host(f: Fleet, say: Say) -> instances.Host:
    """The platform's add-on host, launched and bootstrapped on first use."""
    hosts = addon_hosts(f)
    if hosts:
        host = hosts[0]
        doc = f.docs.get(pin_key(host.id))
        if doc and doc.data.get("bootstrapped"):
            return host
    else:
        say("no add-on host yet: launching one (PostgreSQL and Redis from Debian)")
        host = launch_host(f, say)
    started = time.monotonic()
    bootstrap(f, host, say)
    say(f"add-on host {host.id} ready in {time.monotonic() - started:.0f} s")
    return host


def host_of(f: Fleet, addon: m.Addon) -> tuple[instances.Host, Connection]:
    """The add-on's host and a connection to it; NotFound when the host is gone."""
    host = f.host(str(addon.resource["host_id"]))
    return host, f.connect(host)


class SelfHosted:
    """The provider on the Context's fleet (its SSH pool is the Context's, closed with it)."""

    name = m.SELF_HOSTED

    def __init__(self, ctx: Context, used_ports: Callable[[str], set[int]]) -> None:
        self.ctx = ctx
        self.used_ports = used_ports  # ports of the Redis add-ons already on a host

    @property
    def fleet(self) -> Fleet:
        self.ctx.platform(create=False)  # NoPlatform rather than a platform made on the way
        return self.ctx.fleet()

    # lifecycle --------------------------------------------------------------------------------
    def create(self, addon: m.Addon, say: Say) -> None:
        fleet = self.fleet
        host = ensure_host(fleet, say)
        conn = fleet.connect(host)
        address = str(host.private_ip)
        addon.resource.update(host_id=host.id, host=address)
        if addon.kind == m.POSTGRES:
            sql = m.create_database_sql(addon.db_name, addon.secret)
            conn.run(m.psql_argv(), sudo=True, stdin=sql.encode(), check=True, label="psql")
            addon.resource.update(port=m.POSTGRES_PORT, database=addon.db_name)
        else:
            port = m.free_port(self.used_ports(host.id))
            addon.resource.update(port=port)
            self._start_redis(conn, addon, address, port)
        say(f"{addon.name} is available on {host.id}")

    def _start_redis(self, conn: Connection, addon: m.Addon, address: str, port: int) -> None:
        memory = int(m.PLANS[m.REDIS][addon.plan]["maxmemory_mb"])
        conf = m.redis_conf(addon.name, address, port, addon.secret, memory)
        conn.run(["install", "-d", "-m", "0750", "-o", "redis", "-g", "redis", "--",
                  m.redis_data_dir(addon.name)], sudo=True, check=True)  # fmt: skip
        conn.put(conf.encode(), m.redis_conf_path(addon.name), mode="0640", owner="redis",
                 group="redis")  # fmt: skip
        unit = m.redis_unit(addon.name)
        conn.run(["systemctl", "enable", "--now", "--", unit], sudo=True, check=True)
        deadline = time.monotonic() + 30
        while True:
            state = conn.run(["systemctl", "is-active", "--", unit], sudo=True).stdout.strip()
            if state == "active":
                return
            if time.monotonic() > deadline or state == "failed":
                raise DynoformError(f"{unit} is {state}", "see its journal on the add-on host")
            time.sleep(0.5)

    def url(self, addon: m.Addon) -> str:
        res = addon.resource
        if addon.kind == m.POSTGRES:
            return m.postgres_url(addon.db_name, addon.secret, res["host"], int(res["port"]),
                                  addon.db_name)  # fmt: skip
        return m.redis_url(addon.secret, res["host"], int(res["port"]))

    def attach(self, addon: m.Addon, attachment: m.Attachment, say: Say) -> str:
        """Every app reaches the add-on host (its group admits the runners'): the same URL."""
        return self.url(addon)

    def detach(self, addon: m.Addon, attachment: m.Attachment, say: Say) -> None:
        """Nothing on the host is per attachment: the app's var going is the whole detach."""

    def info(self, addon: m.Addon) -> dict[str, str]:
        """Where it lives, for addons:info: the endpoint, and the add-on host's id."""
        res = addon.resource
        found = {"endpoint": f"{res.get('host')}:{res.get('port')}" if res.get("host") else None,
                 "host": res.get("host_id")}  # fmt: skip
        return {k: str(v) for k, v in found.items() if v is not None}

    def destroy(self, addon: m.Addon, say: Say) -> None:
        if "host_id" not in addon.resource:
            return  # never got as far as a host
        try:
            _, conn = host_of(self.fleet, addon)
        except NotFound:  # the host is gone (or the whole platform), and its data with it
            return
        if addon.kind == m.POSTGRES:
            sql = m.drop_database_sql(addon.db_name)
            conn.run(m.psql_argv(), sudo=True, stdin=sql.encode(), check=True, label="psql")
        else:
            unit = m.redis_unit(addon.name)
            conn.run(["systemctl", "disable", "--now", "--", unit], sudo=True)
            conn.run(["rm", "-rf", "--", m.redis_data_dir(addon.name),
                      m.redis_conf_path(addon.name)], sudo=True, check=True)  # fmt: skip
        say(f"removed {addon.name} from {addon.resource['host_id']}")

    # backups: pg_dump files in the platform bucket ---------------------------------------------
    def capture_backup(self, addon: m.Addon, backup: m.Backup, say: Say) -> m.Backup:
        """pg_dump (custom format) on the host, uploaded through a presigned URL; its size."""
        _postgres_only(addon)
        _, conn = host_of(self.fleet, addon)
        blobs = self.ctx.blobs()
        path = f"{WORK_DIR}/{addon.name}-{backup.id}.dump"
        try:
            conn.run(["install", "-d", "-m", "0700", "-o", "postgres", "-g", "postgres", "--",
                      WORK_DIR], sudo=True, check=True)  # fmt: skip
            say(f"pg_dump {addon.name}")
            conn.run(m.pg_dump_argv(addon.db_name, path), sudo=True, check=True, timeout=3600)
            url = blobs.put_url(m.backup_key(addon.name, backup.id))
            say("uploading the dump")
            conn.run(["curl", "-fsS", "--retry", "3", "-T", path, "-K", "-"], sudo=True,
                     stdin=curl_config(url), check=True, timeout=3600, label="curl upload")  # fmt: skip
        finally:
            conn.run(["rm", "-f", "--", path], sudo=True)
        return replace(backup, size=blobs.size(m.backup_key(addon.name, backup.id)))

    def restore_backup(self, backup: m.Backup, addon: m.Addon, say: Say) -> None:
        """Fetch a dump and pg_restore it into addon's database, as the add-on's own role."""
        _postgres_only(addon)
        if backup.size is None:
            raise Unsupported("a self-hosted add-on restores only pg_dump backups")
        _, conn = host_of(self.fleet, addon)
        path = f"{WORK_DIR}/{addon.name}-restore-{backup.id}.dump"
        try:
            conn.run(["install", "-d", "-m", "0700", "-o", "postgres", "-g", "postgres", "--",
                      WORK_DIR], sudo=True, check=True)  # fmt: skip
            url = self.ctx.blobs().get_url(m.backup_key(backup.addon, backup.id))
            say(f"fetching {backup.addon}/{backup.id}")
            conn.run(["curl", "-fsS", "--retry", "3", "-o", path, "-K", "-"], sudo=True,
                     stdin=curl_config(url), check=True, timeout=3600, label="curl download")  # fmt: skip
            conn.run(["chown", "postgres:postgres", "--", path], sudo=True, check=True)
            say(f"emptying {addon.name}, then pg_restore")
            empty = m.empty_database_sql(addon.db_name).encode()
            conn.run(m.psql_argv(addon.db_name), sudo=True, stdin=empty, check=True, label="psql")
            conn.run(m.pg_restore_argv(addon.db_name, path), sudo=True, check=True, timeout=3600)
        finally:
            conn.run(["rm", "-f", "--", path], sudo=True)

    def delete_backup(self, backup: m.Backup, say: Say) -> None:
        """Delete the dump, every version of it (the bucket is versioned)."""
        if self.ctx.blobs().delete_prefix(m.backup_key(backup.addon, backup.id)):
            say(f"deleted {m.backup_key(backup.addon, backup.id)}")

    def download_backup(self, backup: m.Backup, handle: BinaryIO) -> None:
        """The pg_dump file itself (pg_restore reads it anywhere)."""
        if backup.size is None:
            raise Unsupported(f"{backup.ref} is not a pg_dump file")
        blobs = self.ctx.blobs()
        blobs.s3.download_fileobj(blobs.bucket, m.backup_key(backup.addon, backup.id), handle)


def _postgres_only(addon: m.Addon) -> None:
    if addon.kind != m.POSTGRES:
        raise Unsupported(f"{addon.name} is not a Postgres add-on")
