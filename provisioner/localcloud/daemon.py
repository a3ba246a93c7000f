"""The local cloud daemon: `python -m provisioner.localcloud.daemon` (started by `local up`).

It builds the host image if needed, brings up the bridge and NAT, serves moto on the gateway,
seeds a Debian 13 AMI and its public SSM parameter, writes cloud.json when ready, then
reconciles: every EC2 instance in 198.18.0.0/15 becomes a systemd-nspawn host at its private
IP; load balancers get HAProxy (lb.py). SIGTERM powers every host off and removes all it made.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from provisioner.localcloud import (
    DEBIAN_SSM_PARAMETER,
    DEFAULT_PORT,
    GATEWAY,
    REGION,
    accesslog,
    cloud_file,
    hosts_dir,
    motofix,
    network,
    pid_file,
    plan,
    state_dir,
    status_file,
)
from provisioner.localcloud import image as host_image
from provisioner.localcloud.hosts import (
    CA_BUNDLE,
    REBOOT_EXIT,
    Host,
    Seed,
    hostname_for,
    machine_resolver,
)
from provisioner.localcloud.system import log

POLL_SECONDS = 0.3
LB_SYNC_SECONDS = 5.0  # HAProxy follows ELBv2 at once when it changes; this often regardless
METRICS_SECONDS = 5.0  # how often the router's response times reach moto's CloudWatch
HEALTH_FEED_SECONDS = 0.1  # how often HAProxy's checks reach moto while a target is not healthy
PRUNE_SECONDS = 60.0  # how often noncurrent S3 versions past motofix.VERSIONS_KEPT are dropped
FAILURE_PAUSE = 5.0
ACCOUNT = "123456789012"  # moto's default account, which our fixed local credentials map to

_reboots: set[str] = set()
_reboots_lock = threading.Lock()


def _hook_reboots() -> None:
    """moto's reboot only resets the state; record it so the host really reboots."""
    from moto.ec2.models.instances import Instance as MotoInstance

    original = MotoInstance.reboot

    def reboot(self: Any) -> None:
        original(self)
        with _reboots_lock:
            _reboots.add(self.id)

    MotoInstance.reboot = reboot  # type: ignore[method-assign]


# Set by every EC2 call that adds, starts, stops or ends instances: the loop describes the
# instances again only then (or every EC2_RESCAN_SECONDS). Describing them every 0.3 s (the
# call, moto's serialising of every instance, botocore's parsing) was most of an idle local
# cloud's CPU: ~0.1 core with 8 hosts.
ec2_changed = threading.Event()
EC2_RESCAN_SECONDS = 5.0
_CHANGING_CALLS = (
    "run_instances",
    "start_instances",
    "stop_instances",
    "terminate_instances",
    "reboot_instances",
)


def _hook_instance_changes() -> None:
    from moto.ec2.models.instances import InstanceBackend

    for name in _CHANGING_CALLS:
        setattr(InstanceBackend, name, _signalling(getattr(InstanceBackend, name)))


def _signalling(original: Callable[..., Any]) -> Callable[..., Any]:
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(self, *args, **kwargs)
        finally:
            ec2_changed.set()

    return call


def take_reboots() -> set[str]:
    with _reboots_lock:
        taken = set(_reboots)
        _reboots.clear()
    return taken


def free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as sock:
            # As the server will: a previous run's connections in TIME_WAIT must not count.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((GATEWAY, port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError("no free port on the gateway address")


def write_json(path: Path, data: dict[str, Any], mode: int = 0o644) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.chmod(mode)
    tmp.replace(path)


def phase(text: str) -> None:
    """What the daemon is doing now, for `local up` to show while it waits."""
    log.info(text)
    (state_dir() / "phase").write_text(text + "\n")


