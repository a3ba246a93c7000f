"""Rollout plans, unit names and the per-host port allocator."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.errors import DynoformError
from provisioner.model.formation import ProcessFormation
from provisioner.plan.placement import DynoRef
from provisioner.plan.ports import (
    PortCheck,
    allocate_ports,
    assign_ports,
    parse_port_checks,
)
from provisioner.plan.rollout import plan_converge, releases_to_prune
from provisioner.plan.units import (
    DynoInstance,
    app_user,
    create_app_user_argv,
    dyno_facts_argv,
    ensure_app_user_argv,
    env_file,
    journal_tail_argv,
    parse_dyno_facts,
    parse_unit_name,
    release_dir,
    unit_name,
)

APP = "shop"
FORMATION = {"web": ProcessFormation(2), "worker": ProcessFormation(1)}
PLACEMENT = {
    DynoRef(APP, "web", 1): "h1",
    DynoRef(APP, "web", 2): "h2",
    DynoRef(APP, "worker", 1): "h2",
}
RUNNING_V3 = [
    DynoInstance(APP, 3, "web.1", "h1", 20000),
    DynoInstance(APP, 3, "web.2", "h2", 20000),
    DynoInstance(APP, 3, "worker.1", "h2"),
]


def kinds(plan) -> list[tuple[int, str, str, int, int | None]]:
    return [(a.step, a.kind, a.dyno, a.release, a.port) for a in plan.actions]


def test_unit_names_round_trip_and_stay_unambiguous() -> None:
    assert unit_name("my-app", 3, "web.1") == "dyno-my-app.v3.web.1.service"
    assert unit_name("my-app", 3, "web_x.12", gen=2) == "dyno-my-app.v3-2.web_x.12.service"
    parsed = parse_unit_name("dyno-my-app.v3-2.web_x.12.service", "h1", 20001)
    assert parsed == DynoInstance("my-app", 3, "web_x.12", "h1", 20001, 2)
    assert parsed.unit == "dyno-my-app.v3-2.web_x.12.service"
    assert parse_unit_name("ssh.service") is None
    with pytest.raises(DynoformError):
        unit_name("shop", 0, "web.1")


def test_paths_and_the_per_app_user() -> None:
    assert release_dir(APP, 4) == "/srv/dynoform/apps/shop/releases/v4"
    assert env_file(APP, 4) == "/srv/dynoform/apps/shop/env/v4.json"
    assert app_user(APP) == "dyno-shop"
    long = app_user("a" * 30)
    argv = create_app_user_argv(APP)
    assert argv[0] == "useradd" and argv[-1] == "dyno-shop" and "SYS_UID_MIN=40000" in argv
    assert len(long) <= 31 and long.startswith("dyno-aaaa") and long != app_user("a" * 29 + "b")


def test_ports_lowest_free_first_and_existing_keep_theirs() -> None:
    assert allocate_ports([20000, 20002], 3) == [20001, 20003, 20004]
    got = assign_ports({"a": 20005}, ["a", "b", "c"], taken=[20000])
    assert got == {"a": 20005, "b": 20001, "c": 20002}
    with pytest.raises(DynoformError, match="no free dyno ports on host h1: 2 needed, 1 free"):
        allocate_ports([20000], 2, 20000, 20001, host="h1")


def test_first_deploy_starts_everything_with_preboot_order() -> None:
    plan = plan_converge(APP, 1, FORMATION, PLACEMENT, [])
    assert kinds(plan) == [
        (1, "boot", "web.1", 1, 20000),  # started, and answering on its port
        (1, "boot", "web.2", 1, 20000),
        (2, "register", "web.1", 1, 20000),  # only once the port is the dyno's own
        (2, "register", "web.2", 1, 20000),
        (3, "wait_healthy", "web.1", 1, 20000),
        (3, "wait_healthy", "web.2", 1, 20000),
        (5, "start", "worker.1", 1, None),
        (6, "wait_running", "worker.1", 1, None),
    ]
    assert plan.actions[0].timeout_s == 60.0
    assert plan.booting() == plan.actions[:2]
    assert [d.name for d in plan.started] == ["web.1", "web.2", "worker.1"]
    assert plan.commit_step is None and plan.split_at_commit() == (plan.steps(), [])
    assert [(a.step, a.kind, a.dyno) for a in plan.on_failure] == [
        (1, "deregister", "web.1"),
        (1, "deregister", "web.2"),
        (2, "stop", "web.1"),
        (2, "stop", "web.2"),
        (3, "stop", "worker.1"),  # a crash-looping worker does not outlive a failed rollout
    ]


def test_deploy_boots_new_web_next_to_old_then_retires_old_and_rolls_workers() -> None:
    plan = plan_converge(APP, 4, FORMATION, PLACEMENT, RUNNING_V3, {"h1": [20001]})
    assert kinds(plan) == [
        (1, "boot", "web.1", 4, 20002),  # 20000 is v3's web.1, 20001 another app's
        (1, "boot", "web.2", 4, 20001),
        (2, "register", "web.1", 4, 20002),
        (2, "register", "web.2", 4, 20001),
        (3, "wait_healthy", "web.1", 4, 20002),
        (3, "wait_healthy", "web.2", 4, 20001),
        (4, "stop", "worker.1", 3, None),
        (5, "start", "worker.1", 4, None),
        (6, "wait_running", "worker.1", 4, None),
        (7, "deregister", "web.1", 3, 20000),  # old web retires last: commit_step
        (7, "deregister", "web.2", 3, 20000),
        (8, "drain", "web.1", 3, 20000),
        (8, "drain", "web.2", 3, 20000),
        (9, "stop", "web.1", 3, 20000),
        (9, "stop", "web.2", 3, 20000),
    ]
    assert plan.actions[0].unit == "dyno-shop.v4.web.1.service"
    assert plan.commit_step == 7
    undoable, retiring = plan.split_at_commit()
    assert [g[0].step for g in undoable] == [1, 2, 3, 4, 5, 6]
    assert [g[0].step for g in retiring] == [7, 8, 9]
    assert [(a.step, a.kind, a.dyno, a.release) for a in plan.on_failure] == [
        (1, "deregister", "web.1", 4),
        (1, "deregister", "web.2", 4),
        (2, "stop", "web.1", 4),
        (2, "stop", "web.2", 4),
        (3, "stop", "worker.1", 4),
        (4, "start", "worker.1", 3),  # the old worker was stopped for the new one
    ]
    assert [d.release for d in plan.final] == [4, 4, 4]
    assert len(plan.steps()) == 9


def test_ports_the_hosts_reserved_replace_the_planned_ones() -> None:
    plan = plan_converge(APP, 4, FORMATION, PLACEMENT, RUNNING_V3)
    reserved = plan.with_ports({"dyno-shop.v4.web.1.service": 20007})
    ports = {(a.kind, a.dyno, a.release): a.port for a in reserved.actions}
    assert ports[("boot", "web.1", 4)] == ports[("register", "web.1", 4)] == 20007
    assert ports[("boot", "web.2", 4)] == 20001  # not reserved anew: as planned
    assert ports[("deregister", "web.1", 3)] == 20000  # the old dyno keeps its port
    assert {a.port for a in reserved.on_failure if a.dyno == "web.1"} == {20007}
    assert [d.port for d in reserved.final if d.name == "web.1"] == [20007]
    assert reserved.keep == plan.keep and len(reserved.steps()) == len(plan.steps())


def test_an_old_dyno_whose_port_a_new_one_took_is_stopped_but_not_deregistered() -> None:
    """v1 was still draining when observed; it stopped before the hosts reserved ports, and the
    new web.1 got its port: deregistering v1's target would take the new dyno out."""
    draining_v1 = [
        DynoInstance(APP, 1, "web.1", "h1", 20000),
        DynoInstance(APP, 2, "web.1", "h1", 20001),
        DynoInstance(APP, 2, "web.2", "h2", 20000),
    ]
    web = {"web": ProcessFormation(2)}
    plan = plan_converge(APP, 3, web, PLACEMENT, draining_v1)
    reserved = plan.with_ports({"dyno-shop.v3.web.1.service": 20000})
    deregistered = [(a.dyno, a.release, a.port) for a in reserved.actions if a.kind == "deregister"]
    assert deregistered == [("web.1", 2, 20001), ("web.2", 2, 20000)]
    stopped = sorted((a.dyno, a.release) for a in reserved.actions if a.kind == "stop")
    assert stopped == [("web.1", 1), ("web.1", 2), ("web.2", 2)]
    assert ("web.1", 1, 20000) in [
        (a.dyno, a.release, a.port) for a in plan.actions if a.kind == "deregister"
    ]


