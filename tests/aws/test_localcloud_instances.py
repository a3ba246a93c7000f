"""The local cloud's daemon describes EC2's instances again only after a call changed them
(or every few seconds): an idle cloud does not serialise every instance every 0.3 s."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from provisioner.localcloud import daemon


@pytest.fixture
def hooked(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.ec2.models.instances import InstanceBackend

    for name in daemon._CHANGING_CALLS:  # the hooks are undone after the test
        monkeypatch.setattr(InstanceBackend, name, getattr(InstanceBackend, name))
    daemon._hook_instance_changes()


def _image(ec2: Any) -> str:
    return ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]


def test_every_call_that_changes_instances_is_seen(aws, hooked) -> None:
    ec2 = aws.client("ec2")
    daemon.ec2_changed.clear()
    ec2.describe_instances()
    assert not daemon.ec2_changed.is_set()  # a look changes nothing
    run = ec2.run_instances(ImageId=_image(ec2), MinCount=1, MaxCount=1)
    assert daemon.ec2_changed.is_set()
    iid = run["Instances"][0]["InstanceId"]
    for call in (ec2.stop_instances, ec2.start_instances, ec2.reboot_instances):
        daemon.ec2_changed.clear()
        call(InstanceIds=[iid])
        assert daemon.ec2_changed.is_set(), call
    daemon.ec2_changed.clear()
    ec2.terminate_instances(InstanceIds=[iid])
    assert daemon.ec2_changed.is_set()


def test_the_instances_are_described_again_only_after_a_change(monkeypatch) -> None:
    looks: list[float] = []
    cloud = SimpleNamespace(instances={}, described_at=-daemon.EC2_RESCAN_SECONDS)
    cloud.describe = lambda ec2: looks.append(now[0]) or []
    now = [1000.0]
    step = 0.25  # exact in binary: the times compare equal
    monkeypatch.setattr(daemon.time, "monotonic", lambda: now[0])
    daemon.ec2_changed.clear()

    def current() -> None:
        daemon.Cloud.current(cloud, None)  # type: ignore[arg-type]

    current()  # the first loop
    now[0] += step
    current()  # nothing changed
    daemon.ec2_changed.set()
    now[0] += step
    current()  # a call changed them
    now[0] += daemon.EC2_RESCAN_SECONDS
    current()  # a change no hook saw: at most this late
    assert looks == [1000.0, 1000.5, 1000.5 + daemon.EC2_RESCAN_SECONDS]
