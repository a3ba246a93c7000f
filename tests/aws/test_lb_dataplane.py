"""The local load-balancer data plane end to end: moto server + real HAProxy + real backends.

Everything runs on loopback: a moto server in a thread, Python http.servers as targets (ip
targets at 127.0.0.1), and LoadBalancers.sync() in a loop as the local-cloud daemon runs it.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import itertools
import os
import re
import shutil
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from tls_support import tls_get, user_cert

from provisioner.localcloud.haproxy import parse_stat
from provisioner.localcloud.lb import LoadBalancers

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")

SYNC_SECONDS = 0.5  # as the daemon calls it
PORT_BASE = 28400


class Backend:
    """A real HTTP server on a free loopback port that says who it is."""

    addresses = itertools.count(11)

    def __init__(self, name: str, health_status: int = 200) -> None:
        # Each backend on its own loopback address: moto keys a target group's targets by Id
        # alone, so two targets on one IP with different ports would collapse into one.
        self.address = f"127.0.0.{next(Backend.addresses) % 250 + 2}"
        self.name = name
        self.health_status = health_status
        self.health_script: list[int] = []  # the next checks' statuses, then health_status
        self.hits: Counter[str] = Counter()
        # Requests it reads and then drops without a word, as a dyno dying under them would.
        self.drop_requests = False
        self._hole: list[socket.socket] = []
        self._serve(0)

    def _serve(self, port: int) -> None:
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path == "/health":
                    script = backend.health_script
                    code = script.pop(0) if script else backend.health_status
                    body = b"health\n"
                else:
                    backend.hits[f"{self.command} {self.path}"] += 1
                    if backend.drop_requests:
                        self.close_connection = True
                        return
                    backend.hits[self.path] += 1
                    if self.path.startswith("/slow"):
                        time.sleep(1.5)
                    code, body = 200, f"{backend.name} {self.headers.get('Host')}\n".encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.do_GET()

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # health checks may reset the connection after the status line

        self.server = Server((self.address, port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def target(self) -> dict[str, Any]:
        return {"Id": self.address, "Port": self.port}

    def stop(self) -> None:
        """Close the port: connections are refused, as by a host whose dyno stopped."""
        self.server.shutdown()
        self.server.server_close()

    def die(self) -> None:
        """Go silent as a dead host does: no answer at all, not even a refusal. A listening
        socket whose accept queue is full drops every SYN, so connections time out."""
        self.stop()
        hole = socket.socket()
        hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        hole.bind((self.address, self.port))
        hole.listen(0)
        self._hole = [hole, socket.create_connection((self.address, self.port), timeout=1)]

    def close(self) -> None:
        self.stop()
        for sock in self._hole:
            sock.close()

    def revive(self) -> None:
        """Answer again on the same port (after die() or stop())."""
        for sock in self._hole:
            sock.close()
        self._hole = []
        self._serve(self.port)


@pytest.fixture
def endpoint(aws_endpoint: Any) -> str:
    return f"http://127.0.0.1:{aws_endpoint.port}"


def _client(endpoint: str, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


class Cloud:
    """One ALB with a 404 default, two target groups and host-header rules, and its syncer."""

    def __init__(self, endpoint: str, state_dir: Path, tag: str) -> None:
        self.elb = _client(endpoint, "elbv2")
        self.ec2 = ec2 = _client(endpoint, "ec2")
        self.vpc = vpc = ec2.create_vpc(CidrBlock="10.10.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.10.{i}.0/24", AvailabilityZone=zone)[
                "Subnet"
            ]["SubnetId"]
            for i, zone in enumerate(("us-east-1a", "us-east-1b"))
        ]
        self.subnets = subnets
        lb = self.elb.create_load_balancer(Name=f"lb-{tag}", Subnets=subnets)["LoadBalancers"][0]
        self.lb_arn = lb["LoadBalancerArn"]
        self.web = self._target_group(f"web-{tag}", vpc)
        self.api = self._target_group(f"api-{tag}", vpc)
        self.listener = self.elb.create_listener(
            LoadBalancerArn=self.lb_arn,
            Protocol="HTTP",
            Port=80,
            DefaultActions=[
                {
                    "Type": "fixed-response",
                    "FixedResponseConfig": {
                        "StatusCode": "404",
                        "ContentType": "text/plain",
                        "MessageBody": "no such app\n",
                    },
                }
            ],
        )["Listeners"][0]["ListenerArn"]
        self.rule(10, ["web.example.test"], self.web)
        self.rule(20, ["*.api.test"], self.api)
        # Away from 18000+, which the shared local cloud on this machine may be using.
        self.lbs = LoadBalancers(self.elb, state_dir, port_base=PORT_BASE)
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        try:
            self.port = self._wait_port()
        except BaseException:
            self.close()  # the fixture never sees this object: stop HAProxy here
            raise

    def _target_group(self, name: str, vpc: str) -> str:
        arn = self.elb.create_target_group(
            Name=name,
            Protocol="HTTP",
            Port=80,
            VpcId=vpc,
            TargetType="ip",
            HealthCheckPath="/health",
            HealthCheckIntervalSeconds=5,
            HealthyThresholdCount=2,
            UnhealthyThresholdCount=2,
            Matcher={"HttpCode": "200-299"},
        )["TargetGroups"][0]["TargetGroupArn"]
        self.elb.modify_target_group_attributes(
            TargetGroupArn=arn,
            Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "5"}],
        )
        return str(arn)

    def instance_target_group(self, name: str) -> str:
        arn = self.elb.create_target_group(
            Name=name, Protocol="HTTP", Port=8080, VpcId=self.vpc, TargetType="instance"
        )["TargetGroups"][0]["TargetGroupArn"]
        return str(arn)

    def rule(self, priority: int, hosts: list[str], tg_arn: str) -> None:
        self.elb.create_rule(
            ListenerArn=self.listener,
            Priority=priority,
            Conditions=[{"Field": "host-header", "HostHeaderConfig": {"Values": hosts}}],
            Actions=[{"Type": "forward", "TargetGroupArn": tg_arn}],
        )

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.lbs.sync()
            except BaseException as exc:  # surfaced by the test, not swallowed
                self.errors.append(exc)
            self._stop.wait(SYNC_SECONDS)

    def _wait_port(self) -> int:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for lb in self.lbs.status():
                for ln in lb["listeners"] if lb["arn"] == self.lb_arn else ():
                    if ln["local_url"] and self.lbs.haproxy.running:
                        return int(ln["local_url"].rsplit(":", 1)[1])
            time.sleep(0.05)
        raise AssertionError(f"no local_url in {self.lbs.status()} ({self.errors})")

    def register(self, tg_arn: str, *backends: Backend) -> None:
        self.elb.register_targets(TargetGroupArn=tg_arn, Targets=[b.target for b in backends])

    def deregister(self, tg_arn: str, *backends: Backend) -> None:
        self.elb.deregister_targets(TargetGroupArn=tg_arn, Targets=[b.target for b in backends])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        master = self.lbs.haproxy.proc.pid if self.lbs.haproxy.proc else None
        try:
            self.lbs.close()
        finally:
            if master is not None and Path(f"/proc/{master}").exists():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(master, signal.SIGKILL)


def get(port: int, host: str, path: str = "/", timeout: float = 5) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(
            "GET", path, headers={"Host": host, "X-Request-Id": "req-test-1-0123456789abc"}
        )
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def wait_for(port: int, host: str, want: str, timeout: float = 5.0) -> float:
    """Seconds until a request for `host` is answered by the backend named `want`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        with contextlib.suppress(OSError):
            status, body = get(port, host)
            if status == 200 and body.startswith(want + " "):
                return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"{host} never reached {want} within {timeout}s")