def test_port_checks_parse_the_tools_wait_lines() -> None:
    checks = parse_port_checks(
        "ok 20003\nforeign 20004 812 dyno-squat.v1.web.1.service\ncrashed 20005\n"
    )
    assert checks == {
        20003: PortCheck("ok", 20003),
        20004: PortCheck("foreign", 20004, "812 dyno-squat.v1.web.1.service"),
        20005: PortCheck("crashed", 20005),
    }


def test_the_app_user_is_made_in_one_round_trip() -> None:
    argv = ensure_app_user_argv(APP)
    assert argv[:5] == [
        "sh", "-c", 'user=$1; shift; getent passwd "$user" >/dev/null || exec "$@"', "sh",
        "dyno-shop",
    ]  # fmt: skip
    assert argv[5:] == create_app_user_argv(APP)


def test_converging_to_what_runs_does_nothing() -> None:
    plan = plan_converge(APP, 3, FORMATION, PLACEMENT, RUNNING_V3)
    assert plan.is_empty() and plan.describe() == "nothing to do"
    assert plan.keep == sorted(RUNNING_V3)


def test_scale_up_and_down_touch_only_the_difference() -> None:
    up = {**PLACEMENT, DynoRef(APP, "web", 3): "h1"}
    plan = plan_converge(APP, 3, {**FORMATION, "web": ProcessFormation(3)}, up, RUNNING_V3)
    assert kinds(plan) == [
        (1, "boot", "web.3", 3, 20001),
        (2, "register", "web.3", 3, 20001),
        (3, "wait_healthy", "web.3", 3, 20001),
    ]
    down = {d: h for d, h in PLACEMENT.items() if d.name != "web.2"}
    plan = plan_converge(APP, 3, {**FORMATION, "web": ProcessFormation(1)}, down, RUNNING_V3)
    assert kinds(plan) == [
        (1, "deregister", "web.2", 3, 20000),
        (2, "drain", "web.2", 3, 20000),
        (3, "stop", "web.2", 3, 20000),
    ]
    assert plan.on_failure == []
    plan = plan_converge(
        APP, 3, {**FORMATION, "worker": ProcessFormation(0)}, PLACEMENT, RUNNING_V3
    )
    assert kinds(plan) == [(1, "stop", "worker.1", 3, None)]


