"""The benchmark's own arithmetic: host CPU by kind, progress phases, wrk output, targets."""

from __future__ import annotations

from bench import hostcpu
from bench.deploys import phase_key, phases
from bench.routerload import parse_wrk
from bench.targets import check_targets

DYNO = "9:name=systemd:/payload/dynoform.slice/dyno-shop.v7.web.1.service\n8:pids:/\n"
SSH = "9:name=systemd:/payload/system.slice/ssh.service\n"
CONTROLLER = "0::/payload/system.slice/dynoform-controller.service\n"


def test_kinds_of_work_on_a_host_come_from_the_unit() -> None:
    assert hostcpu.kind_of(DYNO) == "dyno"
    assert hostcpu.kind_of(SSH) == "platform"
    assert hostcpu.kind_of(CONTROLLER) == "controller"


def test_host_cpu_counts_what_came_and_went_and_not_a_stopped_dynos_past() -> None:
    P = hostcpu.Proc
    before = {1: P("platform", 10.0), 50: P("platform", 1.0), 70: P("dyno", 30.0)}
    # PID 1 reaped the old dyno (30 s, all before) and process 50 (1 s), and did 1.2 s of
    # work; pid 50 is now a new dyno's (0.1 s); another new dyno process took 0.8 s.
    after = {1: P("platform", 42.2), 50: P("dyno", 0.1), 90: P("dyno", 0.8)}
    assert hostcpu.usage(before, after) == {"platform": 1.2, "dyno": 0.9, "controller": 0.0}


def test_progress_phases_are_keyed_without_dynos_and_numbers() -> None:
    stderr = "\n".join(
        [
            "[  0.10s] -----> Deploying shop: directory /tmp/x",
            "[  0.90s] building shop on i-0abc (198.18.0.5)",
            "       remote: pip install",
            "[  1.40s] preparing hosts",
            "[  1.60s] starting web.1, web.2",
            "[  1.75s] web.1, web.2 answering on $PORT",
            "[  2.00s] done",
        ]
    )
    assert phases(stderr) == {
        "-----> Deploying shop": 0.8,
        "building shop on": 0.5,
        "preparing hosts": 0.2,
        "starting": 0.15,
        "answering on $PORT": 0.25,
    }
    assert phase_key("starting web.3") == "starting"


def test_wrk_output_parsed() -> None:
    out = """  Latency Distribution
     50%  412.00us
     99%    3.21ms
  123456 requests in 5.00s, 10.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  24691.20
"""
    assert parse_wrk(out) == {"rps": 24691.2, "p50_ms": 0.412, "p99_ms": 3.21, "errors": 3.0}


def test_targets_say_met_or_not() -> None:
    rows = check_targets(
        {"router_vs_direct": {"rps_ratio": 0.95, "p50_added_ms": 0.42}, "deploy_cold_s": {}}
    )
    assert rows == [
        ("router HTTP / direct HTTP, C-speed target (loopback)", ">= 0.9", "0.95", "met"),
        ("... p50 added, one connection (loopback)", "<= 0.3 ms", "0.42 ms", "NOT MET"),
    ]


def test_platform_cpu_per_host_leaves_the_build_host_apart() -> None:
    from bench.deploys import Deploy, per_host_cpu

    cpu = {
        "df-a": {"platform": 2.0, "dyno": 0.3, "controller": 0.0},
        "df-b": {"platform": 0.5, "dyno": 0.2, "controller": 0.0},
        "df-c": {"platform": 9.0, "dyno": 9.0, "controller": 0.0},  # not one of the app's
    }
    done = [Deploy(1.0, 100.0, 1.0, cpu, {}, "i-a")]
    assert per_host_cpu(done, {"i-a", "i-b"}) == {
        "platform": 0.5,
        "dyno": 0.25,
        "controller": 0.0,
        "build_host_platform": 2.0,
    }
    assert per_host_cpu(done, {"i-a"})["platform"] == 2.0  # one host: it built too
