"""The runner hosts: EC2 inventory, pinned host keys, one SSH pool, launch and bootstrap.

Reads state through the edges (EC2, the state store, SSH), asks the pure core (playbook plans,
zone spread) what to do, and applies it. Host pins live in the state store at
`hosts/<instance-id>.json` and are written before the first connection to the host.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner.aws import instances
from provisioner.aws.platform import Platform
from provisioner.aws.session import Aws
from provisioner.aws.state import Documents, StaleWrite
from provisioner.errors import DynoformError, NotFound
from provisioner.model.sizes import architecture
from provisioner.remote.fanout import MAX_WORKERS, Outcome, fan_out
from provisioner.remote.hostkeys import cloud_config, generate_host_keys, pin_record
from provisioner.remote.ssh import Connection, Endpoint, Pool, preload
from provisioner.render import api_endpoint, wall_vars
from provisioner.store import now_iso
from provisioner.targets import Target

if TYPE_CHECKING:  # the playbook is loaded to provision a host (~10 ms a deploy never needs)
    from provisioner import playbook as pb

BOOT_TIMEOUT = 300.0  # from run_instances until SSH answers
REACH_TIMEOUT = 10.0  # for hosts that should already be up
APT_TIMEOUT = 900.0
STEP_TIMEOUT = 120.0
LOGIN_USER = "admin"  # the Debian AMI's login user, with passwordless sudo
ROLE = instances.RUNNER

Progress = Callable[[int, str, str], None]  # slot, host id ("" before launch), status


def resolve_host(name: str) -> list[str]:
    """The addresses of a custom endpoint's host name, as this machine resolves it."""
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise DynoformError(
            f"cannot resolve the endpoint host {name!r}: {exc}",
            "the runner role walls dynos off the target's endpoint; check --endpoint-url",
        ) from exc
    return [str(info[4][0]) for info in infos]


def pin_key(instance_id: str) -> str:
    return f"hosts/{instance_id}.json"


PIN_PREFIX = "hosts/"
SIZE_DOC = "fleet.json"  # {"runners": N}: the declared fleet size the controller keeps


def declared_size(docs: Documents) -> int | None:
    """How many runners the controller keeps (None: none declared yet)."""
    doc = docs.get(SIZE_DOC)
    return int(doc.data["runners"]) if doc else None


@dataclass(frozen=True)
class OnFleet:
    """A fleet seen from one of its hosts (the controller): other hosts are reached at their
    private addresses, with the copy of the platform's key the bootstrap left there."""

    host_id: str
    ssh_key: str


_BUSY = {"active", "activating", "deactivating", "reloading"}


def parse_dyno_units(stdout: str) -> list[str]:
    """Running services in dynoform.slice or a dynoform-*.slice below it.

    Input: `systemctl show -p Id,Slice,ActiveState '*.service'`, blocks split by blank lines.
    The host's own systemd answers, not the cgroup tree (which hosts may share locally).
    """
    units = set()
    for block in stdout.split("\n\n"):
        fields = dict(line.partition("=")[::2] for line in block.splitlines() if "=" in line)
        slice_name = fields.get("Slice", "")
        in_slice = slice_name == "dynoform.slice" or (
            slice_name.startswith("dynoform-") and slice_name.endswith(".slice")
        )
        if in_slice and fields.get("ActiveState") in _BUSY and fields.get("Id"):
            units.add(fields["Id"])
    return sorted(units)


DYNO_UNITS_FACT = ("systemctl", "show", "--property=Id,Slice,ActiveState", "--", "*.service")


