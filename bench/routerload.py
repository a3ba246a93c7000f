"""The router's throughput and its reaction to target changes, on loopback (no hosts needed).

`python -m bench --only router` runs these. The set-up is the local cloud's own load-balancer
path, as the daemon runs it: moto in a thread with the daemon's fixes (motofix), ELBv2 load
balancers, rules and target groups made through boto3, and LoadBalancers.sync() called as soon
as an ELBv2 call changes something, a real HAProxy as the router.

The targets are one small C-speed server (a second HAProxy answering `200` itself) on
127.0.2.x: a Python server would be the bottleneck and hide the router's own cost. Like the
python example's gunicorn (sync workers), it closes the connection after every response, so
a direct client pays a connection per request as the router does.

Figures (each wrk run alternates direct and routed, the medians are reported):
- HTTP through the router against HTTP to the same target: throughput ratio, p50 added;
- HTTPS through the router against HTTP through the router: what TLS termination costs;
- throughput through the router with 1, 10 and 100 apps (each a host rule and a target group
  of 2 targets in one listener), the request going to the last app's rule;
- with 100 apps: seconds from register_targets (or deregister_targets) to the change serving.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TARGET_PORT = 28950
PORT_BASE = 28800
REGION = "us-east-1"
# Off: every change reads all of ELBv2, as before target changes had their own path.
FAST_TARGET_CHANGES = not os.environ.get("BENCH_FULL_SYNC")


# --- the targets -----------------------------------------------------------------------------


class Targets:
    """One HAProxy answering 200 with `address:port` on every 127.0.2.x address asked for."""

    def __init__(self, count: int, keep_alive: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dynoform-bench-targets-"))
        self.addresses = [f"127.0.2.{i + 1}" for i in range(count)]
        binds = "\n".join(f"    bind {a}:{TARGET_PORT}" for a in self.addresses)
        close = "" if keep_alive else "    option httpclose\n"
        config = (
            "global\n    nbthread 1\n    maxconn 4000\n"
            "defaults\n    mode http\n    timeout client 10s\n    timeout connect 1s\n"
            "    timeout server 10s\n"
            f"frontend targets\n{binds}\n{close}"
            '    http-request return status 200 content-type text/plain lf-string "%[dst]\\n"\n'
        )
        (self.dir / "targets.cfg").write_text(config)
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv
            [_haproxy(), "-f", str(self.dir / "targets.cfg")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_port(self.addresses[0], TARGET_PORT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def target(self, index: int) -> dict[str, Any]:
        return {"Id": self.addresses[index], "Port": TARGET_PORT}

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def _haproxy() -> str:
    return shutil.which("haproxy") or "/usr/sbin/haproxy"


def _wait_port(address: str, port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://{address}:{port}/", timeout=1):
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing answers on {address}:{port}")


# --- the local cloud's load-balancer path ------------------------------------------------------


@dataclass
class App:
    host: str
    target_group: str
    targets: list[int] = field(default_factory=list)  # indexes into Targets


class Cloud:
    """moto (with the daemon's fixes) + LoadBalancers synced on every ELBv2 change."""

    def __init__(self) -> None:
        import boto3
        from moto.server import ThreadedMotoServer

        from provisioner import authority
        from provisioner.localcloud import motofix
        from provisioner.localcloud.lb import LoadBalancers

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        motofix.apply()
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
        kw: dict[str, Any] = {
            "endpoint_url": endpoint,
            "region_name": REGION,
            "aws_access_key_id": "bench",
            "aws_secret_access_key": "bench",
        }
        self.ec2, self.elb = boto3.client("ec2", **kw), boto3.client("elbv2", **kw)
        acm = boto3.client("acm", **kw)
        self.state = Path(tempfile.mkdtemp(prefix="dynoform-bench-router-"))
        self.lbs = LoadBalancers(
            self.elb, self.state / "lb", port_base=PORT_BASE, ca_dir=self.state / "ca"
        )
        self.sync_s: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        motofix.set_feeder(lambda: motofix.feed_from(self.lbs))
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

        self.vpc = self.ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            self.ec2.create_subnet(VpcId=self.vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=z)[
                "Subnet"
            ]["SubnetId"]
            for i, z in enumerate(("us-east-1a", "us-east-1b"))
        ]
        issued = authority.server_cert(authority.server_names("localhost"), self.state / "ca")
        cert = acm.import_certificate(Certificate=issued.cert_pem, PrivateKey=issued.key_pem)
        self.listeners = {}
        # A load balancer per listener: AWS counts the rules of a load balancer's listeners
        # together (100), and 100 apps with a rule on each listener are 200. Both listeners are
        # still served by the one HAProxy.
        for proto, port_ in (("HTTP", 80), ("HTTPS", 443)):
            extra = {"Certificates": [{"CertificateArn": cert["CertificateArn"]}]}
            name = f"bench-{proto.lower()}"
            lb = self.elb.create_load_balancer(Name=name, Subnets=subnets)["LoadBalancers"][0]
            self.listeners[proto] = self.elb.create_listener(
                LoadBalancerArn=lb["LoadBalancerArn"],
                Protocol=proto,
                Port=port_,
                DefaultActions=[
                    {
                        "Type": "fixed-response",
                        "FixedResponseConfig": {"StatusCode": "404", "ContentType": "text/plain"},
                    }
                ],
                **(extra if proto == "HTTPS" else {}),
            )["Listeners"][0]["ListenerArn"]
        self.apps: list[App] = []

    def _loop(self) -> None:
        from provisioner.localcloud import motofix

        while not self._stop.is_set():
            try:
                if motofix.elb_changed.is_set():  # as the daemon's _lb_loop
                    motofix.elb_changed.clear()
                    changed = motofix.take_target_changes()
                    started = time.perf_counter()
                    if changed is None or not FAST_TARGET_CHANGES:
                        self.lbs.sync()
                    elif changed:
                        self.lbs.sync_targets(changed)
                    self.sync_s.append(time.perf_counter() - started)
                    motofix.feed_from(self.lbs)
                elif motofix.waiting() or self.lbs.draining:
                    self.lbs.drain_tick()
                    motofix.feed_from(self.lbs)
            except Exception as exc:  # noqa: BLE001 - as the daemon's loop: say it, go on
                self.errors.append(repr(exc))
            motofix.elb_changed.wait(0.1)

    def add_app(self, targets: list[dict[str, Any]]) -> App:
        """One app as the platform makes it: a target group, and a host rule on both listeners."""
        n = len(self.apps) + 1
        tg = self.elb.create_target_group(
            Name=f"app{n}-web",
            Protocol="HTTP",
            Port=80,
            VpcId=self.vpc,
            TargetType="ip",
            HealthCheckPath="/",
            HealthCheckIntervalSeconds=5,
            HealthyThresholdCount=2,
        )["TargetGroups"][0]["TargetGroupArn"]
        self.elb.modify_target_group_attributes(
            TargetGroupArn=tg,
            Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "5"}],
        )
        host = f"app{n}.localhost"
        for listener in self.listeners.values():
            self.elb.create_rule(
                ListenerArn=listener,
                Priority=n,
                Conditions=[{"Field": "host-header", "Values": [host]}],
                Actions=[{"Type": "forward", "TargetGroupArn": tg}],
            )
        self.elb.register_targets(TargetGroupArn=tg, Targets=targets)
        app = App(host, tg, [self._index(t) for t in targets])
        self.apps.append(app)
        return app

    @staticmethod
    def _index(target: dict[str, Any]) -> int:
        return int(str(target["Id"]).rsplit(".", 1)[1]) - 1

    def port(self, proto: str) -> int:
        for lb in self.lbs.status():
            for ln in lb["listeners"]:
                if ln["protocol"] == proto and ln["local_url"]:
                    return int(ln["local_url"].rsplit(":", 1)[1])
        raise RuntimeError(f"no local {proto} listener")

    def wait_serving(self, app: App, answers: set[str], timeout: float = 30) -> float:
        """Seconds until the router's answers for `app` are exactly `answers` (by address)."""
        started = time.monotonic()
        seen: list[str] = []
        while time.monotonic() - started < timeout:
            with contextlib.suppress(OSError, http.client.HTTPException, RuntimeError):
                seen.append(get(self.port("HTTP"), app.host))
                recent = set(seen[-2 * max(1, len(answers)) :])
                if recent == answers and len(seen) >= 2 * len(answers):
                    return time.monotonic() - started
            time.sleep(0.005)
        raise RuntimeError(f"{app.host} never served exactly {sorted(answers)}: {seen[-4:]}")

    @property
    def haproxy_pid(self) -> int:
        return int(self.lbs.haproxy.worker_pid() or 0)

    def close(self) -> None:
        from provisioner.localcloud import motofix

        self._stop.set()
        motofix.elb_changed.set()
        self._thread.join(timeout=10)
        motofix.set_feeder(None)
        self.lbs.close()
        self.moto.stop()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(self.state, ignore_errors=True)


