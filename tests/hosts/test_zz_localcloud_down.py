"""`local down` leaves the machine as it found it; up and down work again after it.

Named to sort last: it takes the shared local cloud down (and brings it back up). When other
tests' hosts or load balancers are still in the cloud (someone else is using it), it skips
rather than pull the cloud from under them; DYNOFORM_FORCE_DOWN_TEST=1 runs it anyway.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest

from provisioner.aws.session import Aws
from provisioner.localcloud import control, hosts_dir, state_dir
from provisioner.localcloud.network import SAVED_SYSCTLS, SYSCTL, SYSCTLS
from provisioner.localcloud.system import alive
from provisioner.targets import LOCAL_TARGET

sys.path.insert(0, str(Path(__file__).parent))
from test_localcloud import connect, new_key  # noqa: E402

pytestmark = pytest.mark.cloud

CLEAN = {"netns": [], "veths": [], "bridge": [], "mounts": [], "rules": [], "processes": []}


def launch_one(aws: Aws) -> tuple[str, str]:
    ec2 = aws.ec2
    vpc = ec2.create_vpc(CidrBlock="198.19.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="198.19.0.0/24")["Subnet"]["SubnetId"]
    key = new_key()
    name = f"test-down-{uuid.uuid4().hex[:8]}"
    ec2.import_key_pair(KeyName=name, PublicKeyMaterial=key.public.encode())
    image = aws.ssm.get_parameter(Name="/aws/service/debian/release/13/latest/amd64")
    instance = ec2.run_instances(
        ImageId=image["Parameter"]["Value"],
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet,
        KeyName=name,
    )["Instances"][0]
    connect(instance["PrivateIpAddress"], key, None).close()
    return instance["InstanceId"], instance["PrivateIpAddress"]


def test_down_leaves_the_machine_clean_and_up_down_work_again(local_cloud: Aws) -> None:
    status = control.status()
    in_use = len(status["hosts"]) + len(status["load_balancers"])
    if in_use and not os.environ.get("DYNOFORM_FORCE_DOWN_TEST"):
        pytest.skip(f"the shared local cloud is in use ({in_use} hosts/load balancers)")
    saved = state_dir() / SAVED_SYSCTLS
    assert saved.exists()  # the machine's settings from before `up`
    before_up = json.loads(saved.read_text())
    launch_one(local_cloud)
    daemon = control.daemon_pid()
    assert daemon is not None

    control.down()
    assert control.leftovers() == CLEAN
    assert not alive(daemon)
    assert not hosts_dir().exists() or not any(hosts_dir().iterdir())
    assert {key: int((SYSCTL / key).read_text()) for key in SYSCTLS} == before_up

    for _ in range(2):  # a second up and down work too
        control.up()
        fresh = Aws(LOCAL_TARGET)
        assert fresh.account_id() == "123456789012"
        assert fresh.ec2.describe_instances()["Reservations"] == []  # the cloud was in memory
        control.down()
        assert control.leftovers() == CLEAN
    control.up()  # leave the shared cloud as the session found it: up


def test_up_after_kill_9_cleans_what_the_dead_daemon_left(local_cloud: Aws) -> None:
    status = control.status()
    in_use = len(status["hosts"]) + len(status["load_balancers"])
    if in_use and not os.environ.get("DYNOFORM_FORCE_DOWN_TEST"):
        pytest.skip(f"the shared local cloud is in use ({in_use} hosts/load balancers)")
    control.up()
    instance_id, _ = launch_one(Aws(LOCAL_TARGET))
    host = next(h for h in control.status()["hosts"] if h["instance_id"] == instance_id)
    nspawn = int(host["nspawn_pid"])
    daemon = control.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)  # the daemon this session started (by control.up)
    wait_until(lambda: not alive(daemon), 10)
    left = control.leftovers()
    assert left["netns"] and left["mounts"] and alive(nspawn)  # orphans of the dead daemon

    assert control.up()["started"] is True
    assert not alive(nspawn)
    left = control.leftovers()
    assert (left["netns"], left["veths"], left["mounts"], left["processes"]) == ([], [], [], [])
    assert left["bridge"] == ["dfbr0"] and len(left["rules"]) == 3  # the new daemon's
    assert Aws(LOCAL_TARGET).ec2.describe_instances()["Reservations"] == []


def wait_until(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