class SshRunner:
    """The playbook's Runner over one pooled SSH connection, as root through `sudo -n`."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def fact(self, argv: pb.Cmd) -> pb.Fact:
        from provisioner import playbook as pb

        result = self.conn.run(argv, sudo=True, timeout=STEP_TIMEOUT)
        return pb.Fact(result.exit_code, result.stdout)

    def apply(self, action: pb.Action) -> None:
        from provisioner import playbook as pb

        if isinstance(action, pb.Put):
            self.conn.put(
                action.content,
                action.path,
                mode=action.mode,
                owner=action.owner,
                group=action.group,
            )
            return
        timeout = APT_TIMEOUT if "apt-get" in action else STEP_TIMEOUT
        self.conn.run(action, sudo=True, timeout=timeout, check=True)


@dataclass
class HostRow:
    id: str
    private_ip: str | None
    zone: str
    type: str
    state: str
    bootstrapped: bool
    dynos: int | None
    role: str = instances.RUNNER

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Fleet:
    """The platform's hosts, the state store's pins and one SSH pool."""

    aws: Aws
    target: Target
    platform: Platform
    docs: Documents
    pool: Pool = field(default_factory=Pool)
    _role: tuple[pb.Role, Any] | None = None
    _target_vars: dict[str, Any] | None = None
    on_fleet: OnFleet | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    cancel: threading.Event = field(default_factory=threading.Event)
    # host id -> its pinned host keys, as its record gave them: a host's keys never change
    # (pinned before its first boot), so each connection need not read the record again
    # (one read per host per fan-out was ~10 ms of every deploy step).
    _keys: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # state ------------------------------------------------------------------------------------
    def pin(self, instance_id: str) -> dict[str, Any]:
        doc = self.docs.get(pin_key(instance_id))
        if doc is None:
            raise DynoformError(
                f"host {instance_id} has no pinned host key in the state store",
                "dynoform connects only to hosts it launched; remove it with hosts:remove",
            )
        return dict(doc.data)

    def pinned_keys(self, instance_id: str) -> tuple[str, ...]:
        keys = self._keys.get(instance_id)
        if keys is None:
            keys = self._remember_keys(instance_id, self.pin(instance_id))
        return keys

    def _remember_keys(self, instance_id: str, record: dict[str, Any]) -> tuple[str, ...]:
        keys = tuple(record.get("host_keys") or ())
        if keys:
            self._keys[instance_id] = keys
        return keys

    def _update_pin(self, instance_id: str, **fields: Any) -> None:
        record = self.pin(instance_id)
        record.update(fields)
        self.docs.put(pin_key(instance_id), record)

    @property
    def key_path(self) -> Path:
        """The platform's SSH key: the operator's, or on a host the copy the bootstrap left."""
        return Path(self.on_fleet.ssh_key if self.on_fleet else self.platform.key_path)

    def endpoint(self, host: instances.Host) -> Endpoint:
        inside = self.target.is_local or self.on_fleet is not None
        return Endpoint(
            name=host.id,
            address=host.address(inside),
            key_path=self.key_path,
            pinned=self.pinned_keys(host.id),
            user=LOGIN_USER,
        )

    def hosts(self) -> list[instances.Host]:
        return instances.list_hosts(self.aws, self.platform.name)

    def ready(self) -> list[instances.Host]:
        """Running hosts whose bootstrap finished and that the controller has not declared
        lost: the only ones to place dynos or builds on."""
        preload()  # callers connect to these hosts next
        running = [h for h in self.hosts() if h.state == "running"]
        # The records are read at once, not one host after another: this is on every
        # deploy's path (a few ms per host on the local cloud, tens of ms on S3).
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(running)))) as pool:
            docs = list(pool.map(lambda h: self.docs.get(pin_key(h.id)), running))
        for host, doc in zip(running, docs, strict=True):
            if doc is not None:
                self._remember_keys(host.id, dict(doc.data))
        return [
            host
            for host, doc in zip(running, docs, strict=True)
            if doc and doc.data.get("bootstrapped") and not doc.data.get("lost")
        ]

    def pins(self) -> dict[str, dict[str, Any]]:
        """Every host record in the state store (hosts EC2 may no longer list), by host id."""
        found = {}
        for key in self.docs.keys(PIN_PREFIX):
            doc = self.docs.get(key)
            if doc is not None:
                found[key[len(PIN_PREFIX) : -len(".json")]] = dict(doc.data)
        return found

    def mark_lost(self, instance_id: str, reason: str) -> None:
        """The controller's verdict: nothing is placed on the host again; it is replaced."""
        self._update_pin(instance_id, lost=reason[:500], lost_at=now_iso())

    def forget(self, instance_id: str) -> None:
        """A terminated host's record goes (and its pooled connection)."""
        self.pool.drop_name(instance_id)
        self._keys.pop(instance_id, None)
        self.docs.delete(pin_key(instance_id))

    # the declared size --------------------------------------------------------------------------
    def declared_size(self) -> int | None:
        return declared_size(self.docs)

    def declare_size(self, delta: int, counted: bool) -> int:
        """Add `delta` to the declared size (retried on a concurrent change). With none declared
        yet, the runners alive now are the base; `counted`: they include the change already
        (hosts just added), else it is still to come (a host about to be removed)."""
        for _ in range(20):
            doc = self.docs.get(SIZE_DOC)
            if doc is not None:
                size = int(doc.data["runners"]) + delta
            else:
                size = len(self.alive()) + (0 if counted else delta)
            data = {"runners": max(0, size), "updated_at": now_iso()}
            try:
                if doc is None:
                    self.docs.create(SIZE_DOC, data)
                else:
                    self.docs.update(SIZE_DOC, data, doc.etag)
                return max(0, size)
            except StaleWrite:
                continue
        raise DynoformError("the declared fleet size changed too often to update", "retry")

    def alive(self) -> list[instances.Host]:
        """Runners that are or will be usable: pending or running, not declared lost."""
        pins = self.pins()
        return [
            h
            for h in self.hosts()
            if h.state in ("pending", "running") and not pins.get(h.id, {}).get("lost")
        ]

    def host(self, instance_id: str) -> instances.Host:
        """A host of the platform, of any role; NotFound when it has none by that id."""
        return instances.get_host(self.aws, self.platform.name, instance_id)

    def connect(self, host: instances.Host, retry_for: float = REACH_TIMEOUT) -> Connection:
        if host.state != "running":
            raise DynoformError(f"host {host.id} is {host.state}", "start it, or remove it")
        return self.pool.get(self.endpoint(host), retry_for=retry_for, cancel=self.cancel)

    def controller_steps(self, host: instances.Host, templates: Any) -> list[pb.Step]:
        """The controller's install (controlhost.py), with this fleet's key and endpoint."""
        from provisioner import controlhost

        config = controlhost.host_config(self.target, self.aws.endpoint_url, host.id)
        key = self.key_path.read_bytes()
        return controlhost.steps(controlhost.code_bundle(), config, key, templates)

    def role(self) -> tuple[pb.Role, Any]:
        from provisioner import playbook as pb

        with self._lock:
            if self._role is None:
                self._role = pb.load_role(ROLE)
            return self._role

    def target_vars(self) -> dict[str, Any]:
        """The runner role's part from the target: its API endpoint, walled off from dynos."""
        with self._lock:
            if self._target_vars is None:
                api = api_endpoint(self.aws.endpoint_url, resolve=resolve_host)
                self._target_vars = wall_vars(api)
            return self._target_vars

    # operations -------------------------------------------------------------------------------
    def bootstrap(
        self,
        host: instances.Host,
        check: bool = False,
        retry_for: float = REACH_TIMEOUT,
        on_step: Callable[[pb.StepReport], None] | None = None,
    ) -> pb.Report:
        from provisioner import playbook as pb

        conn = self.connect(host, retry_for)
        role, templates = self.role()
        runner = SshRunner(conn)
        steps = role.steps(pb.gather(runner), templates, self.target_vars())
        steps += self.controller_steps(host, templates)
        report = pb.run_steps(steps, runner, check=check, on_step=on_step)
        if not check:
            self._update_pin(host.id, bootstrapped=True, bootstrapped_at=now_iso(), role=ROLE)
        return report

    def add(
        self,
        count: int,
        instance_type: str,
        progress: Progress | None = None,
        launched_by: str | None = None,
        before_launch: Callable[[], None] | None = None,
    ) -> list[Outcome[int, instances.Host]]:
        """Launch and bootstrap `count` hosts in parallel; failed hosts are terminated.
        The controller says who it is (`launched_by`, kept in the host's record) and checks it
        still leads right before each launch (`before_launch` raises if not)."""
        if count < 1 or count > 100:
            raise DynoformError("--count must be between 1 and 100")
        current = self.hosts()
        instances.one_architecture([h.type for h in current], instance_type)
        ami = instances.debian_ami(self.aws, architecture(instance_type))
        device = instances.root_device(self.aws, ami)
        zones = dict(zip(self.platform.subnet_ids, self.platform.zones, strict=True))
        subnets = instances.spread(zones, [h.zone for h in current], count)
        say = progress or (lambda slot, host_id, status: None)
        unfinished: set[str] = set()

        def add_one(slot: int) -> instances.Host:
            if self.cancel.is_set():
                raise DynoformError("interrupted before launch")
            started = time.monotonic()
            say(slot, "", "launching")
            keys = generate_host_keys()
            request = instances.launch_request(
                self.platform,
                ami=ami,
                device=device,
                instance_type=instance_type,
                subnet_id=subnets[slot],
                user_data=cloud_config(keys),
            )
            if before_launch is not None:
                before_launch()
            host = instances.launch(self.aws, request)
            with self._lock:
                unfinished.add(host.id)
            try:
                # Pinned before anything connects: the first connection already checks the key.
                self.docs.create(
                    pin_key(host.id),
                    pin_record(
                        host.id,
                        keys,
                        role=ROLE,
                        type=instance_type,
                        created_at=now_iso(),
                        bootstrapped=False,
                        launched_by=launched_by,
                    ),
                )
                say(slot, host.id, "booting")
                host = instances.wait_running(self.aws, host.id, BOOT_TIMEOUT, self.cancel)
                self.connect(host, retry_for=BOOT_TIMEOUT)
                say(slot, host.id, "bootstrapping")
                self.bootstrap(host, check=False)
                with self._lock:
                    unfinished.discard(host.id)
                say(slot, host.id, f"ready in {time.monotonic() - started:.1f} s")
                return host
            except BaseException as exc:
                say(slot, host.id, "failed, terminating")
                with self._lock:
                    unfinished.discard(host.id)
                try:
                    self._fail(host.id, str(exc))
                except instances.LeftRunning as left:
                    say(slot, host.id, f"NOT TERMINATED: {left.message}")
                    raise left from exc
                raise

        try:
            return fan_out(list(range(count)), add_one, max_workers=MAX_WORKERS)
        except KeyboardInterrupt:
            leftover = self._abandon(unfinished)
            raise DynoformError(
                f"interrupted; terminated {len(leftover)} host(s) still being set up: "
                + (", ".join(leftover) or "none"),
                "hosts that were ready stay; see `dynoform hosts`",
            ) from None
        except BaseException:
            self._abandon(unfinished)
            raise

    def _abandon(self, unfinished: set[str]) -> list[str]:
        """Stop every retry loop and terminate the hosts not yet bootstrapped."""
        self.cancel.set()
        with self._lock:
            leftover = sorted(unfinished)
        stuck: list[str] = []
        for instance_id in leftover:
            try:
                self._fail(instance_id, "interrupted")
            except instances.LeftRunning:
                stuck.append(instance_id)
        if stuck:
            raise instances.LeftRunning(
                f"could not terminate {', '.join(stuck)}: they may still run and bill",
                "terminate them yourself: `dynoform hosts:remove ID`, or in the EC2 console",
            )
        return leftover

    def _fail(self, instance_id: str, reason: str) -> None:
        """A host that failed is terminated, never used half-configured. Its record is best
        effort; the terminate is not: an instance left running bills unseen, so LeftRunning
        (naming it) replaces the original error."""
        try:
            self.pool.drop_name(instance_id)
            self._update_pin(instance_id, failed=reason[:500], bootstrapped=False)
        except Exception:  # noqa: BLE001 - the record is a note; the terminate below matters
            pass
        instances.terminate(self.aws, [instance_id])

    def dynos(self, host: instances.Host, retry_for: float = REACH_TIMEOUT) -> list[str]:
        result = self.connect(host, retry_for).run(DYNO_UNITS_FACT, timeout=STEP_TIMEOUT)
        return parse_dyno_units(result.stdout)

    def rows(self, with_dynos: bool = True) -> list[HostRow]:
        """Every host of the platform: runners, and hosts of other roles (the add-on host)."""
        hosts = instances.list_hosts(self.aws, self.platform.name, role=None)

        def row(host: instances.Host) -> HostRow:
            doc = self.docs.get(pin_key(host.id))
            bootstrapped = bool(doc and doc.data.get("bootstrapped"))
            dynos: int | None = 0
            if host.role != instances.RUNNER:
                dynos = None  # runs no dynos
            elif with_dynos and bootstrapped and host.state == "running":
                try:
                    dynos = len(self.dynos(host, retry_for=2.0))
                except DynoformError:
                    dynos = None  # unreachable: unknown
            return HostRow(
                host.id,
                host.private_ip,
                host.zone,
                host.type,
                host.state,
                bootstrapped,
                dynos,
                host.role or instances.RUNNER,
            )

        outcomes = fan_out(hosts, row, max_workers=MAX_WORKERS)
        return [o.value for o in outcomes if o.value is not None]

    def install_controllers(self) -> list[Outcome[instances.Host, pb.Report]]:
        """Only the controller's install on every ready runner (platform:init upgrades it)."""

        def install(host: instances.Host) -> pb.Report:
            from provisioner import playbook as pb

            conn = self.connect(host)
            _role, templates = self.role()
            return pb.run_steps(self.controller_steps(host, templates), SshRunner(conn))

        return fan_out(self.ready(), install, max_workers=MAX_WORKERS)

    def bootstrap_many(
        self, ids: Sequence[str], check: bool
    ) -> list[Outcome[instances.Host, pb.Report]]:
        hosts = self.hosts()
        if ids:
            known = {h.id: h for h in hosts}
            missing = [i for i in ids if i not in known]
            if missing:
                raise NotFound(f"no such host: {', '.join(missing)}", "see `dynoform hosts`")
            hosts = [known[i] for i in ids]
        return fan_out(hosts, lambda h: self.bootstrap(h, check=check), max_workers=MAX_WORKERS)

    def remove(self, instance_id: str, force: bool = False) -> None:
        host = self.host(instance_id)
        if host.state == "running":
            try:
                units = self.dynos(host)
            except DynoformError as exc:
                if not force:
                    raise DynoformError(
                        f"cannot check host {instance_id} for running dynos: {exc.message}",
                        "pass --force to remove it anyway",
                    ) from None
                units = []
            if units:
                raise DynoformError(
                    f"host {instance_id} still runs {len(units)} dyno(s): {', '.join(units[:5])}",
                    "scale the apps down or move the dynos first",
                )
        pin = self.docs.get(pin_key(instance_id))
        if host.role == ROLE and host.state in ("pending", "running"):
            if not (pin and pin.data.get("lost")):  # a lost host is replaced already
                self.declare_size(-1, counted=False)
        instances.terminate(self.aws, [instance_id])
        self.forget(instance_id)

    def exec(self, instance_id: str, argv: list[str], timeout: float) -> tuple[int, str, str]:
        result = self.connect(self.host(instance_id)).run(argv, timeout=timeout)
        return result.exit_code, result.stdout, result.stderr