def test_one_off_dynos_are_left_alone_by_every_rollout() -> None:
    oneoff = DynoInstance(APP, 2, "run.4821", "h1")
    running = [*RUNNING_V3, oneoff]
    assert plan_converge(APP, 3, FORMATION, PLACEMENT, running).is_empty()
    scaled = plan_converge(APP, 3, {**FORMATION, "worker": ProcessFormation(0)}, PLACEMENT, running)
    assert kinds(scaled) == [(1, "stop", "worker.1", 3, None)]
    deploy = plan_converge(APP, 4, FORMATION, PLACEMENT, running)
    assert oneoff not in deploy.stopped and oneoff not in deploy.final
    assert "run.4821" not in {a.dyno for a in deploy.actions + deploy.on_failure}


def test_restart_of_web_uses_a_new_generation_so_it_can_preboot() -> None:
    plan = plan_converge(APP, 3, FORMATION, PLACEMENT, RUNNING_V3, restart=["web.1"])
    assert [(a.kind, a.unit) for a in plan.actions if a.kind in ("boot", "stop")] == [
        ("boot", "dyno-shop.v3-1.web.1.service"),
        ("stop", "dyno-shop.v3.web.1.service"),
    ]
    again = plan_converge(APP, 3, FORMATION, PLACEMENT, plan.final, restart=["web"])
    assert {a.unit for a in again.started} == {
        "dyno-shop.v3-2.web.1.service",
        "dyno-shop.v3-1.web.2.service",
    }


def test_moved_or_resized_dynos_are_replaced() -> None:
    moved = {**PLACEMENT, DynoRef(APP, "web", 2): "h1"}
    plan = plan_converge(APP, 3, FORMATION, moved, RUNNING_V3)
    assert [(a.kind, a.host, a.port) for a in plan.actions if a.kind in ("boot", "stop")] == [
        ("boot", "h1", 20001),
        ("stop", "h2", 20000),
    ]
    bigger = {**FORMATION, "worker": ProcessFormation(1, "standard-2x")}
    plan = plan_converge(APP, 3, bigger, PLACEMENT, RUNNING_V3)
    assert plan.started[0].size == "standard-2x" and plan.started[0].gen == 1
    assert plan.stopped == [RUNNING_V3[2]]


def test_leftovers_of_other_releases_are_stopped_and_actions_serialise() -> None:
    stale = DynoInstance(APP, 2, "worker.1", "h1")
    plan = plan_converge(APP, 3, FORMATION, PLACEMENT, [*RUNNING_V3, stale])
    assert kinds(plan) == [(1, "stop", "worker.1", 2, None)]
    assert plan.actions[0].to_dict()["unit"] == "dyno-shop.v2.worker.1.service"
    assert "stop" in plan.describe()


def test_hosts_keep_the_last_five_releases_and_any_in_use() -> None:
    assert releases_to_prune(range(1, 10), in_use=[2]) == [1, 3, 4]
    assert releases_to_prune([1, 2], in_use=[]) == []


