"""The local cloud end to end: EC2 instances become real Debian hosts reachable over SSH.

Addresses: these tests use a VPC in 198.19.0.0/16 (the upper half of the local cloud's /15),
so their hosts never contest an address with the platform VPC (198.18.0.0/16) that other
tests launch into on the same shared cloud.
"""

from __future__ import annotations

import io
import random
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from provisioner.aws.session import Aws, eventually
from provisioner.localcloud import DEBIAN_SSM_PARAMETER, control, hosts_dir
from provisioner.localcloud.network import names_for
from provisioner.localcloud.system import children, mounts_under

pytestmark = pytest.mark.cloud


@dataclass
class KeyPair:
    private_pem: str
    public: str  # OpenSSH "ssh-ed25519 AAAA..."

    @property
    def pkey(self) -> paramiko.PKey:
        return paramiko.Ed25519Key.from_private_key(io.StringIO(self.private_pem))


def new_key() -> KeyPair:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return KeyPair(pem, public.decode())


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def connect(ip: str, user_key: KeyPair, host_key: KeyPair | None, timeout: float = 60):
    """SSH as admin; with host_key, only that pinned key is accepted (RejectPolicy)."""
    deadline = time.monotonic() + timeout
    while True:
        client = paramiko.SSHClient()
        if host_key is not None:
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            client.get_host_keys().add(ip, "ssh-ed25519", host_key.pkey)
        else:
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(
                ip,
                username="admin",
                pkey=user_key.pkey,
                timeout=2,
                banner_timeout=2,
                auth_timeout=5,
                look_for_keys=False,
                allow_agent=False,
            )
            return client
        except (OSError, paramiko.SSHException) as exc:
            client.close()
            if isinstance(exc, paramiko.BadHostKeyException):
                raise
            if time.monotonic() > deadline:
                if isinstance(exc, paramiko.AuthenticationException) and "EOF" not in str(exc):
                    raise  # the key was refused: expected by callers that offer a wrong key
                raise AssertionError(f"{exc!r}; the host's journal:\n{host_journal(ip)}") from exc
            time.sleep(0.2)


def host_journal(ip: str, lines: int = 80) -> str:
    """The end of the journal of the local host at ip (read from this machine): why SSH failed."""
    for host in control.status()["hosts"]:
        if host["private_ip"] == ip and host["nspawn_pid"]:
            for leader in children(int(host["nspawn_pid"])):
                argv = ["nsenter", "-t", str(leader), "-m", "-u", "-i", "-n", "-p"]
                argv += ["journalctl", "-b", "-n", str(lines), "--no-pager"]
                result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
                return result.stdout + result.stderr
    return f"(no running local host at {ip})"


def sh(client: paramiko.SSHClient, command: str, timeout: float = 60) -> tuple[int, str]:
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out = stdout.read().decode().strip()
    code = stdout.channel.recv_exit_status()
    return code, out + stderr.read().decode().strip()


def host_status(instance_id: str) -> dict[str, Any] | None:
    for host in control.status()["hosts"]:
        if host["instance_id"] == instance_id:
            return dict(host)
    return None


def no_trace(instance_id: str) -> bool:
    netns, veth = names_for(instance_id)
    root = hosts_dir() / instance_id
    return (
        not root.exists()
        and not Path(f"/run/netns/{netns}").exists()
        and not Path(f"/sys/class/net/{veth}").exists()
        and not mounts_under(root)
        and host_status(instance_id) is None
    )


@dataclass
class Net:
    aws: Aws
    subnet_id: str
    key_name: str
    key: KeyPair
    image_id: str
    launched: list[str]

    def launch(self, user_data: str, count: int = 1, subnet_id: str | None = None) -> list[dict]:
        result = self.aws.ec2.run_instances(
            ImageId=self.image_id,
            MinCount=count,
            MaxCount=count,
            SubnetId=subnet_id or self.subnet_id,
            KeyName=self.key_name,
            UserData=user_data,
        )["Instances"]
        self.launched.extend(i["InstanceId"] for i in result)
        return list(result)


