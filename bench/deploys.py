"""Platform figures on the local cloud: deploys, scaling, the router, failed requests, SSH.

Every figure is measured from the outside, as a user sees it: the time from a command's start
until every web dyno of the new state answers through the router.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.routerload import latency, summary

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "python"


def cli(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "provisioner", "-t", "local", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"dynoform {' '.join(args)}: {result.stderr.strip()[-600:]}")
    return result


def cli_json(*args: str) -> Any:
    return json.loads(cli(*args, "--json").stdout)


@dataclass(frozen=True)
class Router:
    host: str
    port: int
    scheme: str = "https"

    @classmethod
    def of(cls, app: str) -> Router:
        parts = urlsplit(cli_json("apps:info", "-a", app)["web_url"])
        return cls(str(parts.hostname), int(parts.port or 443), parts.scheme)

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        from provisioner.localcloud import ca

        return ca.router_connection(self.host, self.port, self.scheme, timeout)

    def get(self, path: str = "/json", timeout: float = 3.0) -> tuple[int, bytes]:
        conn = self.connect(timeout)
        try:
            conn.request("GET", path, headers={"Host": self.host})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


@dataclass
class Session:
    """One keep-alive client connection to the router, as a browser holds it (the router
    balances each request, not each connection); opened again after an error or a close."""

    router: Router
    timeout: float = 3.0
    _conn: http.client.HTTPConnection | None = None

    def request(self, method: str = "GET", path: str = "/json") -> tuple[int, bytes]:
        if self._conn is None:
            self._conn = self.router.connect(self.timeout)
        body = b"" if method == "POST" else None
        try:
            self._conn.request(method, path, body=body, headers={"Host": self.router.host})
            response = self._conn.getresponse()
            status, data = response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if response.will_close:
            self.close()
        return status, data

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# How often `serving` asks. Each look is one request on a kept HTTPS connection.
PROBE_EVERY_S = 0.005


def serving(
    router: Router, release: str, dynos: set[str], started: float, limit: float = 120
) -> float:
    """Seconds from `started` until every dyno in `dynos` has answered with `release`.

    One keep-alive HTTPS connection (Session), a look every PROBE_EVERY_S. (A new TLS
    connection every 5 ms, as before, cost the machine's two cores ~100 handshakes a second
    during the very deploy it timed: the deploy took ~0.07 s longer, n=4 alternated. A look
    every 20 ms on a kept connection added up to ~20 ms of waiting per dyno to the figure.)"""
    seen: set[str] = set()
    deadline = time.monotonic() + limit
    session = Session(router, timeout=1.0)
    try:
        while time.monotonic() < deadline:
            try:
                status, body = session.request()
            except (OSError, http.client.HTTPException):
                time.sleep(PROBE_EVERY_S)
                continue
            if status == 200:
                data = json.loads(body)
                if data["release"] == release and data["dyno"] in dynos:
                    seen.add(data["dyno"])
                    if seen == dynos:
                        return time.monotonic() - started
            time.sleep(PROBE_EVERY_S)
    finally:
        session.close()
    raise RuntimeError(f"{sorted(dynos - seen)} never served {release}")


def next_release(app: str) -> str:
    releases = cli_json("releases", "-a", app)
    return f"v{(releases[0]['version'] if releases else 0) + 1}"


def fresh_source(tag: str) -> Path:
    """A copy of the python example with a changed file: a new slug, unchanged dependencies."""
    work = Path(tempfile.mkdtemp(prefix="dynoform-bench-"))
    target = work / "app"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("__pycache__", ".venv"))
    (target / "BENCH_MARK").write_text(tag + "\n")
    return target


@dataclass
class Deploy:
    seconds: float
    cli_rss_mb: float
    cli_cpu_s: float = 0.0  # the deploy command's own user + system CPU
    hosts_cpu: dict[str, dict[str, float]] = field(default_factory=dict)  # host -> kind -> s
    phases: dict[str, float] = field(default_factory=dict)  # progress line -> seconds to next
    build_host: str = ""  # the host the build ran on ("building APP on i-...")


def timed_deploy(app: str, web: int) -> Deploy:
    """Deploy a changed source; time until every web dyno serves the new release. Also the
    CPU the deploy took on each host and in the CLI, and its progress lines' timing (-v)."""
    from bench import hostcpu

    release = next_release(app)
    source = fresh_source(secrets.token_hex(4))
    router = Router.of(app) if cli_json("apps:info", "-a", app)["web_url"] else None
    before_hosts = hostcpu.snapshot_all()
    before_cli = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "provisioner",
            "-t",
            "local",
            "-v",
            "deploy",
            "-a",
            app,
            str(source),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        router = router or _wait_router(app)
        seconds = serving(router, release, {f"web.{i}" for i in range(1, web + 1)}, started)
    finally:
        _, stderr = proc.communicate(timeout=900)
        shutil.rmtree(source.parent, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"deploy failed: {stderr[-600:]}")
    after_cli = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after_cli.ru_utime + after_cli.ru_stime) - (before_cli.ru_utime + before_cli.ru_stime)
    return Deploy(
        seconds,
        after_cli.ru_maxrss / 1024,
        round(cpu, 3),
        hostcpu.usage_all(before_hosts, hostcpu.snapshot_all()),
        phases(stderr),
        m[1] if (m := re.search(r"building \S+ on (i-[0-9a-f]+)", stderr)) else "",
    )


