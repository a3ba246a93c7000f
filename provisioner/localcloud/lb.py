"""The local cloud's load-balancer data plane, edge part: moto's ELBv2 state -> a real HAProxy.

One HAProxy (master-worker mode) serves every HTTP listener of every ALB in moto, each on its
own loopback port. `sync()` reads ELBv2, asks haproxy.py what changed and applies it: target
changes through the runtime API on the stats socket (no reload, nothing dropped), structural
changes by rewriting the config and reloading (SIGUSR2 to the master: the old worker finishes
its in-flight requests). The config file is rewritten on every change so a reload keeps state.

Files in state_dir: haproxy.cfg, haproxy.sock (runtime API), haproxy.pid (master),
haproxy.state (server states kept across reloads), ports.json (listener ARN -> local port,
kept across restarts), router.log (one Heroku-like line per request), haproxy.log (HAProxy's
own notices: servers going up/down, reloads).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from provisioner.errors import DynoformError
from provisioner.localcloud import haproxy as hx

log = logging.getLogger(__name__)

SOCKET_TIMEOUT = 5.0
START_TIMEOUT = 10.0
START_RETRY_SECONDS = 5.0


def _write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _append(path: Path) -> IO[bytes]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return os.fdopen(fd, "ab")


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class HaproxyProcess:
    """One HAProxy master process started by us, and its runtime API socket."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.config = state_dir / "haproxy.cfg"
        self.sock = state_dir / "haproxy.sock"
        self.pidfile = state_dir / "haproxy.pid"
        self.state_file = state_dir / "haproxy.state"
        self.router_log = state_dir / "router.log"
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
        return (result.stderr or result.stdout).strip()

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
    ) -> None:
        self.elbv2 = elbv2_client
        self.port_base = port_base
        self._ec2 = ec2_client
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
        self._bad_key: str | None = None
        self._retry_at = 0.0
        self._warned: set[str] = set()

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
                log.warning("load balancers: %s", warning)
        self._model = model
        try:
            self._apply(model)
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
        """HAProxy's `show stat` CSV (server states, sessions), or "" when none runs."""
        if not self.haproxy.running:
            return ""
        try:
            return self.haproxy.command(hx.cmd_show_stat())
        except OSError:
            return ""

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
            args = dict(kwargs, **({"Marker": marker} if marker else {}))
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
            if ln.get("Protocol") == "HTTP"
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
        ports = self._allocate(list(rules))
        if ports != self._ports:
            self._ports = ports
            _write_atomic(self.ports_file, json.dumps(ports, indent=1, sort_keys=True) + "\n")
        return hx.build_model(
            lbs, listeners, rules, tgs, attributes, targets, ports, self._instance_ips(tgs, targets)
        )

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
            import boto3

            creds = self.elbv2._request_signer._credentials
            self._ec2 = boto3.client(
                "ec2",
                endpoint_url=self.elbv2.meta.endpoint_url,
                region_name=self.elbv2.meta.region_name,
                aws_access_key_id=creds.access_key,
                aws_secret_access_key=creds.secret_key,
                aws_session_token=creds.token,
            )
        return self._ec2

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
                log.info("load balancers: no HTTP listener left; stopping HAProxy")
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
            log.info("load balancers: %s/%s added", *slot)
        for tg, name in changes.removed:
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
