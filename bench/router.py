"""Figures for the local cloud's load balancers (moto ELBv2 + HAProxy), printed as text.

    python bench/router.py [--rounds 5] [--requests 400]

Runs entirely on loopback: a moto server in a thread, Python http.servers as ip targets on
127.0.0.x, LoadBalancers.sync() every 0.5 s as the local-cloud daemon calls it. Prints:
seconds from register_targets to the first request served by the new target (median, max),
seconds from create_rule (a reload) to the rule serving, requests and failures while targets
churn, requests and failures across reloads (keep-alive and fresh connections), and how long
one sync() takes.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from provisioner.localcloud.lb import LoadBalancers

PORT_BASE = 28700


class Backend:
    def __init__(self, name: str, address: str) -> None:
        self.name = name
        self.address = address
        name_bytes = name.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                body = name_bytes + b"\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass

        self.server = Server((address, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def target(self) -> dict[str, Any]:
        return {"Id": self.address, "Port": self.port}


def get(port: int, host: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read().decode().strip()
    finally:
        conn.close()


def until(port: int, host: str, name: str, timeout: float = 10) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if get(port, host) == (200, name):
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.01)
    raise SystemExit(f"{host} never reached {name}")


class Load:
    """Clients on fresh and keep-alive connections, counting failures."""

    def __init__(self, port: int, host: str, total: int) -> None:
        self.port, self.host, self.total = port, host, total
        self.ok = 0
        self.failures: list[str] = []
        self.threads = [
            threading.Thread(target=self._fresh, args=(total // 2,)),
            threading.Thread(target=self._keep_alive, args=(total - total // 2,)),
        ]

    def start(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def join(self) -> None:
        for t in self.threads:
            t.join()

    def _fresh(self, n: int) -> None:
        for _ in range(n):
            try:
                status, _ = get(self.port, self.host)
                self._count(status)
            except OSError as exc:
                self.failures.append(repr(exc))
            time.sleep(0.01)

    def _keep_alive(self, n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        for _ in range(n):
            try:
                conn.request("GET", "/", headers={"Host": self.host})
                resp = conn.getresponse()
                resp.read()
                self._count(resp.status)
                if resp.will_close:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            time.sleep(0.01)
        conn.close()

    def _count(self, status: int) -> None:
        if status == 200:
            self.ok += 1
        else:
            self.failures.append(str(status))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
    kw = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "bench",
        "aws_secret_access_key": "bench",
    }
    ec2, elb = boto3.client("ec2", **kw), boto3.client("elbv2", **kw)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=z)["Subnet"][
            "SubnetId"
        ]
        for i, z in enumerate(("us-east-1a", "us-east-1b"))
    ]
    lb = elb.create_load_balancer(Name="bench", Subnets=subnets)["LoadBalancers"][0]
    tg = elb.create_target_group(
        Name="bench-web",
        Protocol="HTTP",
        Port=80,
        VpcId=vpc,
        TargetType="ip",
        HealthCheckPath="/",
        HealthCheckIntervalSeconds=5,
        HealthyThresholdCount=2,
    )["TargetGroups"][0]["TargetGroupArn"]
    elb.modify_target_group_attributes(
        TargetGroupArn=tg,
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "5"}],
    )
    listener = elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
    )["Listeners"][0]["ListenerArn"]

    state = Path(tempfile.mkdtemp(prefix="dynoform-bench-router-"))
    lbs = LoadBalancers(elb, state, port_base=PORT_BASE)
    stop = threading.Event()
    sync_times: list[float] = []

    def loop() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            lbs.sync()
            sync_times.append(time.perf_counter() - t)
            stop.wait(0.5)

    syncer = threading.Thread(target=loop, daemon=True)
    syncer.start()
    backends = [Backend(f"b{i}", f"127.0.1.{i + 2}") for i in range(args.rounds + 2)]
    try:
        while not lbs.haproxy.running:
            time.sleep(0.05)
        port = int(lbs.status()[0]["listeners"][0]["local_url"].rsplit(":", 1)[1])
        elb.register_targets(TargetGroupArn=tg, Targets=[backends[0].target])
        until(port, "web.test", "b0")

        # 1. register -> serving, each round replacing the serving target (a deploy).
        register_s = []
        churn = Load(port, "web.test", args.requests).start()
        for i in range(1, args.rounds + 1):
            t = time.monotonic()
            elb.register_targets(TargetGroupArn=tg, Targets=[backends[i].target])
            waited = until(port, "web.test", f"b{i}")
            register_s.append(time.monotonic() - t)
            del waited
            elb.deregister_targets(TargetGroupArn=tg, Targets=[backends[i - 1].target])
            time.sleep(0.6)
        churn.join()

        # 2. structural change (new rule) -> serving, under load.
        other = elb.create_target_group(
            Name="bench-api", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="ip"
        )["TargetGroups"][0]["TargetGroupArn"]
        api = backends[args.rounds + 1]
        elb.register_targets(TargetGroupArn=other, Targets=[api.target])
        time.sleep(2.5)  # its backend is loaded and its target healthy before the rule comes
        reload_load = Load(port, "web.test", args.requests // 2).start()
        t = time.monotonic()
        elb.create_rule(
            ListenerArn=listener,
            Priority=1,
            Conditions=[{"Field": "host-header", "Values": ["api.test"]}],
            Actions=[{"Type": "forward", "TargetGroupArn": other}],
        )
        until(port, "api.test", api.name)
        rule_s = time.monotonic() - t
        reload_load.join()

        print("local load balancer (moto ELBv2 -> HAProxy 2.6), sync every 0.5 s")
        print(
            f"  register_targets -> new target serving: median {statistics.median(register_s):.2f} s,"
            f" max {max(register_s):.2f} s over {len(register_s)} rounds"
        )
        print(f"  create_rule (reload) -> rule serving: {rule_s:.2f} s")
        print(
            f"  target churn ({args.rounds} register+deregister): {churn.ok + len(churn.failures)}"
            f" requests, {len(churn.failures)} failed {churn.failures[:3]}"
        )
        print(
            f"  across the reload: {reload_load.ok + len(reload_load.failures)} requests,"
            f" {len(reload_load.failures)} failed {reload_load.failures[:3]}"
        )
        ms = sorted(s * 1000 for s in sync_times)
        print(
            f"  sync(): median {statistics.median(ms):.1f} ms, max {ms[-1]:.1f} ms (a reload)"
            f" over {len(ms)} calls (1 ALB, 2 target groups)"
        )
    finally:
        stop.set()
        syncer.join(timeout=10)
        lbs.close()
        moto.stop()


if __name__ == "__main__":
    main()