_PROGRESS = re.compile(r"^\[\s*([\d.]+)s\] (.*)$")


def phases(stderr: str) -> dict[str, float]:
    """A `-v` command's progress lines -> seconds from each to the next, summed by the line's
    words without dyno names, numbers or what follows a colon ("starting web.1, web.2" and
    "starting web.3" are both "starting")."""
    marks = [(float(m[1]), m[2]) for line in stderr.splitlines() if (m := _PROGRESS.match(line))]
    out: dict[str, float] = {}
    for (at, text), (then, _) in zip(marks, marks[1:], strict=False):
        key = phase_key(text)
        out[key] = round(out.get(key, 0.0) + then - at, 3)
    return out


def phase_key(text: str) -> str:
    text = text.split(":", 1)[0]
    text = re.sub(r"\b[a-z]+\.\d+\b,?", "", text)  # dyno names
    text = re.sub(r"\(.*?\)|[\w.-]*\d[\w.-]*", "", text)  # addresses, ids, versions
    return " ".join(text.split()[:5]) or "-"


def _wait_router(app: str) -> Router:
    """The first deploy's router address, as soon as the app's rule exists. Asked in this
    process: a `dynoform apps:info` per look took 0.5-1 s each (more on a busy machine), and
    the cold figure counted them."""
    from botocore.exceptions import ClientError

    from provisioner.context import Context
    from provisioner.errors import DynoformError
    from provisioner.ops import router
    from provisioner.targets import LOCAL_TARGET

    deadline = time.monotonic() + 300
    with Context.open(LOCAL_TARGET) as ctx:
        while time.monotonic() < deadline:
            try:
                url = router.web_url(ctx, app)
            except (DynoformError, ClientError):  # the rule is being made
                url = None
            if url:
                parts = urlsplit(url)
                return Router(str(parts.hostname), int(parts.port or 443), parts.scheme)
            time.sleep(0.05)
    raise RuntimeError("the app never got a web URL")


def ensure_hosts(count: int) -> list[str]:
    """At least `count` running hosts; returns the ids this benchmark added."""
    cli("platform:init")
    have = [h for h in cli_json("hosts") if h["state"] == "running" and h["bootstrapped"]]
    missing = count - len(have)
    if missing <= 0:
        return []
    before = {h["id"] for h in cli_json("hosts")}
    cli("hosts:add", "--count", str(missing))
    return [h["id"] for h in cli_json("hosts") if h["id"] not in before]


