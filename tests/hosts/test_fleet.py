"""The fleet on the local cloud, through the real CLI: add, check, drift, pinned keys, remove.

Uses its own platform (own VPC range inside 198.18.0.0/16's neighbourhood, own config dir and
key) on the shared local cloud, and destroys it at the end, even on failure.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provisioner.aws.session import Aws
from provisioner.aws.state import Documents, bucket_name
from provisioner.fleet import pin_key
from provisioner.remote.hostkeys import generate_ed25519
from provisioner.targets import Target

pytestmark = pytest.mark.cloud

TARGET = "fleettest"
CIDR = "198.18.128.0/18"  # apart from the default platform's 198.18.0.0/20 subnets
JOURNALD = "/etc/systemd/journald.conf.d/60-dynoform.conf"


class Cli:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "provisioner", "-t", TARGET, *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )

    def json(self, *args: str) -> object:
        result = self("--json", *args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def fleet(local_cloud: Aws, tmp_path_factory: pytest.TempPathFactory):
    platform = f"ft{secrets.token_hex(3)}"
    config = tmp_path_factory.mktemp("fleet-config")
    (config / "dynoform").mkdir()
    (config / "dynoform" / "targets.toml").write_text(
        f'[targets.{TARGET}]\nkind = "local"\nplatform = "{platform}"\nvpc_cidr = "{CIDR}"\n'
    )
    env = {**os.environ, "XDG_CONFIG_HOME": str(config), "COLUMNS": "200"}
    cli = Cli(env)
    aws = Aws(Target(TARGET, kind="local", platform=platform, vpc_cidr=CIDR))
    try:
        yield cli, aws, platform
    finally:
        cli("platform:destroy", "--confirm", platform, "--delete-state", timeout=900)


@pytest.fixture(scope="module")
def three(fleet):
    cli, _aws, _platform = fleet
    started = time.monotonic()
    result = cli("hosts:add", "--count", "3")
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    print(f"hosts:add --count 3 took {seconds:.1f} s")
    return result


def test_add_three_hosts_bootstrapped_in_parallel(fleet, three):
    cli, _aws, _platform = fleet
    ids = three.stdout.split()
    assert len(ids) == 3
    lines = three.stderr.splitlines()
    first_ready = next(i for i, line in enumerate(lines) if ": ready in" in line)
    booting = [i for i, line in enumerate(lines) if ": booting" in line]
    assert len(booting) == 3 and max(booting) < first_ready  # all launched before any finished
    assert "3 of 3 hosts added" in three.stderr
    rows = cli.json("hosts")
    assert sorted(r["id"] for r in rows) == sorted(ids)
    for row in rows:
        assert row["state"] == "running" and row["bootstrapped"] is True and row["dynos"] == 0
        assert row["role"] == "runner"
        assert row["private_ip"].startswith("198.18.1")
    assert len({r["zone"] for r in rows}) == 3


def test_runners_carry_the_controller_profile(fleet, three):
    """The local cloud runs the AWS path: hosts:add made the platform with the controller's
    role and instance profile (in moto's IAM) and launched each runner with the profile."""
    cli, aws, platform = fleet
    profile = f"dynoform-{platform}-controller"
    assert cli.json("platform:info")["instance_profile"] == profile
    held = aws.client("iam").get_instance_profile(InstanceProfileName=profile)
    assert [r["RoleName"] for r in held["InstanceProfile"]["Roles"]] == [profile]
    ids = three.stdout.split()
    reservations = aws.ec2.describe_instances(InstanceIds=ids)["Reservations"]
    arns = {i["IamInstanceProfile"]["Arn"] for r in reservations for i in r["Instances"]}
    assert arns == {held["InstanceProfile"]["Arn"]}


def test_second_run_reports_zero_changes(fleet, three):
    cli, _aws, _platform = fleet
    report = cli.json("hosts:bootstrap", "--check")
    assert len(report) == 3
    assert all(r["ok"] and r["changes"] == [] for r in report)


def test_changed_file_is_exactly_the_step_reported(fleet, three):
    cli, _aws, _platform = fleet
    host = three.stdout.split()[0]
    edit = cli("hosts:exec", host, "--", "sudo", "sh", "-c", f"echo '# edited' >> {JOURNALD}")
    assert edit.returncode == 0, edit.stderr
    report = {r["id"]: r for r in cli.json("hosts:bootstrap", "--check")}
    assert [c["step"] for c in report[host]["changes"]] == [f"file {JOURNALD}"]
    assert all(r["changes"] == [] for i, r in report.items() if i != host)
    still = cli("hosts:exec", host, "--", "tail", "-n1", JOURNALD)
    assert still.stdout == "# edited\n"  # --check changed nothing
    fixed = cli.json("hosts:bootstrap", host)
    assert [c["step"] for c in fixed[0]["changes"]] == [f"file {JOURNALD}"]
    assert cli.json("hosts:bootstrap", "--check", host)[0]["changes"] == []


def test_dynos_are_kept_off_the_metadata_service(fleet, three):
    """The runner role's nftables table: loaded, enabled for boots, and it refuses a dyno uid
    at once while another user's packets to the metadata address still leave the host."""
    cli, _aws, _platform = fleet
    host = three.stdout.split()[0]
    table = cli(
        "hosts:exec", host, "--", "sudo", "nft", "list", "table", "inet", "dynoform_metadata"
    )
    assert table.returncode == 0, table.stderr
    assert "meta skuid 40000-49999 ip daddr 169.254.169.254 reject" in table.stdout
    enabled = cli("hosts:exec", host, "--", "systemctl", "is-enabled", "dynoform-metadata-block")
    assert enabled.stdout.strip() == "enabled"
    probe = "curl -s -o /dev/null --connect-timeout 2 http://169.254.169.254/; echo $?"
    dyno = cli("hosts:exec", host, "--", "sudo", "setpriv", "--reuid=40123", "--regid=40123",
               "--clear-groups", "sh", "-c", probe)  # fmt: skip
    other = cli("hosts:exec", host, "--", "sudo", "setpriv", "--reuid=65534", "--regid=65534",
                "--clear-groups", "sh", "-c", probe)  # fmt: skip
    assert dyno.stdout.strip() == "7", dyno  # refused by the table: could not connect
    # Another user's packets leave the host: answered (this machine has a metadata service of
    # its own behind the local cloud's NAT) or timed out (28), but not refused.
    assert other.stdout.strip() in ("0", "28"), other


def test_a_different_host_key_is_refused_and_nothing_runs(fleet, three):
    cli, aws, platform = fleet
    host = three.stdout.split()[1]
    docs = Documents(aws.s3, bucket_name(platform, aws.account_id()))
    original = docs.get(pin_key(host))
    assert original is not None
    forged = dict(original.data, host_keys=[generate_ed25519().public])
    docs.put(pin_key(host), forged)
    marker = f"/tmp/dynoform-marker-{secrets.token_hex(4)}"
    try:
        result = cli("hosts:exec", host, "--", "touch", marker)
    finally:
        docs.put(pin_key(host), original.data)
    assert result.returncode == 1
    assert f"host {host}" in result.stderr
    assert "presented host key SHA256:" in result.stderr
    assert original.data["fingerprints"][0] in result.stderr.replace("\n", "")
    assert "nothing was run" in result.stderr.replace("\n", " ")
    assert cli("hosts:exec", host, "--", "test", "-e", marker).returncode == 1


def test_remove_refuses_while_a_dyno_runs(fleet, three):
    cli, _aws, _platform = fleet
    host = three.stdout.split()[2]
    start = cli(
        "hosts:exec", host, "--", "sudo", "systemd-run", "--unit", "dyno-probe",
        "--slice", "dynoform.slice", "sleep", "300",
    )  # fmt: skip
    assert start.returncode == 0, start.stderr
    refused = cli("hosts:remove", host, "--confirm", host)
    assert refused.returncode == 1 and "dyno-probe.service" in refused.stderr
    assert cli("hosts:exec", host, "--", "sudo", "systemctl", "stop", "dyno-probe").returncode == 0
    removed = cli("hosts:remove", host, "--confirm", host)
    assert removed.returncode == 0, removed.stderr
    assert host not in [r["id"] for r in cli.json("hosts")]


def test_platform_info_and_init_are_idempotent(fleet, three):
    cli, _aws, platform = fleet
    info = cli.json("platform:info")
    assert info["name"] == platform and info["cidr"] == CIDR and len(info["subnet_ids"]) == 3
    again = cli("platform:init")
    assert again.returncode == 0 and "up to date" in again.stderr
    assert Path(info["key_path"]).stat().st_mode & 0o777 == 0o600