@pytest.fixture(scope="module")
def net(local_cloud: Aws) -> Iterator[Net]:
    ec2 = local_cloud.ec2
    vpc = ec2.create_vpc(CidrBlock="198.19.0.0/16")["Vpc"]["VpcId"]
    third = random.randint(1, 254)  # noqa: S311 - spreads test runs, not a secret
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=f"198.19.{third}.0/24")["Subnet"]["SubnetId"]
    key = new_key()
    name = f"test-localcloud-{uuid.uuid4().hex[:8]}"
    ec2.import_key_pair(KeyName=name, PublicKeyMaterial=key.public.encode())
    image = local_cloud.ssm.get_parameter(Name=DEBIAN_SSM_PARAMETER)["Parameter"]["Value"]
    state = Net(local_cloud, subnet, name, key, image, [])
    yield state
    if state.launched:
        # As on AWS, an instance launched a moment ago may not be known to EC2's API yet.
        eventually(ec2.terminate_instances, InstanceIds=state.launched)
        wait_for(lambda: all(no_trace(i) for i in state.launched), 60, "test hosts to go")
    ec2.delete_key_pair(KeyName=name)


def cloud_config(host_key: KeyPair) -> str:
    return "\n".join(
        [
            "#cloud-config",
            "ssh_keys:",
            "  ed25519_private: |",
            *(f"    {line}" for line in host_key.private_pem.strip().splitlines()),
            f"  ed25519_public: {host_key.public}",
            "write_files:",
            "  - path: /etc/dynoform-test/written",
            "    content: from write_files",
            "    permissions: '0640'",
            "runcmd:",
            "  - [sh, -c, 'echo runcmd > /var/tmp/marker']",
            "",
        ]
    )


@dataclass
class Booted:
    instance_id: str
    ip: str
    host_key: KeyPair | None


@pytest.fixture(scope="module")
def two_hosts(net: Net) -> list[Booted]:
    """One host with #cloud-config (pinned host key), one with a #! script, launched together."""
    host_key = new_key()
    first = net.launch(cloud_config(host_key))[0]
    second = net.launch("#!/bin/sh\necho script > /var/tmp/marker\n")[0]
    return [
        Booted(first["InstanceId"], first["PrivateIpAddress"], host_key),
        Booted(second["InstanceId"], second["PrivateIpAddress"], None),
    ]


def test_debian_ami_is_published_in_ssm(local_cloud: Aws) -> None:
    image_id = local_cloud.ssm.get_parameter(Name=DEBIAN_SSM_PARAMETER)["Parameter"]["Value"]
    images = local_cloud.ec2.describe_images(ImageIds=[image_id])["Images"]
    assert images and images[0]["Name"].startswith("debian-13-amd64")


def test_both_hosts_answer_ssh_and_run_their_user_data(net: Net, two_hosts: list[Booted]) -> None:
    for host in two_hosts:
        client = connect(host.ip, net.key, host.host_key)
        try:
            assert sh(client, "systemctl is-system-running --wait") == (0, "running")
            assert sh(client, "cloud-init status --wait") == (0, "status: done")
            assert sh(client, "sudo -n id -u") == (0, "0")
            # sshd waits for logins to be permitted (no /run/nologin refusals mid-handshake).
            after = sh(client, "systemctl show -p After --value ssh.service")[1].split()
            assert "systemd-user-sessions.service" in after
            assert sh(client, "hostname")[1] == "ip-" + host.ip.replace(".", "-")
            assert sh(client, "ip -4 -o addr show eth0")[1].split()[3] == f"{host.ip}/15"
            assert sh(client, "sudo stat -c %a /var/lib/dynoform/user-data") == (0, "600")
            expected = "runcmd" if host.host_key else "script"
            assert sh(client, "cat /var/tmp/marker") == (0, expected)
            if host.host_key:
                assert sh(client, "sudo cat /etc/dynoform-test/written") == (0, "from write_files")
                keys = sh(client, "ls /etc/ssh/ | grep -c '^ssh_host_.*_key$'")[1]
                assert keys == "1"  # only the pinned key type, as cloud-init does
        finally:
            client.close()