@pytest.fixture
def backends() -> Iterator[dict[str, Backend]]:
    made: dict[str, Backend] = {}

    class Factory(dict[str, Backend]):
        def __missing__(self, name: str) -> Backend:
            made[name] = self[name] = Backend(name)
            return made[name]

    yield Factory()
    for b in made.values():
        b.close()


@pytest.fixture
def cloud(endpoint: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cloud]:
    tag = str(abs(hash(request.node.name)) % 100000)
    c = Cloud(endpoint, tmp_path / "lb", tag)
    try:
        yield c
    finally:
        c.close()
    assert not c.errors, c.errors


def test_host_rules_reach_their_target_groups_and_default_is_404(
    cloud: Cloud, backends: dict[str, Backend]
) -> None:
    cloud.register(cloud.web, backends["web1"])
    cloud.register(cloud.api, backends["api1"])
    wait_for(cloud.port, "web.example.test", "web1")
    wait_for(cloud.port, "v1.api.test", "api1")

    assert get(cloud.port, "web.example.test")[1] == "web1 web.example.test\n"
    assert get(cloud.port, "WEB.Example.test:80")[1].startswith("web1 ")  # case, port
    assert get(cloud.port, "x.y.api.test")[1].startswith("api1 ")  # * spans dots, as on ALB
    assert get(cloud.port, "api.test") == (404, "no such app\n")  # *. needs a subdomain
    assert get(cloud.port, "elsewhere.test") == (404, "no such app\n")

    want = f"dyno={backends['web1'].address}:{backends['web1'].port}"
    deadline = time.monotonic() + 2  # HAProxy logs a request just after it answers
    router_log = ""
    while want not in router_log and time.monotonic() < deadline:
        router_log = (cloud.lbs.state_dir / "router.log").read_text()
        time.sleep(0.05)
    assert "request_id=req-test-1-0123456789abc" in router_log
    # Without an X-Request-Id the router makes one, as Heroku's does.
    conn = http.client.HTTPConnection("127.0.0.1", cloud.port, timeout=5)
    conn.request("GET", "/", headers={"Host": "web.example.test"})
    conn.getresponse().read()
    conn.close()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        router_log = (cloud.lbs.state_dir / "router.log").read_text()
        if re.search(r"request_id=[0-9a-f-]{36} ", router_log):
            break
        time.sleep(0.05)
    assert re.search(r"request_id=[0-9a-f-]{36} ", router_log)
    assert "tg-web-" in cloud.lbs.show_stat()
    assert [tg.name for tg in cloud.lbs.model.target_groups] == sorted(
        tg.name for tg in cloud.lbs.model.target_groups
    )
    assert 'method=GET path="/" host=web.example.test' in router_log
    assert want in router_log
    listener = cloud.lbs.status()[0]["listeners"][0]
    assert listener["local_url"] == f"http://127.0.0.1:{cloud.port}"
    assert listener["port"] == 80 and listener["protocol"] == "HTTP"