class Cloud:
    def __init__(self) -> None:
        self.stop_event = threading.Event()
        self.hosts: dict[str, Host] = {}
        self.refused: dict[str, str] = {}
        self.instances: dict[str, plan.Instance] = {}
        self.described_at = -EC2_RESCAN_SECONDS  # never: the first loop describes them
        self.server: Any = None
        self.endpoint = ""
        self.image = Path()
        self.lbs: Any = None
        self.lb_error = ""
        self.lb_thread: threading.Thread | None = None
        self.failures: dict[str, tuple[str, float]] = {}

    # --- start -------------------------------------------------------------------------
    def start(self) -> None:
        phase("checking the host image (a first build takes about a minute)")
        self.image = host_image.ensure_image()
        for old in host_image.prune_images(self.image):  # no host runs yet: none is in use
            log.info("removed the host image of an older recipe: %s", old)
        phase("bringing up the bridge and NAT")
        network.bridge_up(state_dir())
        phase("starting the AWS endpoint (moto)")
        self._start_moto()
        self._seed_moto()
        self._start_lbs()
        write_json(
            cloud_file(),
            {
                "endpoint": self.endpoint,
                "pid": os.getpid(),
                "region": REGION,
                "gateway": GATEWAY,
                "image": str(self.image),
                "started": datetime.now(UTC).isoformat(),
            },
        )
        phase("ready")

    def _start_moto(self) -> None:
        from provisioner.localcloud.endpoint import Endpoint

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        _hook_reboots()
        _hook_instance_changes()
        motofix.apply()  # targets keyed by (Id, Port) and true health, as on AWS
        port = free_port(DEFAULT_PORT)
        self.server = Endpoint(GATEWAY, port)
        self.server.start()
        self.endpoint = f"http://{GATEWAY}:{port}"

    def client(self, service: str) -> Any:
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="dynoform",
            aws_secret_access_key="dynoform-local",
        )

    def _seed_moto(self) -> None:
        """A Debian 13 AMI, published where the fleet looks it up on real AWS too."""
        from moto.ssm.models import Parameter, ssm_backends

        ec2 = self.client("ec2")
        image_id = ec2.register_image(
            Name=f"debian-13-amd64-{self.image.name}",
            Description="Debian 13 (trixie), dynoform local cloud host image",
            Architecture="x86_64",
            RootDeviceName="/dev/xvda",
            VirtualizationType="hvm",
        )["ImageId"]
        backend = ssm_backends[ACCOUNT][REGION]
        backend._parameters[DEBIAN_SSM_PARAMETER].append(
            Parameter(  # type: ignore[abstract]
                account_id=ACCOUNT,
                name=DEBIAN_SSM_PARAMETER,
                value=image_id,
                parameter_type="String",
                description="Debian 13 AMI (dynoform local cloud)",
                allowed_pattern=None,
                keyid=None,
                last_modified_date=datetime.now(UTC),
                version=1,
                data_type="aws:ec2:image",
            )
        )
        log.info("seeded AMI %s at %s", image_id, DEBIAN_SSM_PARAMETER)

    def _start_lbs(self) -> None:
        try:
            from provisioner.localcloud.lb import LoadBalancers  # built by its own module
        except ImportError as exc:
            self.lb_error = f"load balancers unavailable: {exc}"
            log.warning(self.lb_error)
            return
        self.lbs = LoadBalancers(self.client("elbv2"), state_dir())
        self.lb_thread = threading.Thread(target=self._lb_loop, name="load-balancers", daemon=True)
        self.lb_thread.start()
        motofix.set_feeder(self._feed_health)

    def _feed_health(self) -> None:
        """HAProxy's view of the targets into moto, for a describe_target_health call."""
        try:
            motofix.feed_from(self.lbs)
        except Exception:  # noqa: BLE001 - the answer is then the last fed one
            log.debug("feeding target health failed", exc_info=True)

    # --- loop --------------------------------------------------------------------------
    def run(self) -> None:
        ec2 = self.client("ec2")
        failure = ""
        pruned = time.monotonic()
        while not self.stop_event.is_set():
            started = time.monotonic()
            try:
                self.reconcile(ec2)
                failure = ""
            except Exception as exc:
                if str(exc) != failure:  # once per distinct failure, not every 0.3 s
                    log.exception("reconcile failed; retrying")
                failure = str(exc)
            self._write_status()
            if started - pruned >= PRUNE_SECONDS:
                pruned = started
                self._prune_versions()
            self.stop_event.wait(max(0.0, POLL_SECONDS - (time.monotonic() - started)))

    def _prune_versions(self) -> None:
        try:
            dropped = motofix.prune_versions(time.time())
        except Exception:  # noqa: BLE001 - memory kept a minute longer; logged, not fatal
            log.exception("pruning old S3 versions failed")
            return
        if dropped:
            log.info("dropped %d old S3 versions", dropped)

    def _lb_loop(self) -> None:
        """HAProxy follows ELBv2 at once when a call changes it (and every LB_SYNC_SECONDS, for
        what changes without an ELBv2 call, such as a certificate re-imported into ACM); while a
        target waits for its health checks, their result reaches moto every
        HEALTH_FEED_SECONDS. A deploy waits on both, so neither waits on a timer."""
        last_sync = last_metrics = last_access = 0.0
        cloudwatch = self.client("cloudwatch")
        access = accesslog.AccessLogs(
            self.lbs.haproxy.router_log, self.client("elbv2"), self.client("s3")
        )
        while not self.stop_event.is_set():
            if time.monotonic() - last_access >= accesslog.EVERY:
                last_access = time.monotonic()
                self._lb_step(
                    lambda: access.deliver((b.name, b.arn) for b in self.lbs.model.load_balancers)
                )
            if time.monotonic() - last_metrics >= METRICS_SECONDS:
                last_metrics = time.monotonic()
                self._lb_step(partial(self.lbs.publish_metrics, cloudwatch))
                self._lb_step(lambda: self._rotate_router_log(access))
            due = time.monotonic() - last_sync >= LB_SYNC_SECONDS
            if due or motofix.elb_changed.is_set():
                motofix.elb_changed.clear()
                changed = motofix.take_target_changes()
                if due or changed is None:
                    last_sync = time.monotonic()
                    self._lb_step(self.lbs.sync)
                elif changed:  # only targets changed: read those target groups alone
                    self._lb_step(partial(self.lbs.sync_targets, changed))
            elif motofix.waiting() or self.lbs.draining:
                self._lb_step(self.lbs.drain_tick)
            motofix.elb_changed.wait(HEALTH_FEED_SECONDS)

    def _rotate_router_log(self, access: accesslog.AccessLogs) -> None:
        """Both of the daemon's readers of router.log catch up, then it is rotated when big."""
        from provisioner.localcloud import lb

        path = self.lbs.haproxy.router_log
        if not path.exists() or path.stat().st_size <= lb.ROUTER_LOG_MAX:
            return
        access.deliver((b.name, b.arn) for b in self.lbs.model.load_balancers)
        if lb.rotate_log(path, writers=self.lbs.haproxy.log_writers()):
            log.info("router.log rotated to router.log.1")

    def _lb_step(self, step: Callable[[], object]) -> None:
        try:
            step()
            motofix.feed_from(self.lbs)
            self.lb_error = ""
        except Exception as exc:
            if str(exc) != self.lb_error:
                log.exception("load balancer sync failed")
            self.lb_error = str(exc)

    def describe(self, ec2: Any) -> list[plan.Instance]:
        """Instances that want a host. Terminated ones are left out (moto keeps them all, and
        serialising every one made this poll the daemon's biggest cost); their hosts go."""
        found: list[plan.Instance] = []
        alive = {"Name": "instance-state-name", "Values": list(plan.ALIVE_STATES)}
        for page in ec2.get_paginator("describe_instances").paginate(Filters=[alive]):
            for reservation in page["Reservations"]:
                found.extend(plan.from_api(raw) for raw in reservation["Instances"])
        return found

    def current(self, ec2: Any) -> list[plan.Instance]:
        """The instances as last described, described again after an EC2 call changed them
        (or EC2_RESCAN_SECONDS after the last look, for a change no hook saw)."""
        now = time.monotonic()
        if ec2_changed.is_set() or now - self.described_at >= EC2_RESCAN_SECONDS:
            ec2_changed.clear()  # before the call: a change during it is described next time
            try:
                self.instances = {i.instance_id: i for i in self.describe(ec2)}
            except BaseException:
                ec2_changed.set()  # the next loop tries again, not EC2_RESCAN_SECONDS later
                raise
            self.described_at = now
        return list(self.instances.values())

    def reconcile(self, ec2: Any) -> None:
        instances = self.current(ec2)
        realised = {iid: host.address for iid, host in self.hosts.items()}
        wanted, self.refused = plan.assign(instances, realised)
        reboots = take_reboots()
        for iid, inst in wanted.items():
            if inst.desired == plan.RUNNING:
                self._guarded(iid, partial(self._keep_running, ec2, inst, iid in reboots))
            else:
                self._guarded(iid, partial(self._keep_stopped, iid))
        for iid in list(self.hosts):
            if iid not in wanted:
                self._guarded(iid, partial(self._remove, iid))

    def _guarded(self, iid: str, action: Callable[[], None]) -> None:
        """One host's failure must not stop the others; retry it after a pause."""
        message, retry_at = self.failures.get(iid, ("", 0.0))
        if time.monotonic() < retry_at:
            return
        try:
            action()
        except Exception as exc:
            if str(exc) != message:
                log.exception("%s: failed", iid)
            self.failures[iid] = (str(exc), time.monotonic() + FAILURE_PAUSE)
        else:
            self.failures.pop(iid, None)

    def _keep_running(self, ec2: Any, inst: plan.Instance, reboot: bool) -> None:
        host = self.hosts.get(inst.instance_id)
        if host is None:
            root = hosts_dir() / inst.instance_id
            host = Host(inst.instance_id, inst.private_ip or "", root, self.image)
            self.hosts[inst.instance_id] = host
        if host.running:
            host.remember_init()
            if reboot:
                log.info("%s: rebooting", inst.instance_id)
                host.reboot()
            elif host.stopping_since:
                host.force_if_stuck()
            else:
                host.probe_ssh()
            return
        if host.proc is not None:  # it exited on its own
            code = host.proc.returncode
            host.last_exit = code
            host.teardown(keep_disk=True)
            if code != REBOOT_EXIT and not host.stopping_since:
                # A power-off from inside: EC2 then reports the instance stopped.
                log.info(
                    "%s: powered off from inside (exit %s): %s",
                    inst.instance_id,
                    code,
                    host.console_tail(),
                )
                ec2.stop_instances(InstanceIds=[inst.instance_id])
                return
        host.start(lambda: self._seed(ec2, inst))

    def _keep_stopped(self, iid: str) -> None:
        host = self.hosts.get(iid)
        if host is None:
            return  # a stopped instance we never booted: nothing to do until it starts
        if host.running:
            host.request_stop()
            host.force_if_stuck()
        elif host.proc is not None:
            log.info("%s: stopped (disk kept)", iid)
            host.last_exit = host.proc.returncode
            host.teardown(keep_disk=True)

    def _remove(self, iid: str) -> None:
        host = self.hosts[iid]
        if host.running:
            host.request_stop()
            host.force_if_stuck(grace=10)
            return
        log.info("%s: terminated; removing its host", iid)
        host.teardown(keep_disk=False)
        del self.hosts[iid]

    def _seed(self, ec2: Any, inst: plan.Instance) -> Seed:
        raw = ec2.describe_instance_attribute(InstanceId=inst.instance_id, Attribute="userData")
        encoded = raw.get("UserData", {}).get("Value") or ""
        key = None
        if inst.key_name:
            try:
                pairs = ec2.describe_key_pairs(KeyNames=[inst.key_name], IncludePublicKey=True)
            except ClientError as exc:  # deleted since the launch: boot without it, as EC2 does
                log.warning("%s: key pair %s: %s", inst.instance_id, inst.key_name, exc)
                pairs = {"KeyPairs": []}
            key = pairs["KeyPairs"][0].get("PublicKey") if pairs["KeyPairs"] else None
        return Seed(
            hostname=hostname_for(inst.private_ip or ""),
            authorized_key=key,
            user_data=base64.b64decode(encoded) if encoded else b"",
            resolv_conf=machine_resolver(),
            ca_bundle=CA_BUNDLE.read_bytes() if CA_BUNDLE.exists() else None,
        )

    # --- status ------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        hosts = []
        for iid, host in sorted(self.hosts.items()):
            inst = self.instances.get(iid)
            hosts.append(
                {
                    "instance_id": iid,
                    "private_ip": host.address,
                    "state": inst.state if inst else "terminated",
                    "host": _host_state(host),
                    "ssh": host.ssh_ready_after is not None,
                    "ssh_ready_seconds": _round(host.ssh_ready_after),
                    "nspawn_pid": host.proc.pid if host.running and host.proc else None,
                    "netns": host.netns,
                    "boots": host.boots,
                    "last_exit": host.last_exit,
                    "error": self.failures.get(iid, (None, 0))[0],
                }
            )
        refused = [
            {
                "instance_id": iid,
                "private_ip": self.instances[iid].private_ip if iid in self.instances else None,
                "state": self.instances[iid].state if iid in self.instances else None,
                "reason": reason,
            }
            for iid, reason in sorted(self.refused.items())
        ]
        lbs: list[Any] = []
        if self.lbs is not None:
            try:
                lbs = list(self.lbs.status())
            except Exception as exc:
                self.lb_error = str(exc)
        return {
            "running": True,
            "endpoint": self.endpoint,
            "pid": os.getpid(),
            "state_dir": str(state_dir()),
            "image": str(self.image),
            "hosts": hosts,
            "not_realised": refused,
            "load_balancers": lbs,
            "load_balancer_error": self.lb_error or None,
            "access_logs": True,  # router lines reach buckets (accesslog.py)
            "updated": datetime.now(UTC).isoformat(),
        }

    def _write_status(self) -> None:
        try:
            write_json(status_file(), self.status())
        except OSError:
            log.exception("could not write the status file")

    # --- stop --------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Power hosts off, then remove everything; each step runs even if one before failed."""
        phase("stopping: powering hosts off")
        for host in self.hosts.values():
            host.request_stop()
        deadline = time.monotonic() + 30
        while any(h.running for h in self.hosts.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        steps: list[tuple[str, Callable[[], None]]] = [
            (f"removing host {h.instance_id}", partial(_remove_host, h))
            for h in self.hosts.values()
        ]
        if self.lb_thread is not None:
            steps.append(("stopping the load balancer loop", partial(self.lb_thread.join, 10)))
        if self.lbs is not None:
            steps.append(("closing the load balancers", self.lbs.close))
        if self.server is not None:
            steps.append(("stopping moto", self.server.stop))
        steps.append(("removing the bridge and rules", partial(network.bridge_down, state_dir())))
        for what, step in steps:
            try:
                step()
            except Exception:
                log.exception("%s failed; `dynoform local down` cleans what is left", what)
        self.hosts.clear()
        for path in (cloud_file(), status_file(), state_dir() / "phase"):
            path.unlink(missing_ok=True)
        log.info("the local cloud is down")


def _remove_host(host: Host) -> None:
    if host.running and host.proc is not None:
        host.proc.kill()
        host.proc.wait(timeout=10)
    host.teardown(keep_disk=False)


def _host_state(host: Host) -> str:
    if host.running:
        if host.stopping_since:
            return "stopping"
        return "up" if host.ssh_ready_after is not None else "booting"
    return "off"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def main() -> int:
    state = state_dir()
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o700)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    pid_file().write_text(f"{os.getpid()}\n")
    cloud = Cloud()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        cloud.stop_event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    code = 0
    try:
        cloud.start()
        cloud.run()
    except Exception:
        log.exception("the local cloud failed")
        code = 1
    finally:
        cloud.shutdown()
        pid_file().unlink(missing_ok=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