def test_failed_logins_and_probes_do_not_lock_this_machine_out(
    net: Net, two_hosts: list[Booted]
) -> None:
    """All local traffic comes from the bridge's gateway: sshd's per-source penalties (6 failed
    logins = 30 s, 20 probes = 20 s, past the 15 s threshold) would refuse it for a while."""
    host = two_hosts[1]
    connect(host.ip, net.key, None).close()  # booted
    stranger = new_key()
    for _ in range(6):
        with pytest.raises(paramiko.AuthenticationException):
            connect(host.ip, stranger, None, timeout=0)
    for _ in range(20):
        with socket.create_connection((host.ip, 22), timeout=2) as probe:
            assert probe.recv(4) == b"SSH-"
    client = connect(host.ip, net.key, None, timeout=0)
    try:
        assert sh(client, "sudo sshd -T | grep -i '^persourcepenalties'") == (
            0,
            "persourcepenalties no",
        )
    finally:
        client.close()


def test_status_lists_the_hosts(two_hosts: list[Booted]) -> None:
    for host in two_hosts:
        found = wait_for(lambda h=host: host_status(h.instance_id), 10, "the host in status")
        assert found["private_ip"] == host.ip
        assert found["state"] == "running"
    data = control.status()
    assert data["running"] is True
    assert data["endpoint"].startswith("http://198.18.0.1:")
    assert isinstance(data["load_balancers"], list)


def test_stop_start_keeps_the_disk(net: Net, two_hosts: list[Booted]) -> None:
    host = two_hosts[0]
    client = connect(host.ip, net.key, host.host_key)
    assert sh(client, "echo kept > /home/admin/file && sync")[0] == 0
    client.close()
    net.aws.ec2.stop_instances(InstanceIds=[host.instance_id])
    netns = names_for(host.instance_id)[0]
    wait_for(lambda: not Path(f"/run/netns/{netns}").exists(), 40, "the host to power off")
    assert (hosts_dir() / host.instance_id / "upper").is_dir()
    net.aws.ec2.start_instances(InstanceIds=[host.instance_id])
    client = connect(host.ip, net.key, host.host_key)
    try:
        assert sh(client, "cat /home/admin/file") == (0, "kept")
        assert sh(client, "systemctl is-system-running --wait") == (0, "running")
        # The user-data ran once: the marker is from the first boot, not rewritten.
        assert sh(client, "cat /var/tmp/marker") == (0, "runcmd")
    finally:
        client.close()


def test_reboot_boots_again(net: Net, two_hosts: list[Booted]) -> None:
    host = two_hosts[0]
    before = wait_for(lambda: host_status(host.instance_id), 10, "status")["boots"]
    net.aws.ec2.reboot_instances(InstanceIds=[host.instance_id])
    wait_for(lambda: (host_status(host.instance_id) or {}).get("boots", 0) > before, 40, "a reboot")
    client = connect(host.ip, net.key, host.host_key)
    try:
        assert sh(client, "systemctl is-system-running --wait") == (0, "running")
    finally:
        client.close()


def test_terminate_leaves_no_trace(net: Net, two_hosts: list[Booted]) -> None:
    host = two_hosts[1]
    net.aws.ec2.terminate_instances(InstanceIds=[host.instance_id])
    wait_for(lambda: no_trace(host.instance_id), 40, "every trace of the host to go")


def test_instance_outside_the_range_is_not_realised(net: Net) -> None:
    ec2 = net.aws.ec2
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.77.1.0/24")["Subnet"]["SubnetId"]
    instance = net.launch("", subnet_id=subnet)[0]
    iid = instance["InstanceId"]

    def refused() -> dict[str, Any] | None:
        found = [r for r in control.status()["not_realised"] if r["instance_id"] == iid]
        return found[0] if found else None

    reason = wait_for(refused, 10, "the instance to be reported as not realised")["reason"]
    assert "outside 198.18.0.0/15" in reason
    assert host_status(iid) is None