def test_target_churn_drops_no_request(cloud: Cloud, backends: dict[str, Backend]) -> None:
    old, stay, new = backends["old"], backends["stay"], backends["new"]
    cloud.register(cloud.web, old, stay)
    wait_for(cloud.port, "web.example.test", "old")
    wait_for(cloud.port, "web.example.test", "stay")
    reload_pid = cloud.lbs.haproxy.worker_pid()

    failures: list[str] = []
    served: Counter[str] = Counter()

    def fresh_connections(n: int) -> None:
        for _ in range(n):
            try:
                status, body = get(cloud.port, "web.example.test", "/churn")
                served[body.split()[0]] += 1
                if status != 200:
                    failures.append(f"{status} {body!r}")
            except OSError as exc:
                failures.append(repr(exc))
            time.sleep(0.02)

    def keep_alive(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", cloud.port, timeout=5)
        for _ in range(n):
            try:
                conn.request("GET", "/churn", headers={"Host": "web.example.test"})
                resp = conn.getresponse()
                body = resp.read().decode()
                served[body.split()[0]] += 1
                if resp.status != 200:
                    failures.append(f"{resp.status} {body!r}")
            except (OSError, http.client.HTTPException) as exc:
                failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", cloud.port, timeout=5)
            time.sleep(0.02)
        conn.close()

    clients = [
        threading.Thread(target=fresh_connections, args=(100,)),
        threading.Thread(target=keep_alive, args=(100,)),
    ]
    for t in clients:
        t.start()
    time.sleep(0.5)
    registered_at = time.monotonic()
    cloud.register(cloud.web, new)
    cloud.deregister(cloud.web, old)
    serving_after = wait_for(cloud.port, "web.example.test", "new")
    for t in clients:
        t.join(timeout=60)

    print(
        f"churn: {sum(served.values())} requests, {len(failures)} failures, served {dict(served)}, "
        f"register_targets -> serving {serving_after:.2f}s (at {registered_at:.0f})"
    )
    assert failures == []
    assert sum(served.values()) == 200
    assert served["new"] > 0 and served["stay"] > 0
    assert serving_after < 3.0
    # Target changes went through the runtime API: the same worker still serves.
    assert cloud.lbs.haproxy.worker_pid() == reload_pid
    time.sleep(1.0)
    after = Counter(get(cloud.port, "web.example.test")[1].split()[0] for _ in range(20))
    assert set(after) == {"new", "stay"}


def test_draining_target_finishes_its_request(cloud: Cloud, backends: dict[str, Backend]) -> None:
    old, new = backends["slow-old"], backends["slow-new"]
    cloud.register(cloud.api, old)
    wait_for(cloud.port, "a.api.test", "slow-old")
    result: list[tuple[int, str]] = []
    slow = threading.Thread(target=lambda: result.append(get(cloud.port, "a.api.test", "/slow")))
    slow.start()
    time.sleep(0.2)
    cloud.register(cloud.api, new)
    cloud.deregister(cloud.api, old)
    wait_for(cloud.port, "a.api.test", "slow-new")
    slow.join(timeout=10)
    assert result and result[0][0] == 200 and result[0][1].startswith("slow-old ")


def test_unhealthy_targets_get_no_traffic(cloud: Cloud, backends: dict[str, Backend]) -> None:
    good, sick = backends["good"], backends["sick"]
    sick.health_status = 500
    gone = Backend("gone")
    gone.stop()  # a registered target that does not listen
    cloud.register(cloud.api, good, sick, gone)
    wait_for(cloud.port, "b.api.test", "good")
    time.sleep(1.0)
    bodies = Counter(get(cloud.port, "b.api.test", "/count")[1].split()[0] for _ in range(40))
    assert bodies == Counter({"good": 40})
    assert sick.hits["/count"] == 0

    # A target that turns unhealthy is taken out; one that recovers comes back.
    sick.health_status = 200
    wait_for(cloud.port, "b.api.test", "sick", timeout=8)
    good.health_status = 503
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if {get(cloud.port, "b.api.test")[1].split()[0] for _ in range(6)} == {"sick"}:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("a target failing its health checks kept getting traffic")


def server_status(cloud: Cloud, tg_arn: str, backend: Backend) -> str:
    """HAProxy's status of one target's server (UP, DOWN, ...), "" when it has none."""
    tg = cloud.lbs.model.target_group(tg_arn)
    assert tg is not None
    row = parse_stat(cloud.lbs.show_stat()).get((tg.backend, f"{backend.address}:{backend.port}"))
    return (row or {}).get("status", "")


def timed_gets(cloud: Cloud, host: str, count: int) -> list[tuple[float, int, str]]:
    out = []
    for i in range(count):
        start = time.monotonic()
        status, body = get(cloud.port, host, f"/n{i}")
        out.append((time.monotonic() - start, status, body.split(" ")[0]))
    return out


@pytest.mark.parametrize("death", ["silent", "refusing"])
def test_dead_target_costs_no_request_and_leaves_at_once(
    cloud: Cloud, backends: dict[str, Backend], death: str
) -> None:
    """A target that dies (a host gone: its connections time out; a dyno stopped: they are
    refused) fails no request: each failed connection is retried on the other server, and
    after `fall` failed connections in a row the server is out, long before its active checks
    (5 s apart here) would have noticed; it comes back once they pass again."""
    alive, dying = backends[f"alive-{death}"], backends[f"dying-{death}"]
    cloud.register(cloud.api, alive, dying)
    wait_for(cloud.port, "d.api.test", alive.name)
    wait_for(cloud.port, "d.api.test", dying.name)
    if death == "silent":
        dying.die()
    else:
        dying.stop()

    answers = timed_gets(cloud, "d.api.test", 20)
    assert [(status, name) for _, status, name in answers] == [(200, alive.name)] * 20
    # A timed-out connection costs its request `timeout connect` (500 ms); a refused one costs
    # nothing, but HAProxy waits min(timeout connect, 1 s) before retrying once a single
    # server is left, which happens to the request whose failure marks the other one down.
    assert max(seconds for seconds, _, _ in answers) < 1.0
    slow = [seconds for seconds, _, _ in answers if seconds > 0.4]
    assert len(slow) <= 2, answers  # error-limit = fall = 2
    assert server_status(cloud, cloud.api, dying) == "DOWN"

    dying.revive()
    assert wait_for(cloud.port, "d.api.test", dying.name) < 3.0  # checks every 100 ms while down


def status_for(cloud: Cloud, backend: Backend, seconds: float, want: str = "UP") -> list[str]:
    """The server's statuses read every 10 ms (each read admits a fresh server that passed a
    check, as a rollout's describe_target_health does) until `want` or `seconds` are over."""
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and want not in seen:
        seen.append(server_status(cloud, cloud.api, backend))
        time.sleep(0.01)
    return seen


def test_a_new_target_is_admitted_on_its_first_passing_check_a_returning_one_after_rise(
    cloud: Cloud, backends: dict[str, Backend]
) -> None:
    alive, new = backends["alive-rise"], backends["new-rise"]
    cloud.register(cloud.api, alive)
    wait_for(cloud.port, "r.api.test", alive.name)
    # One passing check, then failing ones: with rise 2 it would never be up.
    new.health_script = [200]
    new.health_status = 500
    cloud.register(cloud.api, new)
    assert status_for(cloud, new, 5.0)[-1] == "UP"
    wait_for(cloud.port, "r.api.test", new.name)  # and HAProxy sends it requests

    # Down (its connections refused), then back with one passing check: that is not enough
    # for a target that was up before (rise 2, as an ALB's healthy threshold).
    new.stop()
    for _ in range(8):
        get(cloud.port, "r.api.test")
    assert status_for(cloud, new, 3.0, want="DOWN")[-1] == "DOWN"
    new.health_script = [200]
    new.revive()
    seen = status_for(cloud, new, 1.0)
    assert "UP" not in seen and any(s.startswith("DOWN") for s in seen), seen
    new.health_status = 200
    assert status_for(cloud, new, 5.0)[-1] == "UP"


def test_only_safe_methods_are_sent_again_after_reaching_a_server(
    cloud: Cloud, backends: dict[str, Backend]
) -> None:
    """A server that closes without answering (a dyno dying under the request) may have done
    the work: a GET goes to another server, a POST gets its 502 and is never sent twice."""
    good, dropping = backends["good-l7"], backends["dropping-l7"]
    cloud.register(cloud.api, good, dropping)
    wait_for(cloud.port, "e.api.test", good.name)
    wait_for(cloud.port, "e.api.test", dropping.name)
    dropping.drop_requests = True

    assert [get(cloud.port, "e.api.test", "/get")[0] for _ in range(6)] == [200] * 6
    assert dropping.hits["GET /get"] >= 1  # some were dropped there, then answered by good
    assert good.hits["GET /get"] == 6

    statuses = []
    for _ in range(6):
        conn = http.client.HTTPConnection("127.0.0.1", cloud.port, timeout=5)
        conn.request("POST", "/post", body=b"x=1", headers={"Host": "e.api.test"})
        statuses.append(conn.getresponse().status)
        conn.close()
    assert sorted(set(statuses)) == [200, 502]
    assert dropping.hits["POST /post"] == statuses.count(502)
    assert good.hits["POST /post"] == statuses.count(200)  # no POST reached both


def test_structural_change_reloads_without_dropping(
    cloud: Cloud, backends: dict[str, Backend]
) -> None:
    cloud.register(cloud.web, backends["w"])
    cloud.register(cloud.api, backends["a"])
    wait_for(cloud.port, "web.example.test", "w")
    wait_for(cloud.port, "q.api.test", "a")
    before = cloud.lbs.haproxy.worker_pid()
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                status, _ = get(cloud.port, "web.example.test")
                if status != 200:
                    failures.append(str(status))
            except OSError as exc:
                failures.append(repr(exc))

    kept_alive: list[int] = []

    def keep_alive() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", cloud.port, timeout=5)
        while not stop.is_set():
            try:
                conn.request("GET", "/", headers={"Host": "web.example.test"})
                resp = conn.getresponse()
                resp.read()
                kept_alive.append(resp.status)
                if resp.status != 200:
                    failures.append(f"keep-alive {resp.status}")
                if resp.will_close:  # the old process said goodbye politely
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", cloud.port, timeout=5)
            except (OSError, http.client.HTTPException) as exc:
                failures.append(f"keep-alive {exc!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", cloud.port, timeout=5)
            time.sleep(0.01)
        conn.close()

    clients = [threading.Thread(target=hammer), threading.Thread(target=keep_alive)]
    for client in clients:
        client.start()
    try:
        time.sleep(0.3)
        cloud.rule(5, ["new.example.test"], cloud.api)  # a new rule: a reload
        wait_for(cloud.port, "new.example.test", "a")
        time.sleep(0.3)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=10)
    print(f"reload: {len(kept_alive)} keep-alive requests, failures {failures}")
    assert kept_alive
    assert cloud.lbs.haproxy.worker_pid() != before
    assert failures == []
    # The reloaded HAProxy kept both targets up (state file + runtime re-add).
    assert get(cloud.port, "web.example.test")[1].startswith("w ")


