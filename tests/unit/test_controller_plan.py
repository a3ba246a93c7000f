"""The controller's decisions (plan/controller.py) and its install on a host (controlhost.py)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

from provisioner import controlhost, events, paths
from provisioner import playbook as pb
from provisioner.plan import controller as plan
from provisioner.plan.controller import HostView, Placed, Verdict
from provisioner.targets import LOCAL_TARGET


def view(host: str, state: str = "running", boot: bool = True, age: float = 60.0) -> HostView:
    return HostView(host, state, boot, age)


def test_a_host_is_lost_when_ec2_says_so_at_once() -> None:
    hosts = [view("a", "stopped"), view("b", "terminated"), view("c", "shutting-down"), view("d")]
    assert plan.judge(hosts, {}, now=100.0) == [
        Verdict("a", "stopped (EC2)"),
        Verdict("b", "terminated"),
        Verdict("c", "terminated"),
    ]


def test_a_silent_host_is_lost_only_after_the_grace_period() -> None:
    hosts = [view("a"), view("b"), view("c")]
    silent = {"a": 100.0}
    assert plan.judge(hosts, silent, now=109.9) == []
    assert plan.judge(hosts, silent, now=110.0) == [
        Verdict("a", "no answer from its sshd for 10 s")
    ]


def test_silence_condemns_one_host_at_a_time() -> None:
    hosts = [view(h) for h in "abcde"]
    silent = {"a": 100.0, "b": 100.0}
    assert plan.judge(hosts, silent, now=200.0) == [
        Verdict("a", "no answer from its sshd for 100 s")
    ]


def test_a_leader_that_hears_most_hosts_silent_suspects_itself() -> None:
    hosts = [view("a"), view("b"), view("c"), view("d", "stopped")]
    silent = {"a": 100.0, "b": 100.0}
    assert plan.suspect_self(hosts, silent)
    assert plan.judge(hosts, silent, now=200.0) == [Verdict("d", "stopped (EC2)")]
    assert not plan.suspect_self(hosts[:2] + [view("e")], {"a": 100.0})
    assert not plan.suspect_self([view("a"), view("b")], {"a": 100.0})  # one of two: the other


def test_hosts_being_bootstrapped_are_not_judged_silent_until_the_limit() -> None:
    young = view("a", boot=False, age=30.0)
    old = view("b", boot=False, age=plan.BOOTSTRAP_LIMIT + 1)
    orphan = HostView("c", "running", False, plan.ABANDONED_LIMIT + 1, by_controller=True)
    mine = HostView("d", "running", False, plan.ABANDONED_LIMIT - 1, by_controller=True)
    assert plan.judge([young, old, orphan, mine], {"a": 0.0, "b": 0.0}, now=1000.0) == [
        Verdict("b", f"not bootstrapped {round(plan.BOOTSTRAP_LIMIT + 1)} s after launch"),
        Verdict("c", f"not bootstrapped {round(plan.ABANDONED_LIMIT + 1)} s after launch"),
    ]


def test_a_host_whose_launching_controller_no_longer_leads_is_lost_at_once() -> None:
    # The leader launched it, then its own host went: nothing will finish the bootstrap, and
    # the fleet must not wait ABANDONED_LIMIT for its size back.
    orphan = HostView("a", "running", False, 5.0, by_controller=True, orphaned=True)
    pending = HostView("b", "pending", False, 1.0, by_controller=True, orphaned=True)
    mine = HostView("c", "running", False, 5.0, by_controller=True)
    done = HostView("d", "running", True, 5.0, by_controller=True, orphaned=True)
    why = "abandoned half-way: the controller that launched it no longer leads"
    assert plan.judge([orphan, pending, mine, done], {}, now=10.0) == [
        Verdict("a", why),
        Verdict("b", why),
    ]


def test_failed_status_checks_lose_a_bootstrapped_host_at_once() -> None:
    sick = HostView("a", "running", True, 60.0, impaired=True)
    booting = HostView("b", "running", False, 20.0, impaired=True)
    assert plan.judge([sick, booting], {}, now=1.0) == [Verdict("a", "EC2 status checks failed")]


def test_a_host_declared_lost_is_not_judged_again() -> None:
    lost = HostView("a", "stopped", True, 60.0, lost="stopped (EC2)")
    assert plan.judge([lost], {}, now=1.0) == []


def test_silence_keeps_its_first_moment_and_ends_when_the_host_answers() -> None:
    first = plan.track_silence({}, {"a": False, "b": True}, now=10.0)
    assert first == {"a": 10.0}
    later = plan.track_silence(first, {"a": False, "b": False}, now=12.0)
    assert later == {"a": 10.0, "b": 12.0}
    assert plan.track_silence(later, {"a": True, "b": False}, now=13.0) == {"b": 12.0}


def test_shortfall_counts_alive_hosts_and_launches_in_flight() -> None:
    hosts = [
        view("a"),
        view("b", "pending"),
        HostView("c", "stopped", True, 9.0, lost="stopped (EC2)"),
        HostView("d", "running", True, 9.0, lost="silent"),
    ]
    assert plan.shortfall(None, hosts) == 0  # nothing declared: nothing launched
    assert plan.shortfall(2, hosts) == 0
    assert plan.shortfall(4, hosts) == 2
    assert plan.shortfall(4, hosts, launching=2) == 0
    assert plan.shortfall(50, hosts) == plan.MAX_LAUNCH
    assert plan.shortfall(1, hosts) == 0  # never negative: surplus hosts are not culled


def test_crash_thresholds() -> None:
    assert [plan.crash_threshold(n) for n in (0, 2, 3, 9, 10, 31, 5000)] == [
        0, 0, 3, 3, 10, 30, 1000,
    ]  # fmt: skip


def test_placement_keeps_what_unseen_hosts_ran_until_it_runs_elsewhere() -> None:
    before = {
        "a": [Placed("shop", "web.1", 3)],
        "b": [Placed("shop", "web.2", 3), Placed("blog", "web.1", 7)],
    }
    seen = {"a": [Placed("shop", "web.1", 3), Placed("shop", "web.2", 3)]}
    after = plan.next_placement(before, seen, unseen={"b"})
    assert after == {
        "a": [Placed("shop", "web.1", 3), Placed("shop", "web.2", 3)],
        "b": [Placed("blog", "web.1", 7)],
    }
    assert plan.stranded(after, {"b"}, "blog") == [("b", Placed("blog", "web.1", 7))]
    assert plan.stranded(after, {"b"}, "shop") == []
    assert plan.moved_from(before, "shop", "web.2") == "b"
    assert plan.moved_from(before, "shop", "web.9") is None
    assert plan.placement_from_dict(plan.placement_to_dict(after)) == after
    gone = plan.next_placement(after, {"a": []}, unseen={"b", "c"})
    assert gone == {"a": [], "b": [Placed("blog", "web.1", 7)]}


# the install on a host ------------------------------------------------------------------------
def test_the_code_bundle_is_deterministic_and_holds_the_controller() -> None:
    first = controlhost.code_bundle()
    controlhost.code_bundle.cache_clear()
    assert controlhost.code_bundle() == first
    assert gzip.decompress(first)  # a gzip stream
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        names = tar.getnames()
        infos = tar.getmembers()
    assert "provisioner/controld.py" in names
    assert "provisioner/ops/controller.py" in names
    assert "templates/host/dynoform-controller.service.j2" in names
    assert "playbooks/runner.toml" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert names == sorted(names)
    assert {(i.mtime, i.uid, i.gid, i.mode) for i in infos} == {(0, 0, 0, 0o644)}


def test_host_config_names_the_target_host_and_key_and_no_credentials() -> None:
    doc = json.loads(controlhost.host_config(LOCAL_TARGET, "http://198.18.0.1:5000", "i-1"))
    assert doc == {
        "host": "i-1",
        "ssh_key": "/etc/dynoform/controller/ssh-key",
        "target": {
            "domain": None,
            "endpoint_url": "http://198.18.0.1:5000",
            "kind": "local",
            "name": "local",
            "platform": "dynoform",
            "profile": None,
            "region": "us-east-1",
            "vpc_cidr": None,
        },
    }


def test_install_steps_restart_the_controller_on_any_change() -> None:
    templates = pb.template_env(paths.resource_dir("templates"))
    steps = controlhost.steps(b"CODE", b"{}", b"KEY", templates)
    assert [s.name for s in steps] == [
        "directory /opt/dynoform",
        "directory /opt/dynoform/controller",
        "directory /etc/dynoform/controller",
        "file /etc/dynoform/controller/config.json",
        "file /etc/dynoform/controller/ssh-key",
        "file /opt/dynoform/controller/code.tar.gz",
        "file /etc/systemd/system/dynoform-controller.service",
        "unit dynoform-controller.service active",
    ]
    files = [s for s in steps if isinstance(s, pb.File)]
    assert [oct(f.mode) for f in files] == ["0o600", "0o600", "0o600", "0o644"]
    assert all(f.after[-1][-1] == controlhost.UNIT for f in files)  # each restarts it
    unit = files[-1].content.decode()
    assert "ExecStart=/usr/bin/python3 -m provisioner.controld " + controlhost.CONFIG in unit
    assert f"Environment=PYTHONPATH={controlhost.CODE_DIR}" in unit


def test_event_keys_sort_by_time() -> None:
    keys = [events.event_key("events/", t) for t in (9.5, 10.0, 1700000000.25, 1800000000.0)]
    assert keys == sorted(keys)
    assert keys[2].startswith("events/1700000000.250000-")


def test_the_leader_looks_at_what_runs_on_its_first_loop_then_every_few_seconds() -> None:
    hosts = ["i-1", "i-2"]
    assert plan.observation_due(None, 100.0, hosts, [])
    assert not plan.observation_due(100.0, 102.0, hosts, hosts, every=6.0)
    assert not plan.observation_due(100.0, 105.9, list(reversed(hosts)), hosts, every=6.0)
    assert plan.observation_due(100.0, 106.0, hosts, hosts, every=6.0)


def test_the_leader_looks_at_once_when_the_hosts_that_answer_change() -> None:
    assert plan.observation_due(100.0, 102.0, ["i-1"], ["i-1", "i-2"])  # i-2 went silent
    assert plan.observation_due(100.0, 102.0, ["i-1", "i-3"], ["i-1"])  # i-3 is new