def get(port: int, host: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/", headers={"Host": host})
        response = conn.getresponse()
        body = response.read().decode().strip()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
        return body
    finally:
        conn.close()


# --- wrk --------------------------------------------------------------------------------------


def wrk(
    url: str, host: str | None, seconds: float, pids: dict[str, int], connections: int = 16
) -> dict[str, float]:
    """One wrk run (2 threads, 16 connections, or 1 and 1); CPU of `pids` per request, in µs."""
    threads = min(2, connections)
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(seconds)}s", "--latency"]
    if host:
        argv += ["-H", f"Host: {host}"]
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    out = subprocess.run(
        [*argv, url], capture_output=True, text=True, timeout=seconds + 30, check=False
    ).stdout
    return parse_wrk(out) | {
        f"{name}_cpu_us": round((cpu_seconds(pid) - before[name]) * 1e6 / max(1, requests(out)), 1)
        for name, pid in pids.items()
    }


def parse_wrk(out: str) -> dict[str, float]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50_ms": latency(out, "50%"),
        "p99_ms": latency(out, "99%"),
        "errors": (float(errors.group(1)) if errors else 0.0)
        + (sum(float(x) for x in socket_errors.groups()) if socket_errors else 0.0),
    }


def requests(out: str) -> int:
    match = re.search(r"(\d+) requests in", out)
    return int(match.group(1)) if match else 0