def test_ports_survive_a_restart(endpoint: str, tmp_path: Path) -> None:
    state = tmp_path / "lb"
    first = Cloud(endpoint, state, "restart")
    try:
        port = first.port
    finally:
        first.close()
    assert not first.lbs.haproxy.running
    second = LoadBalancers(first.elb, state, port_base=PORT_BASE)
    try:
        second.sync()
        urls = [ln["local_url"] for lb in second.status() for ln in lb["listeners"]]
        assert f"http://127.0.0.1:{port}" in urls
    finally:
        second.close()


def test_instance_targets_use_the_private_ip(cloud: Cloud) -> None:
    image = cloud.ec2.describe_images()["Images"][0]["ImageId"]
    instance = cloud.ec2.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, SubnetId=cloud.subnets[0]
    )["Instances"][0]
    tg = cloud.instance_target_group("inst")
    cloud.elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": instance["InstanceId"]}])
    want = f"{instance['InstanceId']}:8080 {instance['PrivateIpAddress']}"
    deadline = time.monotonic() + 3
    state = ""
    while want not in state and time.monotonic() < deadline:
        state = cloud.lbs.haproxy.command("show servers state tg-inst")
        time.sleep(0.1)
    assert want in state


def test_path_patterns_and_redirects(cloud: Cloud, backends: dict[str, Backend]) -> None:
    cloud.register(cloud.web, backends["pw"])
    cloud.register(cloud.api, backends["pa"])
    cloud.elb.create_rule(
        ListenerArn=cloud.listener,
        Priority=5,
        Conditions=[
            {"Field": "host-header", "Values": ["web.example.test"]},
            {"Field": "path-pattern", "Values": ["/api/*"]},
        ],
        Actions=[{"Type": "forward", "TargetGroupArn": cloud.api}],
    )
    cloud.elb.create_rule(
        ListenerArn=cloud.listener,
        Priority=6,
        Conditions=[{"Field": "host-header", "Values": ["old.example.test"]}],
        Actions=[
            {
                "Type": "redirect",
                "RedirectConfig": {
                    "Protocol": "HTTPS",
                    "Port": "443",
                    "Host": "web.example.test",
                    "StatusCode": "HTTP_301",
                },
            }
        ],
    )
    wait_for(cloud.port, "web.example.test", "pw")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        status, body = get(cloud.port, "web.example.test", "/api/x")
        if body.startswith("pa "):
            break
        time.sleep(0.05)
    assert body.startswith("pa ")
    assert get(cloud.port, "web.example.test", "/apix")[1].startswith("pw ")  # pattern is /api/*
    conn = http.client.HTTPConnection("127.0.0.1", cloud.port, timeout=5)
    conn.request("GET", "/a/b?c=1", headers={"Host": "old.example.test"})
    resp = conn.getresponse()
    conn.close()
    assert resp.status == 301
    assert resp.getheader("Location") == "https://web.example.test/a/b?c=1"


