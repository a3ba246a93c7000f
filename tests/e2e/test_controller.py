"""The controller on the fleet heals it, on the local cloud, as a user would see it: a host's
machine killed outright, the leader's own host killed, an instance terminated through the API,
a host that stops answering, a dyno stopped by hand. Each time the app's web dynos serve again
on live hosts, the router holds exactly them, and the fleet is back at its declared size.

Runs on the `controlled` platform (conftest): killing hosts never touches the suite's shared one.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from e2e_support import EXAMPLES, Controlled, Load, Url, wait_for

from provisioner import paths
from provisioner.aws.router import target_group_name
from provisioner.localcloud.network import names_for
from provisioner.localcloud.system import children

pytestmark = pytest.mark.cloud


@dataclass
class World(Controlled):
    """The controlled platform with one app of web=2."""

    app: str = ""
    url: Url = Url("", 0)

    def web(self) -> list[dict[str, Any]]:
        return [d for d in self.json("ps", "-a", self.app) if d["type"] == "web"]


@pytest.fixture(scope="module")
def world(controlled: Controlled) -> Iterator[World]:
    app = f"ctl-{secrets.token_hex(3)}"
    probe = World(controlled.env, controlled.aws, controlled.platform, app)
    probe.cli("apps:create", app, "--no-remote")
    try:
        probe.cli("deploy", "-a", app, str(EXAMPLES / "python"))
        probe.cli("ps:scale", "web=2", "-a", app)
        short_drain(probe)
        web_url = urlsplit(str(probe.json("apps:info", "-a", app)["web_url"]))
        probe.url = Url(str(web_url.hostname), int(web_url.port or 443), web_url.scheme)
        yield probe
    finally:
        probe.cli("apps:destroy", "-a", app, "--confirm", app, check=False)


def short_drain(world: World) -> None:
    """A 2-s deregistration delay (an ELBv2 attribute a user may set too): a dyno moved to the
    replacement host has its old one drained quickly, so the records settle sooner."""
    elbv2 = world.aws.elbv2
    name = target_group_name(world.platform, world.app)
    arn = elbv2.describe_target_groups(Names=[name])["TargetGroups"][0]["TargetGroupArn"]
    elbv2.modify_target_group_attributes(
        TargetGroupArn=arn,
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "2"}],
    )


def leader_host(world: World) -> str:
    status = wait_for("a leader", lambda: world.json("controller:status")["leader"], 30)
    return str(status).split(":")[0]


def serving_on_live_hosts(world: World, gone: str) -> bool:
    web = world.web()
    up = [d for d in web if d["state"] == "up" and d["host"] != gone]
    return len(up) == 2 and len(web) == 2


def records_are_true(world: World) -> bool:
    """The router holds exactly the web dynos that run (a dyno moved to the replacement host
    has its old one draining a while: wait for that), and the fleet is at its size."""
    web = world.web()
    hosts = {h["id"]: h["private_ip"] for h in world.runners()}
    wanted = {f"{hosts.get(d['host'])}:{d['port']}" for d in web}
    assert world.json("platform:info")["declared_hosts"] == 2
    return router_targets(world) == wanted and len(web) == 2


def router_targets(world: World) -> set[str]:
    elbv2 = world.aws.elbv2
    name = target_group_name(world.platform, world.app)
    arn = elbv2.describe_target_groups(Names=[name])["TargetGroups"][0]["TargetGroupArn"]
    health = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    return {f"{d['Target']['Id']}:{d['Target']['Port']}" for d in health}


def fleet_back(world: World, gone: str) -> bool:
    runners = world.runners()
    ready = [h for h in runners if h["state"] == "running" and h["bootstrapped"]]
    return len(ready) == 2 and gone not in [h["id"] for h in runners]


def kill_machine(host: str) -> None:
    """Pull the plug on this test's own host (no API call, no shutdown): SIGKILL to the
    container's PID 1, the child of the nspawn the local cloud recorded, ends every process of
    the machine at once."""
    nspawn = int((paths.local_state_dir() / "hosts" / host / "nspawn.pid").read_text())
    for pid in children(nspawn):
        os.kill(pid, signal.SIGKILL)


def controller_lines(world: World) -> str:
    return world.cli("logs", "-a", world.app, "--source", "dynoform", "-n", "200").stdout


def say_what_the_controller_saw(world: World) -> None:
    """On a failure, what a user would look at: the hosts and the controller's own words."""
    print("runners:", [(h["id"], h["state"], h["bootstrapped"]) for h in world.runners()])
    print(world.cli("controller:status", "-n", "40", check=False).stdout)
    print(world.cli("hosts", check=False).stdout)


def heal_after(world: World, gone: str, router_too: bool = False) -> None:
    """Web dynos back on live hosts, the fleet back at its size (and, when asked, the router
    holding exactly the web dynos: a dyno moved to the replacement host drains a while)."""
    try:
        _heal_after(world, gone, router_too)
    except AssertionError:
        say_what_the_controller_saw(world)
        raise