def latency(text: str, label: str) -> float:
    match = re.search(rf"{re.escape(label)}\s+([\d.]+)(us|ms|s)\b", text)
    if not match:
        return 0.0
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(r[key] for r in runs), 3) for key in runs[0]}


# --- the figures ------------------------------------------------------------------------------


@contextlib.contextmanager
def cloud_with_targets(count: int, keep_alive: bool = False) -> Iterator[tuple[Cloud, Targets]]:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    targets = Targets(count, keep_alive)
    cloud = Cloud()
    try:
        yield cloud, targets
    finally:
        cloud.close()
        targets.close()


def overhead(cloud: Cloud, targets: Targets, rounds: int, seconds: float) -> dict[str, Any]:
    """Direct HTTP, routed HTTP, routed HTTPS to one target, alternated `rounds` times."""
    app = cloud.add_app([targets.target(0)])
    cloud.wait_serving(app, {targets.addresses[0]})
    pids = {"router": cloud.haproxy_pid, "target": targets.pid}
    urls = {
        "direct_http": (f"http://{targets.addresses[0]}:{TARGET_PORT}/", None),
        "router_http": (f"http://127.0.0.1:{cloud.port('HTTP')}/", app.host),
        "router_https": (f"https://127.0.0.1:{cloud.port('HTTPS')}/", app.host),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
    alone: dict[str, list[dict[str, float]]] = {"direct_http": [], "router_http": []}
    for _ in range(rounds):
        for name, (url, host) in urls.items():
            runs[name].append(wrk(url, host, seconds, pids))
        # One connection: the latency the router adds to a request that waits for nothing
        # (with 16 connections on two shared cores, p50 is mostly the wait for a CPU).
        for name in alone:
            url, host = urls[name]
            alone[name].append(wrk(url, host, max(1, seconds // 2), pids, connections=1))
    got = {name: medians(r) for name, r in runs.items()}
    direct, http_, https = got["direct_http"], got["router_http"], got["router_https"]
    one = {f"{name}_1conn": medians(r) for name, r in alone.items()}
    return {
        "router_vs_direct": got
        | one
        | {
            "rps_ratio": round(http_["rps"] / direct["rps"], 3),
            "p50_added_ms": round(
                one["router_http_1conn"]["p50_ms"] - one["direct_http_1conn"]["p50_ms"], 3
            ),
            "p50_added_16conn_ms": round(http_["p50_ms"] - direct["p50_ms"], 3),
            "https_rps_ratio": round(https["rps"] / http_["rps"], 3),
            "https_p50_added_ms": round(https["p50_ms"] - http_["p50_ms"], 3),
            "rounds": rounds,
            "seconds_each": seconds,
        }
    }


def many_apps(
    cloud: Cloud, targets: Targets, counts: list[int], rounds: int, seconds: float, changes: int
) -> dict[str, Any]:
    """Throughput through the router as apps are added (2 targets each; the last app asked),
    then the time target changes take to apply with the most apps."""
    curve = {}
    pids = {"router": cloud.haproxy_pid}
    if len(cloud.apps[0].targets) < 2:  # the overhead's app, with one target so far
        cloud.elb.register_targets(
            TargetGroupArn=cloud.apps[0].target_group, Targets=[targets.target(1)]
        )
        cloud.apps[0].targets.append(1)
    for count in counts:
        while len(cloud.apps) < count:
            i = len(cloud.apps)
            cloud.add_app([targets.target(2 * i), targets.target(2 * i + 1)])
        last = cloud.apps[-1]
        cloud.wait_serving(last, {targets.addresses[t] for t in last.targets})
        pids["router"] = cloud.haproxy_pid
        url = f"http://127.0.0.1:{cloud.port('HTTP')}/"
        curve[str(count)] = medians([wrk(url, last.host, seconds, pids) for _ in range(rounds)])
    result: dict[str, Any] = {"router_vs_apps": curve}
    result |= rule_order(cloud, pids, rounds, seconds)
    result |= target_changes(cloud, targets, changes)
    return result


def rule_order(cloud: Cloud, pids: dict[str, int], rounds: int, seconds: float) -> dict[str, Any]:
    """With every app in: the first app's rule (matched first) against the last's (after all
    the others), alternated, so the machine's load weighs on both alike (the curve's points
    are measured one after the other)."""
    url = f"http://127.0.0.1:{cloud.port('HTTP')}/"
    first: list[dict[str, float]] = []
    last: list[dict[str, float]] = []
    for _ in range(rounds):
        first.append(wrk(url, cloud.apps[0].host, seconds, pids))
        last.append(wrk(url, cloud.apps[-1].host, seconds, pids))
    a, b = medians(first), medians(last)
    return {
        "router_rules": {
            "apps": len(cloud.apps),
            "first_rule": a,
            "last_rule": b,
            "rps_ratio": round(b["rps"] / a["rps"], 3),
        }
    }


def target_changes(cloud: Cloud, targets: Targets, changes: int) -> dict[str, Any]:
    """Replace one target of the middle app with a spare one (register, then deregister the
    old): seconds from each call until the router's answers show it."""
    app = cloud.apps[len(cloud.apps) // 2]
    spare = len(targets.addresses) - 1  # the one that comes and goes
    kept = {targets.addresses[t] for t in app.targets}
    register, deregister = [], []
    sync_before = len(cloud.sync_s)
    for _ in range(changes):
        started = time.monotonic()
        cloud.elb.register_targets(TargetGroupArn=app.target_group, Targets=[targets.target(spare)])
        cloud.wait_serving(app, kept | {targets.addresses[spare]})
        register.append(time.monotonic() - started)
        started = time.monotonic()
        cloud.elb.deregister_targets(
            TargetGroupArn=app.target_group, Targets=[targets.target(spare)]
        )
        cloud.wait_serving(app, kept)
        deregister.append(time.monotonic() - started)
    syncs = cloud.sync_s[sync_before:]
    return {
        "target_change_s": {
            "apps": len(cloud.apps),
            "register": summary(register),
            "deregister": summary(deregister),
            "sync_ms": summary([s * 1000 for s in syncs]) if syncs else {},
        }
    }


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "runs": len(values),
    }


# --- keep-alive to targets and the idle-close race ------------------------------------------

IDLE_TARGET = "127.0.3.1"
POST_SCRIPT = 'wrk.method = "POST"\nwrk.body = "x"\n'


@contextlib.contextmanager
def idle_target(cloud: Cloud, address: str, idle: float) -> Iterator[tuple[App, dict[str, Any]]]:
    """A target that closes connections idle for `idle` s (bench/idletarget.py) as an app's
    only target; its counts land in the yielded dict when the block ends."""
    stats = Path(tempfile.mkstemp(prefix="dynoform-bench-idle-", suffix=".json")[1])
    proc = subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "bench.idletarget", address, str(TARGET_PORT), str(idle), stats],
        cwd=Path(__file__).resolve().parents[1],
        start_new_session=True,
    )
    got: dict[str, Any] = {}
    try:
        _wait_port(address, TARGET_PORT)
        app = cloud.add_app([{"Id": address, "Port": TARGET_PORT}])
        cloud.wait_serving(app, {"ok"})
        yield app, got
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        with contextlib.suppress(OSError, ValueError):
            got |= json.loads(stats.read_text())
        stats.unlink(missing_ok=True)


def idle_race(cloud: Cloud, seconds: float, keepalive: float = 6.0) -> dict[str, Any]:
    """POSTs (never sent twice) through the router to a target that keeps idle connections
    `keepalive` s, under an uneven load (wrk runs of 1-16 connections, pauses of 0-8 s): the
    target must never have to close an idle connection (the router closed them first), so
    no POST can meet a connection closing under it. Then the hazard itself: a target that
    closes after 0.05 s, one client connection sending every 0.047-0.051 s."""
    script = Path(tempfile.mkstemp(prefix="dynoform-bench-post-", suffix=".lua")[1])
    script.write_text(POST_SCRIPT)
    rng = random.Random(7)  # the same load every run
    runs: list[dict[str, float]] = []
    try:
        with idle_target(cloud, IDLE_TARGET, keepalive) as (app, stats):
            url = f"http://127.0.0.1:{cloud.port('HTTP')}/"
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                conns = rng.choice([1, 2, 4, 8, 16])
                argv = ["wrk", "-t1", f"-c{conns}", f"-d{rng.choice([1, 2])}s", "-s", str(script)]
                out = subprocess.run(
                    [*argv, "-H", f"Host: {app.host}", url],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                ).stdout
                runs.append({"requests": requests(out), "errors": parse_wrk(out)["errors"]})
                time.sleep(rng.uniform(0, 8))
    finally:
        script.unlink(missing_ok=True)
    kept = {
        "target_keepalive_s": keepalive,
        "posts": sum(r["requests"] for r in runs),
        "failed": sum(r["errors"] for r in runs),
        "closed_by_target": stats.get("closed_by_target"),
        "router_idle_max_s": round(
            max(stats.get("idle_max_reused", 0), stats.get("idle_max_closed_by_router", 0)), 2
        ),
    }
    return {"idle_race": kept, "idle_race_short": short_keepalive(cloud)}


def short_keepalive(cloud: Cloud, idle: float = 0.05, count: int = 150) -> dict[str, Any]:
    """POSTs then GETs on one keep-alive client connection, each sent as the target closes
    the pooled connection of the one before: the failed POSTs are the race; GETs the router
    sends again (retry-on empty-response)."""
    failed = {"POST": 0, "GET": 0}
    with idle_target(cloud, "127.0.3.2", idle) as (app, _):
        port = cloud.port("HTTP")
        for method in failed:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            for _ in range(count):
                time.sleep(idle + random.uniform(-0.003, 0.001))
                try:
                    conn.request(
                        method,
                        "/",
                        body=b"x" if method == "POST" else None,
                        headers={"Host": app.host},
                    )
                    response = conn.getresponse()
                    response.read()
                    failed[method] += response.status != 200
                except (OSError, http.client.HTTPException):
                    failed[method] += 1
                    conn.close()
            conn.close()
    return {"target_keepalive_s": idle, "each": count} | {
        f"failed_{m.lower()}": n for m, n in failed.items()
    }


def run(quick: bool) -> dict[str, Any]:
    rounds, seconds = (3, 3.0) if quick else (5, 5.0)
    counts = [1, 10, 100]
    with cloud_with_targets(2 * max(counts) + 1) as (cloud, targets):
        figures = overhead(cloud, targets, rounds, seconds)
        # The overhead's app is app 1 (one target): the curve's apps come after it.
        figures |= many_apps(cloud, targets, counts, rounds, seconds, 3 if quick else 5)
    # A target that keeps its connections, as the python example's gunicorn (gthread) does.
    with cloud_with_targets(1, keep_alive=True) as (cloud, targets):
        figures["router_vs_direct_keepalive"] = overhead(cloud, targets, rounds, seconds)[
            "router_vs_direct"
        ]
        figures |= idle_race(cloud, 30.0 if quick else 60.0)
    apps = figures["router_vs_apps"]
    figures["router_apps_100_vs_1"] = round(apps[str(counts[-1])]["rps"] / apps["1"]["rps"], 3)
    figures["router_load_average"] = round(os.getloadavg()[0], 2)
    return figures


if __name__ == "__main__":
    import json
    import sys

    signal.signal(signal.SIGINT, signal.default_int_handler)
    json.dump(run("--quick" in sys.argv), sys.stdout, indent=1)