def test_rule_values_made_to_inject_config_are_skipped(
    cloud: Cloud, backends: dict[str, Backend], caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone may create rules through the ELBv2 API, with any characters (moto takes them):
    none reaches haproxy.cfg, and the rules made meanwhile by others are served all the same."""
    caplog.set_level("WARNING", logger="provisioner.localcloud.lb")
    cloud.register(cloud.web, backends["hw"])
    cloud.register(cloud.api, backends["ha"])
    wait_for(cloud.port, "web.example.test", "hw")
    with socket.socket() as free:  # a free port: a `bind` smuggled into the config would take it
        free.bind(("127.0.0.1", 0))
        trap = free.getsockname()[1]
    hostile = [
        ("host-header", f"evil.test\nfrontend evil\n    bind 127.0.0.1:{trap}"),
        ("host-header", "evil.test\n"),
        ("path-pattern", f"/x)$'\n    bind 127.0.0.1:{trap} #"),
        ("path-pattern", "/a b"),
        ("http-request-method", "GET if TRUE"),
    ]
    for priority, (kind, value) in enumerate(hostile, start=40):
        config = {
            "host-header": "HostHeaderConfig",
            "path-pattern": "PathPatternConfig",
            "http-request-method": "HttpRequestMethodConfig",
        }[kind]
        cloud.elb.create_rule(
            ListenerArn=cloud.listener,
            Priority=priority,
            Conditions=[{"Field": kind, config: {"Values": [value]}}],
            Actions=[{"Type": "forward", "TargetGroupArn": cloud.api}],
        )
    cloud.rule(60, ["new.example.test"], cloud.api)  # another tenant's rule, made meanwhile
    wait_for(cloud.port, "new.example.test", "ha")
    assert get(cloud.port, "web.example.test")[1].startswith("hw ")
    assert get(cloud.port, "evil.test") == (404, "no such app\n")
    config = (cloud.lbs.state_dir / "haproxy.cfg").read_text()
    assert "evil" not in config and f":{trap}" not in config
    assert not re.search(r"\br4\d", config)  # no acl of the rules 40-44
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", trap)) != 0  # nothing listens there
    skipped = [r.getMessage() for r in caplog.records if "rule skipped" in r.getMessage()]
    assert len(skipped) == len(hostile) and all("\n" not in line for line in skipped)


def test_target_back_while_draining_survives_a_reload(
    cloud: Cloud, backends: dict[str, Backend]
) -> None:
    a = backends["back"]
    cloud.register(cloud.web, a)
    wait_for(cloud.port, "web.example.test", "back")
    slow = threading.Thread(target=get, args=(cloud.port, "web.example.test", "/slow"))
    slow.start()  # keeps `back` busy, so it stays draining
    time.sleep(0.2)
    cloud.deregister(cloud.web, a)
    time.sleep(2 * SYNC_SECONDS + 0.2)
    draining = [server for _, server in cloud.lbs._draining]
    assert draining == [f"{a.address}:{a.port}"]  # white-box: the scenario really happened
    cloud.register(cloud.web, a)
    cloud.rule(7, ["reload.example.test"], cloud.api)  # and a reload in the same sync
    slow.join(timeout=10)
    wait_for(cloud.port, "web.example.test", "back")


def test_https_listener_with_an_acm_certificate_of_the_local_ca(
    cloud: Cloud, backends: dict[str, Backend], endpoint: str, tmp_path: Path
) -> None:
    """HTTPS :443 with the local CA's wildcard imported into ACM: every app host verifies
    (a certificate of its own, by SNI); HTTP :80 redirects to the loopback HTTPS port."""
    import ssl

    from provisioner import authority

    cloud.lbs.ca_dir = tmp_path / "ca"
    issued = authority.server_cert(authority.server_names("localhost"), cloud.lbs.ca_dir)
    acm = _client(endpoint, "acm")
    cert_arn = acm.import_certificate(Certificate=issued.cert_pem, PrivateKey=issued.key_pem)[
        "CertificateArn"
    ]
    https = cloud.elb.create_listener(
        LoadBalancerArn=cloud.lb_arn,
        Protocol="HTTPS",
        Port=443,
        Certificates=[{"CertificateArn": cert_arn}],
        DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}],
    )["Listeners"][0]["ListenerArn"]
    rule = cloud.elb.create_rule(
        ListenerArn=https,
        Priority=10,
        Conditions=[{"Field": "host-header", "Values": ["shop.localhost"]}],
        Actions=[{"Type": "forward", "TargetGroupArn": cloud.web}],
    )["Rules"][0]["RuleArn"]
    cloud.elb.modify_listener(
        ListenerArn=cloud.listener,
        DefaultActions=[
            {
                "Type": "redirect",
                "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"},
            }
        ],
    )
    cloud.register(cloud.web, backends["tls1"])
    context = ssl.create_default_context(cafile=str(authority.ca_cert_path(cloud.lbs.ca_dir)))
    deadline = time.monotonic() + 10
    port, answer = 0, ""
    while time.monotonic() < deadline:
        urls = [ln["local_url"] for lb in cloud.lbs.status() for ln in lb["listeners"]]
        served = [u for u in urls if u and u.startswith("https://")]
        if served:
            port = int(served[0].rsplit(":", 1)[1])
            with contextlib.suppress(OSError):
                conn = http.client.HTTPSConnection("shop.localhost", port, context=context)
                conn.sock = context.wrap_socket(
                    socket.create_connection(("127.0.0.1", port), timeout=5),
                    server_hostname="shop.localhost",
                )
                conn.request("GET", "/x")
                resp = conn.getresponse()
                answer = f"{resp.status} {resp.read().decode()}"
                conn.close()
                if answer.startswith("200 tls1 "):
                    break
        time.sleep(0.1)
    assert answer == f"200 tls1 shop.localhost:{port}\n"
    # The HTTP listener's redirect reaches HAProxy in its own sync: wait for it as above.
    deadline = time.monotonic() + 10
    while True:
        conn2 = http.client.HTTPConnection("127.0.0.1", cloud.port, timeout=5)
        conn2.request("GET", "/a/b?c=1", headers={"Host": "shop.localhost"})
        resp = conn2.getresponse()
        conn2.close()
        if resp.status == 301 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert resp.status == 301
    assert resp.getheader("Location") == f"https://shop.localhost:{port}/a/b?c=1"
    # The app's host certificate goes with its rule.
    host_pem = cloud.lbs.state_dir / "tls" / "host-shop.localhost.pem"
    assert host_pem.exists()
    cloud.elb.delete_rule(RuleArn=rule)
    deadline = time.monotonic() + 5
    while host_pem.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not host_pem.exists()


def test_sni_serves_imported_certificates_with_their_chain(
    cloud: Cloud, backends: dict[str, Backend], endpoint: str, tmp_path: Path
) -> None:
    """A listener's extra certificates (add_listener_certificates) are served by SNI with the
    chain imported beside them, the key taken from ACM; removed, the default comes back."""
    from provisioner import authority

    cloud.lbs.ca_dir = tmp_path / "ca"
    default = authority.server_cert(authority.server_names("localhost"), cloud.lbs.ca_dir)
    acm = _client(endpoint, "acm")
    default_arn = acm.import_certificate(Certificate=default.cert_pem, PrivateKey=default.key_pem)[
        "CertificateArn"
    ]
    own = user_cert(tmp_path / "user", ["shop.example.test"])
    extra_arn = acm.import_certificate(
        Certificate=own.leaf, PrivateKey=own.key, CertificateChain=own.chain
    )["CertificateArn"]
    https = cloud.elb.create_listener(
        LoadBalancerArn=cloud.lb_arn,
        Protocol="HTTPS",
        Port=8443,
        Certificates=[{"CertificateArn": default_arn}],
        DefaultActions=[{"Type": "forward", "TargetGroupArn": cloud.web}],
    )["Listeners"][0]["ListenerArn"]
    cloud.register(cloud.web, backends["sni"])
    cloud.elb.add_listener_certificates(
        ListenerArn=https, Certificates=[{"CertificateArn": extra_arn}]
    )

    def port() -> int:
        for lb in cloud.lbs.status():
            for ln in lb["listeners"]:
                if ln["arn"] == https and ln.get("local_url"):
                    return int(ln["local_url"].rsplit(":", 1)[1].rstrip("/"))
        return 0

    deadline = time.monotonic() + 15
    answer = ""
    while time.monotonic() < deadline and not answer.startswith("200 sni"):
        time.sleep(0.2)
        answer = tls_get(port(), "shop.example.test", own.root) if port() else ""
    assert answer.startswith("200 sni ")
    cloud.elb.remove_listener_certificates(
        ListenerArn=https, Certificates=[{"CertificateArn": extra_arn}]
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and answer.startswith("200"):
        time.sleep(0.2)
        answer = tls_get(port(), "shop.example.test", own.root)
    assert "CERTIFICATE_VERIFY_FAILED" in answer  # the local CA's default, not the user's


def test_a_target_change_reads_only_its_target_group(
    endpoint: str, backends: dict[str, Backend], tmp_path: Path
) -> None:
    """sync_targets (the daemon's path when only targets changed): one describe_target_health
    of the changed target group, the target added through the runtime API and served, then
    drained when deregistered; a target group it never read sends it to a full sync."""
    elb, ec2 = _client(endpoint, "elbv2"), _client(endpoint, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.30.{i}.0/24", AvailabilityZone=zone)["Subnet"][
            "SubnetId"
        ]
        for i, zone in enumerate(("us-east-1a", "us-east-1b"))
    ]
    lb = elb.create_load_balancer(Name="lb-fast", Subnets=subnets)["LoadBalancers"][0]
    tg = elb.create_target_group(
        Name="web-fast",
        Protocol="HTTP",
        Port=80,
        VpcId=vpc,
        TargetType="ip",
        HealthCheckPath="/health",
        HealthCheckIntervalSeconds=5,
        HealthyThresholdCount=2,
    )["TargetGroups"][0]["TargetGroupArn"]
    elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
    )
    lbs = LoadBalancers(elb, tmp_path / "lb", port_base=PORT_BASE + 60)
    try:
        lbs.sync()
        port = int(lbs.status()[0]["listeners"][0]["local_url"].rsplit(":", 1)[1])
        calls: list[str] = []
        elb.meta.events.register("before-call", lambda model, **_: calls.append(model.name))
        elb.register_targets(TargetGroupArn=tg, Targets=[backends["a"].target])
        calls.clear()
        lbs.sync_targets({tg})
        assert calls == ["DescribeTargetHealth"]
        wait_for(port, "any.test", "a")
        elb.deregister_targets(TargetGroupArn=tg, Targets=[backends["a"].target])
        lbs.sync_targets({tg})
        # Idle, it was drained and is deleted at once, or at the next drain tick when the
        # router still held an idle keep-alive connection to it (closed by the drain).
        deadline = time.monotonic() + 2
        while lbs.draining and time.monotonic() < deadline:
            lbs.drain_tick()
            time.sleep(0.05)
        stat = parse_stat(lbs.show_stat())
        assert [srv for be, srv in stat if be == "tg-web-fast"] == ["BACKEND"]
        assert get(port, "any.test")[0] == 503
        calls.clear()
        lbs.sync_targets({"arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/other/1"})
        assert "DescribeLoadBalancers" in calls  # unknown: everything read again
    finally:
        lbs.close()
