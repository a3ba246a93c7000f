"""The local cloud's load-balancer data plane, edge part: moto's ELBv2 state -> a real HAProxy.

One HAProxy (master-worker mode) serves every HTTP and HTTPS listener of every ALB in moto,
each on its own loopback port; HTTPS with the certificates ACM holds for it (keys from the
local CA, see ca.py). `sync()` reads ELBv2, asks haproxy.py what changed and applies it: target
changes through the runtime API on the stats socket (no reload, nothing dropped), structural
changes by rewriting the config and reloading (SIGUSR2 to the master: the old worker finishes
its in-flight requests). The config file is rewritten on every change so a reload keeps state.

Files in state_dir: haproxy.cfg, haproxy.sock (runtime API), haproxy.pid (master),
haproxy.state (server states kept across reloads), ports.json (listener ARN -> local port,
kept across restarts), tls/ (PEM files for HTTPS, 0600), router.log (one Heroku-like line per request), haproxy.log (HAProxy's
own notices: servers going up/down, reloads).

`publish_metrics()` does what the ALB does for CloudWatch: every request's response time goes
to moto's CloudWatch as `AWS/ApplicationELB` `TargetResponseTime`, and the requests and the
targets' responses by status class are counted (`RequestCount`, `HTTPCode_Target_2XX_Count`..),
read from router.log, so autoscaling and `dynoform metrics` read the same metrics here as on AWS.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from provisioner import authority
from provisioner.aws import metrics
from provisioner.errors import DynoformError
from provisioner.localcloud import ca, motofix
from provisioner.localcloud import haproxy as hx
from provisioner.localcloud.accesslog import LogCursor
from provisioner.localfiles import LocalCloud

log = logging.getLogger(__name__)

SOCKET_TIMEOUT = 5.0
START_TIMEOUT = 10.0
START_RETRY_SECONDS = 5.0
METRICS_BATCH = 500  # datums per PutMetricData call (CloudWatch takes up to 1000)
# How often moto's old CloudWatch values are dropped and merged: each pass reads every value
# kept. When moto kept one per request, a pass at every publish (2 s) took a fifth of a core
# for an hour after a load test; once a minute, it held this thread ~2 s (motofix item 7).
PRUNE_EVERY = 60.0
# router.log is rotated past this size: a day of benchmarks wrote 1.5 GB to it.
ROUTER_LOG_MAX = 64 << 20


def _write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _append(path: Path) -> IO[bytes]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return os.fdopen(fd, "ab")


def _appending(fd: int) -> None:
    """O_APPEND on the open file that `fd` shares with HAProxy's stdout: HAProxy sets its
    log output non-blocking with F_SETFL, which drops O_APPEND, and then it would go on
    writing at its old offset after a truncation (a hole of zeros, then the lines)."""
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)


def rotate_log(path: Path, limit: int = ROUTER_LOG_MAX, writers: Sequence[int] = ()) -> bool:
    """Past `limit` bytes, copy the log to `<name>.1` (root only, like the log) and empty it.
    HAProxy keeps the file open on its stdout, so it cannot be renamed away: its `writers`
    (our copies of its descriptors) append from then on, and the readers start again from 0
    when the file shrinks. Lines written between the copy and the truncation are lost, as
    with logrotate's copytruncate."""
    try:
        if path.stat().st_size <= limit:
            return False
    except FileNotFoundError:
        return False
    kept = path.with_name(path.name + ".1")
    partial = kept.with_name(kept.name + ".tmp")
    with (
        path.open("rb") as source,
        os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as copy,
    ):
        shutil.copyfileobj(source, copy, 1 << 20)
    os.replace(partial, kept)
    for fd in writers:
        _appending(fd)
    os.truncate(path, 0)
    return True


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _rule_hosts(rules: list[dict[str, Any]]) -> set[str]:
    hosts: set[str] = set()
    for rule in rules:
        for cond in rule.get("Conditions", ()):
            if cond.get("Field") == "host-header":
                values = cond.get("HostHeaderConfig", {}).get("Values") or cond.get("Values", [])
                hosts |= {str(v).lower() for v in values if hx.valid_host_value(str(v))}
    return hosts