def _heal_after(world: World, gone: str, router_too: bool) -> None:
    started = time.monotonic()
    wait_for("web=2 up on live hosts", lambda: serving_on_live_hosts(world, gone), 45)
    print(f"web=2 up on live hosts after {time.monotonic() - started:.1f} s")
    wait_for("the fleet back at 2 runners", lambda: fleet_back(world, gone), 180, 3)
    print(f"fleet back at its size after {time.monotonic() - started:.1f} s")
    if router_too:
        wait_for("the router to hold exactly the web dynos", lambda: records_are_true(world), 90)
        print(f"records settled after {time.monotonic() - started:.1f} s")


def test_the_controller_runs_on_every_runner_and_one_leads(world: World) -> None:
    leader = leader_host(world)
    assert leader in [h["id"] for h in world.runners()]
    status = world.json("controller:status")
    assert status["paused"] is False and status["declared_hosts"] == 2
    for host in world.runners():
        active = world.cli("hosts:exec", host["id"], "--", "systemctl", "is-active",
                           "dynoform-controller")  # fmt: skip
        assert active.stdout.strip() == "active"


def test_a_dyno_stopped_by_hand_is_restored(world: World) -> None:
    dyno = world.web()[0]
    unit = f"dyno-{world.app}.{dyno['release']}.{dyno['name']}.service"
    world.cli("hosts:exec", dyno["host"], "--", "sudo", "systemctl", "stop", unit)
    wait_for("the stopped dyno up again", lambda: serving_on_live_hosts(world, ""), 30)
    assert f"{dyno['name']} restored (stopped) on host {dyno['host']}" in controller_lines(world)


def test_a_dyno_unit_edited_by_hand_is_put_back(world: World) -> None:
    dyno = world.web()[0]
    unit = f"dyno-{world.app}.{dyno['release']}.{dyno['name']}.service"
    dropins = f"/etc/systemd/system/{unit}.d"
    edit = (
        f"mkdir -p {dropins} && printf '[Service]\\nEnvironment=DYNO=by-hand\\n' "
        f"> {dropins}/50-by-hand.conf && systemctl daemon-reload && systemctl restart {unit}"
    )
    world.cli("hosts:exec", dyno["host"], "--", "sudo", "sh", "-c", edit)
    wanted = f"{dyno['name']} restored (edited) on host {dyno['host']}"
    wait_for("the edited unit put back", lambda: wanted in controller_lines(world), 30)
    assert world.cli(
        "hosts:exec", dyno["host"], "--", "test", "-e", dropins, check=False
    ).returncode
    wait_for("both web dynos up", lambda: serving_on_live_hosts(world, ""), 30)


def test_a_killed_host_machine_is_replaced_and_its_dynos_move(world: World) -> None:
    leader = leader_host(world)
    victim = next(d["host"] for d in world.web() if d["host"] != leader)
    with Load(world.url, rate=10) as load:
        kill_machine(victim)
        heal_after(world, victim, router_too=True)
    assert load.ok > 0
    assert len(load.failures) <= max(2, load.ok // 50), load.failures[:5]
    lines = controller_lines(world)
    assert f"moved from host {victim}" in lines
    status = world.json("controller:status", "-n", "50")
    messages = [e["message"] for e in status["recent"]]
    assert any(m.startswith(f"host {victim} is lost") for m in messages), messages
    assert any(m.startswith("launching 1 host(s)") for m in messages), messages


def test_the_leaders_own_host_killed_another_takes_over(world: World) -> None:
    leader = leader_host(world)
    kill_machine(leader)
    new = wait_for("a new leader", lambda: (h := leader_host(world)) != leader and h, 40)
    assert new != leader
    heal_after(world, leader)


def test_an_instance_terminated_by_the_api_is_replaced(world: World) -> None:
    # The leader's own host: it sees itself terminated and launches a replacement in its last
    # seconds; the next leader must not wait for a bootstrap nobody will finish (CI, 12-02).
    victim = leader_host(world)
    world.aws.ec2.terminate_instances(InstanceIds=[victim])
    heal_after(world, victim, router_too=True)


def test_a_host_that_stops_answering_shows_lost_dynos_then_is_replaced(world: World) -> None:
    world.cli("controller:pause")
    victim = world.web()[0]["host"]
    veth = names_for(victim)[1]
    try:
        subprocess.run(["ip", "link", "set", veth, "down"], check=True)
        lost = wait_for(
            "ps to show the silent host's dyno as lost",
            lambda: [d for d in world.web() if d["state"] == "lost"],
            60,
        )
        assert lost[0]["host"] == victim
    finally:
        world.cli("controller:resume")
    heal_after(world, victim)
    reasons = [e["message"] for e in world.json("controller:status", "-n", "50")["recent"]]
    assert any(f"host {victim} is lost: no answer" in m for m in reasons), reasons


def test_hosts_add_and_remove_change_the_declared_size(world: World) -> None:
    world.cli("hosts:add", "--count", "1")
    assert world.json("platform:info")["declared_hosts"] == 3
    empty = wait_for(
        "a runner without dynos",
        lambda: next((h["id"] for h in world.runners() if h["dynos"] == 0), None),
        30,
    )
    world.cli("hosts:remove", empty, "--confirm", empty)
    assert world.json("platform:info")["declared_hosts"] == 2
    time.sleep(6)  # a few controller loops: nothing is launched for the removed host
    assert len([h for h in world.runners() if h["state"] in ("pending", "running")]) == 2