FACTS = """Id=dyno-shop.v3.web.1.service
ActiveState=active
SubState=running
MainPID=69
NRestarts=2
Environment=DYNO=web.1 PORT=20001 HOME=/app DYNOFORM_APP=shop DYNOFORM_SIZE=standard-2x
ActiveEnterTimestamp=@1795663232
MemoryCurrent=[not set]

Id=dyno-shop.v3-1.worker.1.service
ActiveState=activating
SubState=auto-restart
MainPID=0
NRestarts=0
Environment=DYNO=worker.1 HOME=/app
ActiveEnterTimestamp=
MemoryCurrent=1048576

Id=ssh.service
ActiveState=active
"""


def test_dyno_facts_parse_systemctl_show() -> None:
    assert dyno_facts_argv("shop")[-1] == "dyno-shop.*.service"
    states = parse_dyno_facts(FACTS, "h1")
    assert [s.instance for s in states] == [
        DynoInstance(APP, 3, "web.1", "h1", 20001, 0, "standard-2x"),
        DynoInstance(APP, 3, "worker.1", "h1", None, 1),
    ]
    web, worker = states
    assert (web.active, web.main_pid, web.restarts, web.since) == ("active", 69, 2, 1795663232)
    assert web.memory_bytes is None and worker.memory_bytes == 1048576
    assert worker.sub == "auto-restart" and worker.since is None
    assert journal_tail_argv(web.instance.unit, 5)[-3:] == ["5", "-u", web.instance.unit]


@st.composite
def scenarios(draw: st.DrawFn):
    hosts = [f"h{i}" for i in range(draw(st.integers(1, 3)))]
    formation = {
        t: ProcessFormation(
            draw(st.integers(0, 4)), draw(st.sampled_from(["basic", "standard-2x"]))
        )
        for t in ("web", "worker")
    }
    placement = {
        DynoRef(APP, t, i): draw(st.sampled_from(hosts))
        for t, pf in formation.items()
        for i in range(1, pf.quantity + 1)
    }
    running = []
    used: dict[str, set[int]] = {h: set() for h in hosts}
    for n in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["web", "worker"]))
        host = draw(st.sampled_from(hosts))
        port = None
        if kind == "web":
            port = draw(st.integers(20000, 20010).filter(lambda p, h=host: p not in used[h]))
            used[host].add(port)
        dyno = DynoInstance(APP, draw(st.integers(1, 3)), f"{kind}.{n % 4 + 1}", host, port)
        if dyno.unit not in {d.unit for d in running}:
            running.append(dyno)
    release = draw(st.integers(1, 4))
    restart = draw(st.lists(st.sampled_from(["web", "worker", "web.1"]), max_size=2))
    return release, formation, placement, running, restart


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_rollout_invariants(scenario) -> None:
    release, formation, placement, running, restart = scenario
    plan = plan_converge(APP, release, formation, placement, running, restart=restart)
    started, stopped = plan.started, plan.stopped
    # Everything not kept stops exactly once; the result is what the formation asks for.
    assert sorted(stopped) == sorted(d for d in running if d not in plan.keep)
    assert sorted(d.name for d in plan.final) == sorted(d.name for d in placement)
    assert all(d.release == release for d in plan.final)
    # New web dynos get ports in range, unique per host, free of everything running there.
    for dyno in started:
        assert (dyno.port is not None) == dyno.is_web
    for host in {d.host for d in started}:
        ports = [d.port for d in started if d.host == host and d.port]
        taken = {d.port for d in running if d.host == host}
        assert len(ports) == len(set(ports)) and not set(ports) & taken
        assert all(20000 <= p <= 29999 for p in ports)
    # No unit name is both started and already running; preboot order for web.
    assert not {d.unit for d in started} & {d.unit for d in running}
    healthy = [a.step for a in plan.actions if a.kind == "wait_healthy"]
    web_stops = [a.step for a in plan.actions if a.kind == "stop" and a.instance.is_web]
    if healthy and web_stops:
        assert max(healthy) < min(web_stops)
    undone = {a.instance for a in plan.on_failure if a.kind != "start"}
    assert undone == set(started)
    restarted = {a.instance for a in plan.on_failure if a.kind == "start"}
    assert restarted == {d for d in stopped if not d.is_web}
    # A new web dyno is registered only after its port was checked to be its own.
    for dyno in (d for d in started if d.is_web):
        steps = {a.kind: a.step for a in plan.actions if a.instance == dyno}
        assert steps["boot"] < steps["register"] < steps["wait_healthy"]
    # New web dynos boot, all in the first step (their hosts' batches, before any other
    # action); the other types start.
    assert plan.booting() in ([], [a for a in plan.actions if a.step == 1])
    assert all(a.instance.is_web for a in plan.booting())
    assert not any(a.instance.is_web for a in plan.actions if a.kind == "start")