class HaproxyProcess:
    """One HAProxy master process started by us, and its runtime API socket."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.config = state_dir / "haproxy.cfg"
        self.sock = state_dir / "haproxy.sock"
        self.pidfile = state_dir / "haproxy.pid"
        self.state_file = state_dir / "haproxy.state"
        self.router_log = LocalCloud(state_dir).router_log  # what `dynoform logs` reads
        self.haproxy_log = state_dir / "haproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []

    @staticmethod
    def binary() -> str:
        path = shutil.which("haproxy") or next(
            (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.path.exists(p)),
            None,
        )
        if not path:
            raise DynoformError("haproxy is not installed", "apt-get install -y haproxy")
        return path

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check(self, text: str) -> str | None:
        """None when `haproxy -c` accepts the config text, else its complaint."""
        candidate = self.state_dir / "haproxy.cfg.new"
        _write_atomic(candidate, text)
        result = subprocess.run(
            [self.binary(), "-c", "-q", "-f", str(candidate)],
            capture_output=True,
            text=True,
            check=False,
        )
        candidate.unlink(missing_ok=True)
        if result.returncode == 0:
            return None
        # `-q` may say nothing at all about a refused config: the exit code decides.
        said = (result.stderr or result.stdout).strip()
        return said or f"haproxy -c exited with {result.returncode}"

    def start(self, text: str) -> None:
        self.kill_stale()
        _write_atomic(self.config, text)
        if not self.state_file.exists():
            _write_atomic(self.state_file, "1\n")
        # Request paths may carry tokens: the logs are for root only, like the state dir.
        self._logs = [_append(self.router_log), _append(self.haproxy_log)]
        argv = [self.binary(), "-W", "-f", str(self.config), "-p", str(self.pidfile)]
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv, our own paths
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._logs[0],
            stderr=self._logs[1],
            start_new_session=True,  # our Ctrl-C is not its Ctrl-C: close() stops it
        )
        self._wait_worker(old_pid=None)

    def reload(self, text: str) -> None:
        """Seamless reload: save server states, write the config, SIGUSR2 the master."""
        assert self.proc is not None
        old_pid = self.worker_pid()
        with contextlib.suppress(OSError):
            _write_atomic(self.state_file, self.command(hx.cmd_show_servers_state()))
        _write_atomic(self.config, text)
        self.proc.send_signal(signal.SIGUSR2)
        self._wait_worker(old_pid=old_pid)

    def write_config(self, text: str) -> None:
        _write_atomic(self.config, text)

    def worker_pid(self) -> int | None:
        try:
            info = self.command("show info")
        except OSError:
            return None
        for line in info.splitlines():
            if line.startswith("Pid:"):
                return int(line.split(":", 1)[1])
        return None

    def _wait_worker(self, old_pid: int | None) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not self.running:
                raise DynoformError(
                    "HAProxy for the local load balancers exited",
                    f"see {self.haproxy_log}",
                )
            pid = self.worker_pid()
            if pid is not None and pid != old_pid:
                return
            time.sleep(0.02)
        raise DynoformError("HAProxy did not come up in time", f"see {self.haproxy_log}")

    def command(self, line: str) -> str:
        """One runtime API command line (several commands may be joined by `;`)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(SOCKET_TIMEOUT)
            conn.connect(str(self.sock))
            conn.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode(errors="replace")

    def log_writers(self) -> list[int]:
        """Our copies of the descriptors HAProxy writes router.log with (none if stopped)."""
        return [self._logs[0].fileno()] if self._logs else []

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=5)
            self.proc = None
        for fh in self._logs:
            fh.close()
        self._logs = []
        for path in (self.sock, self.pidfile):
            path.unlink(missing_ok=True)

    def kill_stale(self) -> None:
        """Stop an HAProxy a previous (crashed) run of ours left behind, found by its pid file."""
        try:
            pid = int(self.pidfile.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            return
        if not cmdline or not cmdline[0].endswith(b"haproxy"):
            return
        if str(self.config).encode() not in cmdline:
            return
        log.warning("stopping HAProxy %d left by a previous run", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class LoadBalancers:
    """Keeps one HAProxy in step with moto's ELBv2; the local-cloud daemon calls sync()."""

    def __init__(
        self,
        elbv2_client: Any,
        state_dir: Path,
        ec2_client: Any = None,
        port_base: int = hx.PORT_BASE,
        acm_client: Any = None,
        ca_dir: Path | None = None,
    ) -> None:
        self.elbv2 = elbv2_client
        self.port_base = port_base
        self._ec2 = ec2_client
        self._acm = acm_client
        # The local CA, which issues a certificate per app host under `*.localhost`.
        self.ca_dir = ca_dir or ca.ca_dir()
        self.tls_dir = Path(state_dir) / "tls"
        self._pems: dict[str, str] = {}  # certificate ARN + fingerprint -> PEM file
        self._local_wildcards: dict[str, set[str]] = {}  # PEM file -> X of its `*.X` names
        self._host_pems: dict[str, str] = {}  # host -> its own local-CA PEM file
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.haproxy = HaproxyProcess(self.state_dir)
        self.ports_file = self.state_dir / "ports.json"
        self._ports: dict[str, int] = self._load_ports()
        self._model = hx.Model()  # last model read from moto
        self._applied: hx.Model | None = None  # the model HAProxy runs
        self._key: str | None = None  # structure of the applied model
        self._config: str | None = None
        self._draining: dict[tuple[str, str], float] = {}  # (backend, server) -> deadline
        # Servers added for a newly registered target and not up yet: up on their first
        # passing check (admit). Read by the feeder's thread as well as the daemon's.
        self._fresh: set[tuple[str, str]] = set()
        self._fresh_lock = threading.Lock()
        self._bad_key: str | None = None
        self._retry_at = 0.0
        self._warned: set[str] = set()
        self._log = LogCursor(self.haproxy.router_log)  # how far router.log was published
        self._pruned = 0.0  # when moto's CloudWatch values were last pruned (time.time())
        self._raw_tgs: dict[str, dict[str, Any]] = {}  # ARN -> describe_target_groups entry

    # ------------------------------------------------------------ public

    def sync(self) -> None:
        try:
            model = self._read()
        except (BotoCoreError, ClientError) as exc:
            log.warning("load balancers: cannot read ELBv2: %s", exc)
            return
        for warning in model.warnings:
            if warning not in self._warned:
                self._warned.add(warning)
                log.warning("load balancers: %s", hx.printable(warning))
        self._take(model)

    def _take(self, model: hx.Model) -> None:
        """The model HAProxy now serves: applied (a reload or runtime API calls), then drains."""
        self._model = model
        try:
            self._apply(model)
            self._drain_tick()
        except OSError as exc:
            log.warning("load balancers: HAProxy runtime API: %s", exc)

    def sync_targets(self, arns: set[str]) -> None:
        """Only these target groups' targets changed (motofix.take_target_changes): read them
        alone and apply the change through the runtime API. One call per target group instead
        of reading all of ELBv2 (two calls per target group): with 100 apps a target change
        applied 1.6 s after its call, most of it spent reading what had not changed."""
        if self._applied is None or not self.haproxy.running or not arns <= set(self._raw_tgs):
            self.sync()
            return
        model = self._model
        try:
            for arn in sorted(arns):
                raw = self._raw_tgs[arn]
                found = self.elbv2.describe_target_health(TargetGroupArn=arn)
                descriptions = found["TargetHealthDescriptions"]
                ips = self._instance_ips([raw], {arn: descriptions})
                model = hx.with_targets(model, raw, descriptions, ips)
        except (BotoCoreError, ClientError) as exc:
            log.info("load balancers: reading targets failed (%s); reading everything", exc)
            self.sync()
            return
        self._take(model)

    @property
    def draining(self) -> bool:
        """Whether deregistered servers are still draining (drain_tick removes them)."""
        return bool(self._draining)

    def drain_tick(self) -> None:
        """Remove drained servers that are done, between syncs."""
        try:
            self._drain_tick()
        except OSError as exc:
            log.warning("load balancers: HAProxy runtime API: %s", exc)

    def status(self) -> list[dict[str, Any]]:
        model = self._model
        return [
            {
                "arn": lb.arn,
                "name": lb.name,
                "dns_name": lb.dns_name,
                "listeners": [
                    {
                        "arn": ln.arn,
                        "port": ln.port,
                        "protocol": ln.protocol,
                        "local_url": ln.local_url,
                    }
                    for ln in lb.listeners
                ],
            }
            for lb in model.load_balancers
        ]

    @property
    def model(self) -> hx.Model:
        """What the last sync() read from ELBv2 (target groups with their targets)."""
        return self._model

    def show_stat(self) -> str:
        """HAProxy's `show stat` CSV (server states, sessions), or "" when none runs.

        Newly registered targets that passed their first check are admitted first, and the
        states read again: what this returns is what HAProxy routes to."""
        if not self.haproxy.running:
            return ""
        try:
            text = self.haproxy.command(hx.cmd_show_stat())
            if self._fresh and self._admit(hx.parse_stat(text)):
                text = self.haproxy.command(hx.cmd_show_stat())
            return text
        except OSError:
            return ""

    def _admit(self, stat: Mapping[tuple[str, str], Mapping[str, str]]) -> bool:
        """Fresh servers with a passing check go up (an ALB's new target passes its healthy
        threshold of checks; here the first one admits it, rise 1). Whether any went up."""
        admitted = False
        with self._fresh_lock:
            for slot in sorted(self._fresh):
                status = stat.get(slot, {}).get("status", "")
                passed = hx.passed_once(status)
                if passed:
                    self._run(hx.cmd_admit(*slot))
                    admitted = True
                if passed or (status and not status.startswith("DOWN")):
                    # Admitted, or up (or drained) by itself. One not in `stat` may have been
                    # added since it was read: it stays (a removed one left in _apply_targets).
                    self._fresh.discard(slot)
        return admitted

    def publish_metrics(self, cloudwatch: Any) -> int:
        """Publish the response times of the requests logged since the last call (at the first
        call: from now on); returns how many requests were published."""
        lines = self._log.new_lines()
        timings = [t for t in map(hx.parse_timing, lines) if t is not None]
        answers = [a for a in map(hx.parse_answer, lines) if a is not None]
        datums = hx.metric_data(timings, self._model, metrics.dimensions)
        datums += hx.count_data(answers, self._model, metrics.dimensions)
        for i in range(0, len(datums), METRICS_BATCH):
            cloudwatch.put_metric_data(
                Namespace=metrics.NAMESPACE, MetricData=datums[i : i + METRICS_BATCH]
            )
        if time.time() - self._pruned >= PRUNE_EVERY:
            motofix.prune_metrics(time.time())
            self._pruned = time.time()
        return len(timings)

    def close(self) -> None:
        self.haproxy.stop()
        self._applied = None
        self._key = None
        self._config = None
        self._draining.clear()

    # ------------------------------------------------------------ reading moto

    def _pages(self, method: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        marker = None
        while True:
            # Large pages: the imitation of AWS's small default pages (motofix item 9) is for
            # dynoform's code, not for the local load balancer reading its state.
            args = dict(kwargs, PageSize=400, **({"Marker": marker} if marker else {}))
            page = getattr(self.elbv2, method)(**args)
            out += page.get(key, [])
            marker = page.get("NextMarker")
            if not marker:
                return out

    def _read(self) -> hx.Model:
        lbs = self._pages("describe_load_balancers", "LoadBalancers")
        listeners = {
            lb["LoadBalancerArn"]: self._pages(
                "describe_listeners", "Listeners", LoadBalancerArn=lb["LoadBalancerArn"]
            )
            for lb in lbs
            if lb.get("Type", "application") == "application"
        }
        rules = {
            ln["ListenerArn"]: self._pages("describe_rules", "Rules", ListenerArn=ln["ListenerArn"])
            for lns in listeners.values()
            for ln in lns
            if ln.get("Protocol") in ("HTTP", "HTTPS")
        }
        certificates = {
            ln["ListenerArn"]: self._listener_pems(ln, rules.get(ln["ListenerArn"], []))
            for lns in listeners.values()
            for ln in lns
            if ln.get("Protocol") == "HTTPS"
        }
        tgs = self._pages("describe_target_groups", "TargetGroups")
        attributes = {}
        targets = {}
        for tg in tgs:
            arn = tg["TargetGroupArn"]
            attributes[arn] = self.elbv2.describe_target_group_attributes(TargetGroupArn=arn)[
                "Attributes"
            ]
            targets[arn] = self.elbv2.describe_target_health(TargetGroupArn=arn)[
                "TargetHealthDescriptions"
            ]
        self._raw_tgs = {tg["TargetGroupArn"]: tg for tg in tgs}
        self._prune_host_pems({pem for pems in certificates.values() for pem in pems})
        ports = self._allocate(list(rules))
        if ports != self._ports:
            self._ports = ports
            _write_atomic(self.ports_file, json.dumps(ports, indent=1, sort_keys=True) + "\n")
        return hx.build_model(
            lbs,
            listeners,
            rules,
            tgs,
            attributes,
            targets,
            ports,
            self._instance_ips(tgs, targets),
            certificates,
        )

    # ------------------------------------------------------------ certificates

    def _listener_pems(
        self, listener: dict[str, Any], rules: list[dict[str, Any]] | None = None
    ) -> list[str]:
        """PEM files (certificate + key) for an HTTPS listener, its default certificate first;
        certificates whose key cannot be had are skipped (with a warning, once).

        A local-CA certificate for `*.localhost` is valid for no client (OpenSSL refuses a
        wildcard over a single label), so each exact host the listener's rules name under
        such a wildcard also gets a certificate of its own from the local CA (SNI picks it)."""
        arns = [c["CertificateArn"] for c in listener.get("Certificates", [])]
        try:
            extra = self.elbv2.describe_listener_certificates(ListenerArn=listener["ListenerArn"])
            arns += [c["CertificateArn"] for c in extra.get("Certificates", [])]
        except ClientError:
            pass
        pems = []
        suffixes: set[str] = set()
        for arn in dict.fromkeys(arns):  # unique, in order
            pem = self._pem(arn)
            if pem:
                pems.append(pem)
                suffixes |= self._local_wildcards.get(pem, set())
        if suffixes:
            for host in sorted(_rule_hosts(rules or [])):
                label, _, rest = host.partition(".")
                if rest in suffixes and label and "*" not in host and "?" not in host:
                    pems.append(self._host_pem(host))
        return pems

    def _prune_host_pems(self, used: set[str]) -> None:
        """Host certificates of apps that are gone (their rules were deleted), also those an
        earlier run left."""
        for host, path in list(self._host_pems.items()):
            if path not in used:
                del self._host_pems[host]
        if self.tls_dir.is_dir():
            for leftover in self.tls_dir.glob("host-*.pem"):
                if str(leftover) not in used:
                    leftover.unlink(missing_ok=True)

    def _host_pem(self, host: str) -> str:
        """A local-CA certificate for one host (kept on disk, issued again when the CA
        changed or it nears expiry)."""
        known = self._host_pems.get(host)
        if known and Path(known).exists():
            return known
        root = authority.ensure_ca(self.ca_dir)
        path = self.tls_dir / f"host-{hx.safe_name(host)}.pem"
        try:
            text = path.read_bytes()
            if not (authority.covers(text, [host]) and authority.signed_by(text, root.cert_pem)):
                raise ValueError("stale")
        except (OSError, ValueError):
            issued = authority.issue(root, [host])
            self.tls_dir.mkdir(parents=True, exist_ok=True)
            self.tls_dir.chmod(0o700)
            _write_atomic(path, (issued.cert_pem + issued.key_pem).decode())
        self._host_pems[host] = str(path)
        return str(path)

    def _pem(self, arn: str) -> str | None:
        """A PEM file (certificate, chain, key) for a certificate ACM holds; the key comes from
        the local cloud's ACM itself (motofix.acm_key), as an ALB gets it on AWS."""
        if ":iam:" in arn:
            self._warn_once(f"certificate {arn}: IAM server certificates are not served locally")
            return None
        try:
            got = self._acm_client().get_certificate(CertificateArn=arn)
        except ClientError as exc:
            self._warn_once(f"certificate {arn}: {exc}")
            return None
        cert = str(got["Certificate"])
        slot = f"{arn} {authority.fingerprint(cert)}"
        known = self._pems.get(slot)
        if known and Path(known).exists():
            return known
        held = motofix.acm_key(arn)
        if held is None:
            self._warn_once(f"certificate {arn}: the local cloud's ACM does not hold its key")
            return None
        key, chain = held
        self.tls_dir.mkdir(parents=True, exist_ok=True)
        self.tls_dir.chmod(0o700)
        path = self.tls_dir / f"{authority.fingerprint(cert)}.pem"
        body = cert.strip() + "\n" + chain.decode() + key.decode().strip() + "\n"
        _write_atomic(path, body)
        self._pems[slot] = str(path)
        if authority.signed_by(cert.encode(), authority.ensure_ca(self.ca_dir).cert_pem):
            self._local_wildcards[str(path)] = set(
                authority.single_label_wildcards(authority.dns_names(cert))
            )
        return str(path)

    def _warn_once(self, warning: str) -> None:
        if warning not in self._warned:
            self._warned.add(warning)
            log.warning("load balancers: %s", warning)

    def _acm_client(self) -> Any:
        if self._acm is None:
            self._acm = self._client_like_elbv2("acm")
        return self._acm

    def _instance_ips(
        self, tgs: list[dict[str, Any]], targets: dict[str, list[dict[str, Any]]]
    ) -> dict[str, str]:
        ids = sorted(
            {
                desc["Target"]["Id"]
                for tg in tgs
                if tg.get("TargetType") == "instance"
                for desc in targets.get(tg["TargetGroupArn"], [])
            }
        )
        if not ids:
            return {}
        ips = {}
        pages = self._ec2_client().get_paginator("describe_instances").paginate(InstanceIds=ids)
        for page in pages:
            for reservation in page["Reservations"]:
                for inst in reservation["Instances"]:
                    if inst.get("PrivateIpAddress"):
                        ips[inst["InstanceId"]] = inst["PrivateIpAddress"]
        return ips

    def _ec2_client(self) -> Any:
        """EC2 for instance targets: the one given, else one like the ELBv2 client."""
        if self._ec2 is None:
            self._ec2 = self._client_like_elbv2("ec2")
        return self._ec2

    def _client_like_elbv2(self, service: str) -> Any:
        import boto3

        creds = self.elbv2._request_signer._credentials
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.elbv2.meta.endpoint_url,
            region_name=self.elbv2.meta.region_name,
            aws_access_key_id=creds.access_key,
            aws_secret_access_key=creds.secret_key,
            aws_session_token=creds.token,
        )

    def _allocate(self, listener_arns: list[str]) -> dict[str, int]:
        """Ports for new listeners, skipping any that something else already holds."""
        busy: set[int] = set()
        while True:
            ports = hx.allocate_ports(self._ports, listener_arns, self.port_base, busy)
            taken = {p for arn, p in ports.items() if arn not in self._ports and not _free(p)}
            if not taken:
                return ports
            busy |= taken

    def _load_ports(self) -> dict[str, int]:
        try:
            data = json.loads(self.ports_file.read_text())
            return {str(k): int(v) for k, v in data.items()}
        except (OSError, ValueError, AttributeError):
            return {}

    # ------------------------------------------------------------ applying

    def _apply(self, model: hx.Model) -> None:
        if not model.served_listeners:
            if self.haproxy.running:
                log.info("load balancers: no served listener left; stopping HAProxy")
                self.close()
            return
        key = hx.structure_key(model, self.state_dir)
        config = hx.render_config(model, self.state_dir)
        if self.haproxy.running and self._applied is not None and key == self._key:
            self._apply_targets(self._applied, model)
            if config != self._config:
                self.haproxy.write_config(config)
                self._config = config
            self._applied = model
            return
        if key == self._bad_key:
            return
        self._write_crt_lists(model)
        problem = self.haproxy.check(config)
        if problem:
            self._bad_key = key
            log.error("load balancers: HAProxy rejects the rendered config: %s", problem)
            return
        if self.haproxy.running:
            self._undrain_returning(model)
        known = self._known_servers() if self.haproxy.running else set()
        loaded = hx.only_servers(model, known)
        if self.haproxy.running:
            self.haproxy.reload(hx.render_config(loaded, self.state_dir))
            # The old process drains what it served; the new one never had these servers.
            self._draining.clear()
        else:
            if time.monotonic() < self._retry_at:
                return
            try:
                self.haproxy.start(hx.render_config(loaded, self.state_dir))
            except DynoformError as exc:
                # A port taken meanwhile, say: say so once per try, and try again later.
                self.haproxy.stop()
                self._retry_at = time.monotonic() + START_RETRY_SECONDS
                log.error("load balancers: %s; retrying in %ss", exc, START_RETRY_SECONDS)
                return
        self._apply_targets(loaded, model)
        self.haproxy.write_config(config)
        self._applied, self._key, self._config = model, key, config

    def _write_crt_lists(self, model: hx.Model) -> None:
        """The HTTPS frontends' crt-list files, which the config names (and a reload reads)."""
        for path, text in hx.crt_lists(model, self.state_dir).items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.parent.chmod(0o700)
            if not path.exists() or path.read_text() != text:
                _write_atomic(path, text)

    def _undrain_returning(self, model: hx.Model) -> None:
        """Targets registered again while draining go back to ready before a reload, or the
        state file would bring them back drained (and never used again)."""
        wanted = {(tg.backend, t.server_name) for tg in model.target_groups for t in tg.targets}
        for slot in [s for s in self._draining if s in wanted]:
            del self._draining[slot]
            self._run(hx.cmd_ready(*slot))

    def _known_servers(self) -> set[tuple[str, str]]:
        try:
            return hx.servers_in_state(self.haproxy.command(hx.cmd_show_servers_state()))
        except OSError:
            return set()

    def _apply_targets(self, old: hx.Model, new: hx.Model) -> None:
        changes = hx.target_changes(old, new)
        now = time.monotonic()
        for tg, target in changes.added:
            slot = (tg.backend, target.server_name)
            if slot in self._draining:
                # Registered again while draining: take it back as it is.
                del self._draining[slot]
                self._run(hx.cmd_ready(*slot))
                continue
            self._run(hx.cmd_add_server(tg, target))
            self._run(hx.cmd_activate(tg, target))
            if tg.health.enabled:
                with self._fresh_lock:
                    self._fresh.add(slot)
            log.info("load balancers: %s/%s added", *slot)
        for tg, name in changes.removed:
            with self._fresh_lock:
                self._fresh.discard((tg.backend, name))
            self._run(hx.cmd_drain(tg.backend, name))
            self._draining[(tg.backend, name)] = now + tg.deregistration_delay
            log.info("load balancers: %s/%s draining", tg.backend, name)

    def _drain_tick(self) -> None:
        """Remove drained servers once idle, or when their deregistration delay is over."""
        if not self._draining or not self.haproxy.running:
            return
        stat = hx.parse_stat(self.haproxy.command(hx.cmd_show_stat()))
        now = time.monotonic()
        for (backend, server), deadline in list(self._draining.items()):
            sessions = hx.server_sessions(stat, backend, server)
            if sessions < 0:
                del self._draining[(backend, server)]
                continue
            overdue = now >= deadline
            if sessions > 0 and not overdue:
                continue
            answer = self.haproxy.command(hx.cmd_remove(backend, server, force=overdue))
            if "Server deleted" in answer:
                del self._draining[(backend, server)]
                log.info("load balancers: %s/%s removed", backend, server)
            # else: idle connections still attached; try again next tick

    def _run(self, line: str) -> str:
        answer = self.haproxy.command(line)
        problem = hx.cli_error(answer)
        if problem:
            log.warning("load balancers: %r: %s", line, problem)
        return answer