def new_app() -> str:
    name = f"bench-{secrets.token_hex(3)}"
    cli("apps:create", name, "--no-remote")
    return name


def destroy(app: str) -> None:
    cli("apps:destroy", "-a", app, "--confirm", app, check=False)


# --- load ----------------------------------------------------------------------------------


@dataclass
class Load:
    """Requests at about `rate` a second through the router, counting the failed ones: each on
    a connection of its own, or (`keep_alive`) all on one client connection, so that all but
    a connection's first go to a dyno over the router's pooled connections; with
    `method="POST"`, requests the router never sends twice."""

    router: Router
    rate: float = 20.0
    keep_alive: bool = False
    method: str = "GET"
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _session: Session | None = None

    def run(self, action: Callable[[], object]) -> dict[str, Any]:
        self.start()
        try:
            action()
            time.sleep(1.0)
        finally:
            result = self.stop()
        return result

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        return {"requests": self.ok + self.failed, "failed": self.failed, "errors": self.errors[:3]}

    def _loop(self) -> None:
        end = time.monotonic() + 600
        while not self._stop.is_set() and time.monotonic() < end:
            started = time.monotonic()
            try:
                status = self._request()
                if status == 200:
                    self.ok += 1
                else:
                    self.failed += 1
                    self.errors.append(f"HTTP {status}")
            except (OSError, http.client.HTTPException) as exc:
                self.failed += 1
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(max(0.0, 1 / self.rate - (time.monotonic() - started)))

    def _request(self) -> int:
        if not self.keep_alive:
            return self.router.get()[0]
        self._session = self._session or Session(self.router)
        return self._session.request(self.method)[0]


# --- the figures -----------------------------------------------------------------------------


def deploys(app: str, runs: int) -> dict[str, Any]:
    """The cold deploy, then `runs` warm ones each on a settled platform, then `runs` warm
    ones back to back (each starting as the one before returns)."""
    cli("ps:scale", "web=2", "-a", app) if cli_json("apps:info", "-a", app)["release"] else None
    first = timed_deploy(app, 1)  # the empty build cache: cold
    cli("ps:scale", "web=2", "-a", app)
    warm = [settled_deploy(app, 2) for _ in range(runs)]
    chained = [timed_deploy(app, 2) for _ in range(runs)]
    return {
        "deploy_cold_s": summary([first.seconds]),
        "deploy_warm_s": summary([w.seconds for w in warm]),
        "deploy_warm_back_to_back_s": summary([w.seconds for w in chained]),
        "deploy_cli_max_rss_mb": round(max(w.cli_rss_mb for w in [first, *warm]), 1),
    }


def settled_deploy(app: str, web: int) -> Deploy:
    """A timed deploy once the deploy before it has finished on the hosts too: the old
    release's dynos drained and stopped (5 s after that deploy returned), their files gone and
    systemd reloaded. Back to back, that stop lands on the hosts during a later deploy."""
    settle(app)
    return timed_deploy(app, web)


def settle(app: str, limit: float = 30) -> None:
    """Wait until `ps` lists only the current release's dynos, then until the machine is
    quiet (the stop's `daemon-reload` on the hosts, and whatever a new platform's hosts and
    controller still do in their first minutes)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        release = f"v{cli_json('apps:info', '-a', app)['release']}"
        if all(d["release"] == release for d in cli_json("ps", "-a", app)):
            break
        time.sleep(1.0)
    quiet()


def quiet(busy_cores: float = 0.3, window: float = 1.0, limit: float = 60) -> None:
    """Wait (at most `limit` s) for a `window` in which the machine's CPUs, all of them
    together, were busy less than `busy_cores` on average."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = _cpu_ticks()
        time.sleep(window)
        after = _cpu_ticks()
        busy, total = after[0] - before[0], after[1] - before[1]
        if total and busy / total * (os.cpu_count() or 1) < busy_cores:
            return


def _cpu_ticks() -> tuple[int, int]:
    """(busy, all) jiffies of the machine's CPUs, from /proc/stat: user to steal (guest time is
    counted in user already)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def deploy_vs_hosts(app: str, counts: list[int], runs: int) -> dict[str, Any]:
    """Warm deploy time with one web dyno on each of 1, 2, 4, 8 hosts; next to it the work the
    platform does per host (CPU on the hosts used, the dynos' own apart) and in the CLI, and
    the CLI's progress phases, to show which part of the time grows with the hosts."""
    result = {}
    for count in counts:
        cli("ps:scale", f"web={count}", "worker=0", "-a", app)
        ps = cli_json("ps", "-a", app)
        hosts = {r["host"] for r in ps if r["type"] == "web" and r["state"] == "up"}
        done = [settled_deploy(app, count) for _ in range(runs)]
        result[str(count)] = summary([d.seconds for d in done]) | {
            "hosts_used": len(hosts),
            "cli_cpu_s": round(statistics.median(d.cli_cpu_s for d in done), 3),
            "per_host_cpu_s": per_host_cpu(done, hosts),
            "phases_s": {
                key: round(statistics.median(d.phases.get(key, 0.0) for d in done), 3)
                for key in dict.fromkeys(k for d in done for k in d.phases)
            },
        }
    return {"deploy_vs_hosts": result} | growing_phases(result)


def per_host_cpu(done: list[Deploy], hosts: set[str]) -> dict[str, float]:
    """Median over deploys of the mean CPU seconds per used host, by kind; `platform` over
    the used hosts the build did not run on (with one host: that host, build included), and
    the build host's platform CPU on its own."""
    out = {}
    for kind in ("platform", "dyno", "controller"):
        means = []
        for d in done:
            used = _machines(hosts)
            if kind == "platform" and len(used - _machines({d.build_host})) > 0:
                used -= _machines({d.build_host})
            cpu = [c[kind] for name, c in d.hosts_cpu.items() if name in used]
            means.append(sum(cpu) / len(cpu) if cpu else 0.0)
        out[kind] = round(statistics.median(means), 3)
    build = [d.hosts_cpu.get(f"df-{d.build_host.removeprefix('i-')}", {}) for d in done]
    out["build_host_platform"] = round(statistics.median(b.get("platform", 0.0) for b in build), 3)
    return out


def _machines(hosts: set[str]) -> set[str]:
    """Host ids -> the local cloud's machine names (df-<id without i->)."""
    return {f"df-{h.removeprefix('i-')}" for h in hosts if h}


def growing_phases(curve: dict[str, Any], most: int = 4) -> dict[str, Any]:
    """The deploy's progress phases that take longer on the most hosts than on one."""
    counts = sorted(curve, key=int)
    if len(counts) < 2:
        return {}
    first, last = curve[counts[0]]["phases_s"], curve[counts[-1]]["phases_s"]
    grew = {key: round(last[key] - first.get(key, 0.0), 3) for key in last}
    top = sorted(grew.items(), key=lambda kv: -kv[1])[:most]
    return {
        "deploy_hosts_ratio": round(curve[counts[-1]]["median"] / curve[counts[0]]["median"], 2),
        "deploy_phases_growing_s": {
            f"{key} ({counts[0]}->{counts[-1]} hosts)": delta for key, delta in top if delta > 0
        },
    }


def scale(app: str, runs: int) -> dict[str, Any]:
    router = Router.of(app)
    release = f"v{cli_json('apps:info', '-a', app)['release']}"
    times = []
    for _ in range(runs):
        cli("ps:scale", "web=1", "worker=0", "-a", app)
        time.sleep(6)  # the scaled-down dynos drain and stop
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "provisioner", "-t", "local", "ps:scale", "web=4", "-a", app],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        times.append(serving(router, release, {f"web.{i}" for i in range(1, 5)}, started))
        proc.wait(timeout=300)
    return {"scale_s": summary(times)}


def failed_requests(app: str) -> dict[str, Any]:
    router = Router.of(app)
    cli("ps:scale", "web=2", "-a", app)
    figures = {}
    figures["deploy"] = loads(router, lambda: cli("deploy", "-a", app, str(fresh_source("load"))))
    figures["rollback"] = loads(router, lambda: cli("releases:rollback", "-a", app))
    figures["restart"] = loads(router, lambda: cli("ps:restart", "web", "-a", app))
    figures["scale_down"] = loads(router, lambda: cli("ps:scale", "web=1", "-a", app))
    return {"failed_requests": figures}


def loads(router: Router, action: Callable[[], object]) -> dict[str, Any]:
    """GETs, each on a new connection, and beside them POSTs on one keep-alive connection
    (the router's pooled connections to the dynos), while `action` runs."""
    kept = Load(router, rate=10.0, keep_alive=True, method="POST")
    kept.start()
    try:
        got = Load(router).run(action)
    finally:
        posts = kept.stop()
    return got | {"keep_alive_posts": posts}


def router_overhead(app: str, seconds: int, rounds: int = 3) -> dict[str, Any]:
    """wrk against one dyno: directly over HTTP, through the router over HTTP (the app set to
    serve plain HTTP), through the router over HTTPS, and through a bare HAProxy hop (see
    bare_hop); alternated `rounds` times, medians."""
    if shutil.which("wrk") is None:
        return {"router_overhead": "wrk is not installed (apt-get install wrk)"}
    cli("ps:scale", "web=1", "worker=0", "-a", app)
    cli("apps:http", "--allow", "-a", app)
    time.sleep(6)
    router = Router.of(app)
    web = next(r for r in cli_json("ps", "-a", app) if r["name"] == "web.1" and r["state"] == "up")
    address = next(h["private_ip"] for h in cli_json("hosts") if h["id"] == web["host"])
    urls = {
        "router_http": (f"http://127.0.0.1:{http_port(router.port)}/json", router.host),
        "router_https": (f"{router.scheme}://127.0.0.1:{router.port}/json", router.host),
        "direct_http": (f"http://{address}:{web['port']}/json", None),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
    waited = 0.0
    bare = bare_hop(address, int(web["port"]))
    urls["bare_hop_http"] = (f"http://127.0.0.1:{bare.port}/json", None)
    runs["bare_hop_http"] = []
    try:
        for _ in range(rounds):
            for name, (url, host) in urls.items():
                # gunicorn closes every connection: each request is a new connection from
                # this machine to the dyno, by wrk (direct) or by the router. A direct run
                # leaves a TIME_WAIT socket per request, which starves the router's connects
                # to the same address and port if it runs next: each run waits for a clean
                # slate (the router leaves none: it resets).
                waited += settle_time_wait(address, int(web["port"]))
                runs[name].append(wrk(url, host, seconds))
    finally:
        bare.close()
        cli("apps:http", "--redirect", "-a", app, check=False)
    got = {
        name: {k: round(statistics.median(r[k] for r in rs), 3) for k in rs[0]}
        for name, rs in runs.items()
    }
    direct, http_, https = got["direct_http"], got["router_http"], got["router_https"]
    hop = got["bare_hop_http"]
    return {
        "router_overhead": got
        | {
            "waited_for_time_wait_s": round(waited, 1),
            "rounds": rounds,
            "rps_ratio": round(http_["rps"] / direct["rps"], 3) if direct["rps"] else None,
            "p50_added_ms": round(http_["p50_ms"] - direct["p50_ms"], 3),
            "https_rps_ratio": round(https["rps"] / http_["rps"], 3) if http_["rps"] else None,
            "https_p50_added_ms": round(https["p50_ms"] - http_["p50_ms"], 3),
            "bare_hop_rps_ratio": round(hop["rps"] / direct["rps"], 3) if direct["rps"] else None,
            "bare_hop_p50_added_ms": round(hop["p50_ms"] - direct["p50_ms"], 3),
        }
    }


# The least a proxy in the path costs on these cores: the same HAProxy binary and thread count
# as the router, keep-alive on both sides, nothing else (no router headers, no router line, no
# rules). What the router keeps against it is what its features cost; what it loses against
# direct is the hop itself (a second TCP connection per request, both ends on the same cores).
BARE_HOP_CFG = """global
    nbthread 1
defaults
    mode http
    timeout connect 500ms
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    http-reuse safe
frontend bare
    bind 127.0.0.1:{port}
    default_backend dyno
backend dyno
    server dyno {address}:{dyno_port}
"""


class BareHop:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, directory: Path) -> None:
        self.proc, self.port, self.directory = proc, port, directory

    def close(self) -> None:
        self.proc.terminate()  # ours: started by bare_hop
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def bare_hop(address: str, dyno_port: int) -> BareHop:
    """A bare HAProxy (BARE_HOP_CFG) on a free loopback port in front of address:dyno_port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    directory = Path(tempfile.mkdtemp(prefix="dynoform-bare-hop-"))
    config = directory / "haproxy.cfg"
    config.write_text(BARE_HOP_CFG.format(port=port, address=address, dyno_port=dyno_port))
    argv = ["haproxy", "-db", "-f", str(config)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hop = BareHop(proc, port, directory)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return hop
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                hop.close()
                raise RuntimeError("the bare HAProxy hop did not start") from None
            time.sleep(0.05)


def http_port(https_port: int, config: Path = Path("/var/lib/dynoform/local/haproxy.cfg")) -> int:
    """The local port of the HTTP listener of the load balancer whose HTTPS listener is on
    `https_port` (from the local router's config: frontend lb-NAME-443 and lb-NAME-80)."""
    binds = dict(
        re.findall(
            r"^frontend (\S+)\n(?:#.*\n)?\s+bind 127\.0\.0\.1:(\d+)", config.read_text(), re.M
        )
    )
    https = next(name for name, port in binds.items() if int(port) == https_port)
    return int(binds[https.rsplit("-", 1)[0] + "-80"])


def settle_time_wait(address: str, port: int, most: int = 2000, limit: float = 75) -> float:
    """Wait until fewer than `most` TIME_WAIT sockets go to address:port; seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        out = subprocess.run(
            ["ss", "-Htan", "state", "time-wait", "dst", f"{address}:{port}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        if out.count("\n") < most:
            break
        time.sleep(1)
    return time.monotonic() - started


def wrk(url: str, host: str | None, seconds: int) -> dict[str, float]:
    argv = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency"]
    if host:
        argv += ["-H", f"Host: {host}"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50_ms": latency(out, "50%"),
        "p99_ms": latency(out, "99%"),
        "non_2xx": float(m.group(1))
        if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out))
        else 0.0,
    }


def ssh_fanout(counts: list[int], runs: int) -> dict[str, Any]:
    """One command on N hosts over the pooled SSH edge (connections warm), and one command alone."""
    from provisioner.context import Context
    from provisioner.remote.fanout import fan_out
    from provisioner.targets import LOCAL_TARGET

    with Context.open(LOCAL_TARGET) as ctx:
        fleet = ctx.fleet()
        hosts = [h for h in fleet.hosts() if h.state == "running"]
        conns = {h.id: fleet.connect(h) for h in hosts}
        single = []
        first = next(iter(conns.values()))
        for _ in range(50):
            started = time.perf_counter()
            first.run(["true"], timeout=10)
            single.append((time.perf_counter() - started) * 1000)
        result: dict[str, Any] = {"ssh_reused_command_ms": summary(single)}
        curve = {}
        for count in counts:
            chosen = hosts[:count]
            if len(chosen) < count:
                continue
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                outcomes = fan_out(chosen, lambda h: conns[h.id].run(["true"], timeout=10))
                assert all(o.ok for o in outcomes)
                times.append((time.perf_counter() - started) * 1000)
            curve[str(count)] = summary(times)
        result["ssh_fanout_ms"] = curve
    return result
