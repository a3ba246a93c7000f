"""The rollout executor against a fake fleet: the exact commands a converge sends to each host
and the router, in order, and what an undo sends after a failure of any kind.

The fakes stand in for the SSH hosts (FakeHost: a HostRunner that answers like the host's
programs and keeps the units it runs) and for the ELB API (FakeRouter); the state store is the
real Store over in-memory documents. Everything else is the real executor and planner.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shlex
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from provisioner.aws.instances import Host
from provisioner.aws.router import RouterTarget
from provisioner.aws.state import Doc
from provisioner.errors import DynoformError
from provisioner.model.formation import ProcessFormation
from provisioner.model.release import Release
from provisioner.ops.rollout import (
    FORGET_BUILDS,
    REMOVE_USER,
    START_UNITS,
    STOP_UNITS,
    UNPACK_RELEASE,
    Rollout,
)
from provisioner.plan.batch import PORT_MARK
from provisioner.plan.rollout import ActionKind, RolloutOptions
from provisioner.remote.ssh import RemoteError, Result
from provisioner.render import LAUNCHER_PATH, host_program, launcher_source, ports_tool_source
from provisioner.store import Store

APP = "shop"
PROGRAMS = (UNPACK_RELEASE, START_UNITS, STOP_UNITS, FORGET_BUILDS, REMOVE_USER)
CLOCK = 1_800_000_000.0
SLUG_SHA = "ab" * 32


def release(version: int) -> Release:
    return Release(
        version,
        f"v{version}",
        "test",
        "2026-01-01T00:00:00+00:00",
        "succeeded",
        slug_key=f"slugs/{APP}/{version}.tgz",
        slug_sha256=SLUG_SHA,
        process_types={"web": "python3 -m http.server $PORT"},
    )


# fakes -----------------------------------------------------------------------------------------
@dataclass
class World:
    """Everything the hosts and the router were sent, in the order it happened."""

    events: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, who: str, what: str) -> None:
        with self.lock:
            self.events.append((who, what))

    def of(self, who: str) -> list[str]:
        return [what for w, what in self.events if w == who]

    def first(self, prefix: str) -> int:
        return next(i for i, (_, what) in enumerate(self.events) if what.startswith(prefix))

    def last(self, prefix: str) -> int:
        return max(i for i, (_, what) in enumerate(self.events) if what.startswith(prefix))

    def clear(self) -> None:
        self.events.clear()


def _shown(data: bytes | None) -> str:
    """How a command's stdin or a file's content appears in the log."""
    if data is None:
        return ""
    known = {ports_tool_source().encode(): "<dyno-ports>", launcher_source().encode(): "<launcher>"}
    if data in known:
        return known[data]
    if len(data) < 100:
        return repr(data.decode())
    return "sha256:" + hashlib.sha256(data).hexdigest()[:12]


@dataclass
class FakeHost:
    """A runner host: answers each command like the host's own programs and keeps which units
    run there (started, stopped, with the ports it reserved); records every command."""

    id: str
    ip: str
    world: World
    running: dict[str, int | None] = field(default_factory=dict)  # unit -> port
    reserved: dict[str, int] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    releases: set[int] = field(default_factory=set)
    never_answer: set[str] = field(default_factory=set)  # units whose port check times out

    @property
    def name(self) -> str:
        return self.id

    def run(
        self,
        argv: Sequence[str],
        *,
        sudo: bool = False,
        stdin: bytes | None = None,
        timeout: float = 120.0,
        check: bool = False,
        label: str | None = None,
    ) -> Result:
        argv = list(argv)
        names = {host_program(n): f"<{n}>" for n in PROGRAMS}
        names[ports_tool_source()] = "<dyno-ports>"
        line = shlex.join(names.get(a, a) for a in argv)
        sent = "<batch>" if argv[-1:] == ["batch"] else _shown(stdin)
        self.world.record(
            self.id, ("sudo " if sudo else "") + line + (f" < {sent}" if sent else "")
        )
        code, out = self._answer(argv, stdin)
        if check and code:
            raise RemoteError(f"on host {self.id}: `{line}` exited {code}")
        return Result(argv, code, out, "", 0.0)

    def put(self, data: bytes, path: str, *, mode: str = "0644") -> object:
        self.world.record(self.id, f"put {path} {mode}")
        self.files[path] = data
        return None

    def _answer(self, argv: list[str], stdin: bytes | None = None) -> tuple[int, str]:
        if argv[:3] == ["python3", "-I", "-c"] and argv[4:] == ["batch"] and stdin:
            return self._batch(json.loads(stdin))
        if argv[:2] == ["systemd-run", "--quiet"]:
            argv = argv[argv.index("sh") :]  # the delayed stop: the fake stops at once
        program = (
            {host_program(n): n for n in PROGRAMS}.get(argv[2])
            if argv[:2] == ["sh", "-c"]
            else None
        )
        if program == START_UNITS:
            self.running.update({u: self.reserved.get(u) for u in argv[4:]})
        elif program == STOP_UNITS:
            for unit in argv[5:]:
                self.running.pop(unit, None)
                self.reserved.pop(unit, None)
        elif program == UNPACK_RELEASE:
            self.releases.add(int(argv[4].rsplit("/v", 1)[1]))
        elif argv[:2] == ["systemctl", "show"]:
            return 0, self._facts()
        elif argv[:2] == ["systemctl", "is-active"]:
            return 0, "active\n" if argv[2] in self.running else "inactive\n"
        elif argv[0] == "cat":
            return (0, self.files[argv[1]].decode()) if argv[1] in self.files else (1, "")
        elif argv[0] == "ls":
            return 0, "".join(f"v{v}\n" for v in sorted(self.releases))
        elif argv[0] == "journalctl":
            return 0, "Traceback (most recent call last):\nOSError: boom\n"
        return 0, ""

    def _batch(self, document: dict[str, Any]) -> tuple[int, str]:
        """dyno-ports batch: each step recorded (indented) and answered like the host."""
        names = {host_program(n): f"<{n}>" for n in PROGRAMS}
        out, ports = [], {}
        for step in document["steps"]:
            op = step["op"]
            if op == "run":
                sent = _shown(step["stdin"].encode()) if "stdin" in step else ""
                line = shlex.join(names.get(a, a) for a in step["argv"])
                self.world.record(self.id, f"  {line}" + (f" < {sent}" if sent else ""))
                if self._answer(step["argv"])[0]:
                    return 2, "\n".join(out)
            elif op == "write":
                self.world.record(self.id, f"  write {step['path']} {step['mode']}")
                self.files[step["path"]] = step["text"].encode()
            elif op == "reserve":
                self.world.record(self.id, f"  reserve {' '.join(step['units'])}")
                for u in step["units"]:
                    ports[u] = self._reserve(u)
                    out.append(f"reserved {u} {ports[u]}")
            elif op == "units":
                self.world.record(self.id, f"  units {' '.join(step['files'])}")
                for u, text in step["files"].items():
                    if PORT_MARK in text:  # as the host: a port only where the unit asks one
                        text = text.replace(PORT_MARK, str(ports[u]))
                    self.files[f"/etc/systemd/system/{u}"] = text.encode()
            elif op == "wait":
                pairs = " ".join(f"{u}={ports[u]}" for u in step["units"])
                self.world.record(self.id, f"  wait {step['addr']} {step['timeout']} {pairs}")
                for u in step["units"]:
                    out.append(f"{'timeout' if u in self.never_answer else 'ok'} {ports[u]}")
                if any(u in self.never_answer for u in step["units"]):
                    return 1, "\n".join(out) + "\n"
        return 0, "\n".join(out) + "\n"

    def _reserve(self, unit: str) -> int:
        taken = set(self.reserved.values()) | {p for p in self.running.values() if p}
        port = next(p for p in range(20000, 21000) if p not in taken)
        self.reserved[unit] = port
        return port

    def _facts(self) -> str:
        blocks = []
        for unit, port in sorted(self.running.items()):
            env = f"PORT={port} " if port else ""
            blocks.append(
                f"Id={unit}\nActiveState=active\nSubState=running\nMainPID=7\nNRestarts=0\n"
                f"Environment={env}DYNO=x\n"
            )
        return "\n".join(blocks)


@dataclass
class FakeFleet:
    hosts: list[FakeHost]

    def ready(self) -> list[Host]:
        return [
            Host(h.id, h.ip, None, "zone-a", "t3.small", "running", None, "runner", "")
            for h in self.hosts
        ]

    def connect(self, host: Host) -> FakeHost:
        return next(h for h in self.hosts if h.id == host.id)

    def close(self) -> None:
        pass


@dataclass
class FakeRouter:
    """The app's target group as ELBv2 keeps it; `fail` makes the named method raise."""

    world: World
    targets: set[RouterTarget] = field(default_factory=set)
    fail: dict[str, BaseException] = field(default_factory=dict)
    pins: int = 0  # rollouts that pinned the app's target group

    def _call(self, what: str, targets: Iterable[RouterTarget] = ()) -> None:
        shown = " ".join(f"{t.ip}:{t.port}" for t in sorted(targets, key=str))
        self.world.record("router", f"{what} {APP} {shown}".rstrip())
        if what in self.fail:
            raise self.fail.pop(what)

    def ensure_rule(
        self, app: str, domains: Iterable[str], maintenance: bool, plain_http: bool | None
    ) -> None:
        self._call("ensure_rule")

    def register(self, app: str, targets: Iterable[RouterTarget]) -> None:
        targets = set(targets)
        self._call("register", targets)
        self.targets |= targets

    def deregister(self, app: str, targets: Iterable[RouterTarget]) -> None:
        targets = set(targets)
        self._call("deregister", targets)
        self.targets -= targets

    def health(self, app: str, targets: Iterable[RouterTarget]) -> dict[RouterTarget, str]:
        targets = set(targets)
        self._call("health", targets)
        return {t: "healthy" if t in self.targets else "unused" for t in targets}

    def drain_seconds(self, app: str) -> int:
        return 30

    def sync_targets(self, app: str, wanted: set[RouterTarget]):
        added, removed = wanted - self.targets, self.targets - wanted
        self.targets = set(wanted)
        return added, removed

    def remove_app(self, app: str) -> None:
        self._call("remove_app")

    @contextlib.contextmanager
    def pinned(self, app: str) -> Iterator[None]:
        self.pins += 1
        yield


class MemoryDocs:
    """The state store's bucket, in memory (what Store reads of the app: its record)."""

    def __init__(self) -> None:
        self.data = {f"apps/{APP}/app.json": {"name": APP, "id": "012345678901"}}

    def get(self, key: str) -> Doc | None:
        return Doc(self.data[key], "etag") if key in self.data else None

    def put(self, key: str, data: Any) -> str:
        self.data[key] = data
        return "etag"


class FakeBlobs:
    def get_url(self, key: str) -> str:
        return f"https://s3.test/{key}?signed"


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def hosts(world: World) -> list[FakeHost]:
    return [FakeHost("h1", "198.18.0.11", world), FakeHost("h2", "198.18.0.12", world)]


@pytest.fixture
def router(world: World) -> FakeRouter:
    return FakeRouter(world)


@pytest.fixture
def said() -> list[str]:
    return []


def make_rollout(hosts: list[FakeHost], router: FakeRouter, said: list[str]) -> Rollout[FakeHost]:
    options = RolloutOptions(health_timeout_s=1.0)
    store = Store(MemoryDocs())
    return Rollout(
        FakeFleet(hosts), store, router, FakeBlobs(), said.append, options, lambda: CLOCK
    )


@pytest.fixture
def rollout(hosts: list[FakeHost], router: FakeRouter, said: list[str]) -> Rollout[FakeHost]:
    return make_rollout(hosts, router, said)


def web(n: int) -> dict[str, ProcessFormation]:
    return {"web": ProcessFormation(n)}


def unit(version: int, dyno: str) -> str:
    return f"dyno-{APP}.v{version}.{dyno}.service"


def start(version: int, dyno: str) -> list[str]:
    """A non-web dyno's start, or an old one's again: a batch of its unit and its start (the
    units step calls off a pending stop of the same name)."""
    return [
        BATCH,
        f"  units {unit(version, dyno)}",
        f"  sh -c '<start-units>' sh {unit(version, dyno)}",
    ]


BATCH = "sudo python3 -I -c '<dyno-ports>' batch < <batch>"


def prepare(version: int) -> list[str]:
    """What a host is sent to take a release, in one batch: the app's user, the launcher (the
    host leaves it alone when it has it), the slug (its URL on the unpack's stdin), the env
    file."""
    user = (
        '  sh -c \'user=$1; shift; "$@" || getent passwd "$user" >/dev/null\' sh dyno-shop '
        'sh -c \'user=$1; shift; getent passwd "$user" >/dev/null || exec "$@"\' sh '
        "dyno-shop useradd --system --user-group --no-create-home --home-dir /app --shell "
        "/usr/sbin/nologin -K SYS_UID_MIN=40000 -K SYS_UID_MAX=49999 -K SYS_GID_MIN=40000 "
        "-K SYS_GID_MAX=49999 dyno-shop"
    )
    return [
        BATCH,
        user,
        f"  write {LAUNCHER_PATH} 0755",
        f"  sh -c '<unpack-release>' sh /srv/dynoform/apps/shop/releases/v{version} {SLUG_SHA} "
        "dyno-shop /srv/dynoform/apps/shop/env"
        f" < 'url = \"https://s3.test/slugs/shop/{version}.tgz?signed\"\\n'",
        f"  write /srv/dynoform/apps/shop/env/v{version}.json 0600",
    ]


def boot(host: FakeHost, version: int, port: int, dyno: str) -> list[str]:
    """The rest of the batch for one new web dyno: its port, unit, start and wait."""
    name = unit(version, dyno)
    return [
        f"  reserve {name}",
        f"  units {name}",
        f"  sh -c '<start-units>' sh {name}",
        f"  wait {host.ip} 60 {name}={port}",
    ]


FACTS = (
    "systemctl show --property=Id,ActiveState,SubState,MainPID,NRestarts,Environment,"
    "ActiveEnterTimestamp,MemoryCurrent --timestamp=unix 'dyno-*.service'"
)


# tests -----------------------------------------------------------------------------------------
def test_every_action_kind_has_its_method(rollout: Rollout[FakeHost]) -> None:
    assert set(rollout.steps()) == set(ActionKind)
    assert set(rollout.undo_steps()) == {ActionKind.DEREGISTER, ActionKind.STOP, ActionKind.START}


def stop_later(host: FakeHost, *units: str) -> str:
    return (
        f"sudo systemd-run --quiet --collect --no-block --unit=dynoform-stop-1800000000000-"
        f"{host.id} sh -c '<stop-units>' sh 30 {' '.join(units)}"
    )


def stop_now(*units: str) -> str:
    return f"sudo sh -c '<stop-units>' sh 0 {' '.join(units)}"


PRUNE = "sudo ls /srv/dynoform/apps/shop/releases"


def test_a_fresh_web_deploy_starts_one_dyno_on_each_host(
    rollout: Rollout[FakeHost], world: World, hosts: list[FakeHost], router: FakeRouter
) -> None:
    plan = rollout.converge(APP, release(1), {"GREETING": "hi"}, web(2))

    h1, h2 = hosts
    assert world.of("h1") == [
        FACTS,
        *prepare(1),
        *boot(h1, 1, 20000, "web.1"),
        PRUNE,
    ]
    assert world.of("h2") == [
        FACTS,
        *prepare(1),
        *boot(h2, 1, 20000, "web.2"),
        PRUNE,
    ]
    assert world.of("router") == [
        "ensure_rule shop",
        "register shop 198.18.0.11:20000 198.18.0.12:20000",
        "health shop 198.18.0.11:20000 198.18.0.12:20000",
    ]
    # Each host's dyno answers (its batch, in the order above) before the router sends it
    # anything.
    assert world.last("  wait") < world.first("register")
    assert h1.running == {unit(1, "web.1"): 20000} and h2.running == {unit(1, "web.2"): 20000}
    unit_file = h1.files[f"/etc/systemd/system/{unit(1, 'web.1')}"].decode()
    assert "Environment=PORT=20000\n" in unit_file and "Environment=DYNO=web.1\n" in unit_file
    assert b'"GREETING": "hi"' in h1.files["/srv/dynoform/apps/shop/env/v1.json"]
    assert [d.unit for d in plan.final] == [unit(1, "web.1"), unit(1, "web.2")]
    assert router.pins == 1  # one target group lookup for the rollout (RouterTable.pinned)


def test_a_new_release_serves_before_the_old_one_retires(
    rollout: Rollout[FakeHost], world: World, hosts: list[FakeHost], router: FakeRouter
) -> None:
    rollout.converge(APP, release(1), {}, web(2))
    world.clear()

    rollout.converge(APP, release(2), {}, web(2))

    h1, h2 = hosts
    for host, dyno in ((h1, "web.1"), (h2, "web.2")):
        assert world.of(host.id) == [
            FACTS,
            *prepare(2),
            *boot(host, 2, 20001, dyno),
            stop_later(host, unit(1, dyno)),
            PRUNE,
        ]
        assert host.running == {unit(2, dyno): 20001}
    new, old = "198.18.0.11:20001 198.18.0.12:20001", "198.18.0.11:20000 198.18.0.12:20000"
    assert world.of("router") == [
        "ensure_rule shop",
        f"register shop {new}",
        f"health shop {new}",
        f"deregister shop {old}",
    ]
    # start, wait port (each host's batch, as above) -> register -> healthy -> deregister old
    # -> stop old
    order = [
        world.last("  wait"),
        world.first("register"),
        world.first("health"),
        world.first("deregister"),
        world.first("sudo systemd-run"),
    ]
    assert order == sorted(order)
    assert {f"{t.ip}:{t.port}" for t in router.targets} == set(new.split())


def test_a_deploy_says_each_phase_as_it_ends(
    hosts: list[FakeHost], router: FakeRouter, said: list[str]
) -> None:
    """The progress lines `dynoform deploy` prints, in order: the web dynos' boot (each host's
    batch), their health, the worker rolled, then the old web dynos' retirement."""
    options = RolloutOptions(health_timeout_s=1.0, settle_s=0.01)
    rollout = Rollout(
        FakeFleet(hosts), Store(MemoryDocs()), router, FakeBlobs(), said.append, options
    )
    both = {**web(2), "worker": ProcessFormation(1)}
    rollout.converge(APP, release(1), {}, both)
    said.clear()

    rollout.converge(APP, release(2), {}, both)

    assert said == [
        "starting web.1, web.2",
        "web.1, web.2 answering on $PORT",
        "web.1, web.2 healthy in the router",
        "starting worker.1",
        "worker.1 running",
        "web.1, web.2 (old) deregistered, draining",
    ]
    assert {u for h in hosts for u in h.running} == {
        unit(2, "web.1"), unit(2, "web.2"), unit(2, "worker.1")
    }  # fmt: skip


def test_scaling_down_retires_the_last_dyno_after_the_drain(
    rollout: Rollout[FakeHost], world: World, hosts: list[FakeHost], router: FakeRouter
) -> None:
    rollout.converge(APP, release(1), {}, web(2))
    world.clear()

    plan = rollout.converge(APP, release(1), {}, web(1))

    h1, h2 = hosts
    assert world.of("h1") == [FACTS]
    assert world.of("h2") == [FACTS, stop_later(h2, unit(1, "web.2"))]
    assert world.of("router") == ["deregister shop 198.18.0.12:20000"]
    assert h1.running == {unit(1, "web.1"): 20000} and h2.running == {}
    assert [d.unit for d in plan.final] == [unit(1, "web.1")]


def test_a_dyno_that_never_answers_undoes_the_new_release(
    rollout: Rollout[FakeHost],
    world: World,
    hosts: list[FakeHost],
    router: FakeRouter,
    said: list[str],
) -> None:
    rollout.converge(APP, release(1), {}, web(2))
    h1, h2 = hosts
    h2.never_answer.add(unit(2, "web.2"))
    world.clear()

    with pytest.raises(
        DynoformError,
        match=re.escape(
            "booting dynos failed on host h2: web.2 of v2 did not answer on $PORT (20001) "
            "within 60 s; its last log lines: Traceback (most recent call last): | OSError: boom"
        ),
    ):
        rollout.converge(APP, release(2), {}, web(2))

    journal = "sudo journalctl --no-pager -o cat -n 10 -u dyno-shop.v2.web.2.service"
    assert world.of("h1") == [
        FACTS,
        *prepare(2),
        *boot(h1, 2, 20001, "web.1"),
        stop_now(unit(2, "web.1")),
    ]
    assert world.of("h2") == [
        FACTS,
        *prepare(2),
        *boot(h2, 2, 20001, "web.2"),
        journal,
        stop_now(unit(2, "web.2")),
    ]
    # Never registered, deregistered all the same (the undo cannot know how far it got).
    assert world.of("router") == [
        "ensure_rule shop",
        "deregister shop 198.18.0.11:20001 198.18.0.12:20001",
    ]
    assert_old_ones_serve(hosts, router)
    assert said[-1].startswith("rolling back: booting dynos failed on host h2: web.2 of v2")


def assert_old_ones_serve(hosts: list[FakeHost], router: FakeRouter) -> None:
    assert hosts[0].running == {unit(1, "web.1"): 20000}
    assert hosts[1].running == {unit(1, "web.2"): 20000}
    assert router.targets == {
        RouterTarget("198.18.0.11", 20000),
        RouterTarget("198.18.0.12", 20000),
    }


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (RuntimeError("the ELB API is down"), "RuntimeError: the ELB API is down"),
        (KeyboardInterrupt(), "interrupted"),
    ],
)
def test_any_exception_at_register_undoes_the_new_release(
    rollout: Rollout[FakeHost],
    world: World,
    hosts: list[FakeHost],
    router: FakeRouter,
    said: list[str],
    error: BaseException,
    reason: str,
) -> None:
    rollout.converge(APP, release(1), {}, web(2))
    router.fail["register"] = error
    world.clear()

    with pytest.raises(type(error)):
        rollout.converge(APP, release(2), {}, web(2))

    for host, dyno in zip(hosts, ("web.1", "web.2"), strict=True):
        assert world.of(host.id) == [
            FACTS,
            *prepare(2),
            *boot(host, 2, 20001, dyno),
            stop_now(unit(2, dyno)),
        ]
    new = "198.18.0.11:20001 198.18.0.12:20001"
    assert world.of("router") == [
        "ensure_rule shop",
        f"register shop {new}",
        f"deregister shop {new}",
    ]
    assert world.first("deregister") < world.first(stop_now(unit(2, "web.1")))
    assert_old_ones_serve(hosts, router)
    assert said[-1] == f"rolling back: {reason}"


def test_the_undo_goes_on_past_its_own_failures(
    rollout: Rollout[FakeHost],
    world: World,
    hosts: list[FakeHost],
    router: FakeRouter,
    said: list[str],
) -> None:
    rollout.converge(APP, release(1), {}, web(2))
    router.fail["register"] = RuntimeError("throttled")
    router.fail["deregister"] = RuntimeError("still throttled")
    world.clear()

    with pytest.raises(RuntimeError, match="^throttled$"):
        rollout.converge(APP, release(2), {}, web(2))

    assert world.of("h1")[-1] == stop_now(unit(2, "web.1"))
    assert world.of("h2")[-1] == stop_now(unit(2, "web.2"))
    assert said[-2:] == [
        "rolling back: RuntimeError: throttled",
        "warning: cleaning up the new dynos failed: RuntimeError: still throttled",
    ]


def test_a_failure_after_the_new_release_serves_is_not_undone(
    rollout: Rollout[FakeHost],
    world: World,
    hosts: list[FakeHost],
    router: FakeRouter,
    said: list[str],
) -> None:
    rollout.converge(APP, release(1), {}, web(2))
    router.fail["deregister"] = RuntimeError("throttled")
    world.clear()

    rollout.converge(APP, release(2), {}, web(2))

    # The old ones are left for the next rollout to stop; the new ones keep serving.
    assert not any("<stop-units>" in what for _, what in world.events)
    assert said[-1] == "warning: retiring the old dynos failed: RuntimeError: throttled"
    assert hosts[0].running == {unit(1, "web.1"): 20000, unit(2, "web.1"): 20001}
    assert RouterTarget("198.18.0.11", 20001) in router.targets


def test_removing_an_app_clears_every_host(
    rollout: Rollout[FakeHost],
    world: World,
    hosts: list[FakeHost],
    router: FakeRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import provisioner.ops.rollout as module

    rollout.converge(APP, release(1), {}, web(1))
    monkeypatch.setattr(module, "ROUTER_SETTLE_S", 0.0)  # the router's moment to follow
    world.clear()

    rollout.remove_app(APP)

    assert world.of("router") == ["remove_app shop"]
    assert world.of("h1") == [
        FACTS,
        stop_now(unit(1, "web.1")),
        "sudo rm -rf -- /srv/dynoform/apps/shop",
        "sudo sh -c '<forget-builds>' sh /srv/dynoform/cache/shop.tar /srv/dynoform/builds/shop",
        "sudo sh -c '<remove-user>' sh dyno-shop shop",
    ]
    assert world.of("h2") == [FACTS, *world.of("h1")[2:]]  # no dynos there: none to stop


# The programs as they were sent before they became files (the hosts run the same commands),
# with what came since: the reference copies of dyno units (start-units, stop-units, remove-user),
# stop-units' own checked stop (a failed `disable --now` used to stop nothing), start-units
# asking about a reload before enabling (whose link made every deploy reload systemd), and its
# enabling by the link itself (`systemctl enable` made every unit of the host need a reload),
# and fewer processes: unpack-release's shell builtins for dirname, cat, grep and echo (and its
# umask), start-units' case for the reload answer and its reference directory made once, and
# stop-units' delayed stop leaving alone a unit started again during the delay (start-units
# makes its reference copies before the start, the mark that stop-units looks for).
OLD_PROGRAMS = {
    START_UNITS: r"""
case $(systemctl show -p NeedDaemonReload --value "$@") in *yes*) systemctl daemon-reload || exit 1;; esac
w=/etc/systemd/system/multi-user.target.wants; [ -d "$w" ] || mkdir -p "$w" || exit 1
for u in "$@"; do ln -sfn "/etc/systemd/system/$u" "$w/$u" || exit 1; done
{ [ -d /srv/dynoform/units ] || install -d -m 0700 /srv/dynoform/units; } && for u in "$@"; do install -m 0600 "/etc/systemd/system/$u" "/srv/dynoform/units/.$u.tmp" && mv -f "/srv/dynoform/units/.$u.tmp" "/srv/dynoform/units/$u" || exit 1; done
err=$(systemctl start "$@" 2>&1 >/dev/null) || { printf '%s\n' "$err" | grep -v 'changed on disk' >&2; exit 1; }
""",
    STOP_UNITS: r"""
delay=$1; shift; if [ -d /srv/dynoform/units ]; then exec 9</srv/dynoform/units; flock 9; for u in "$@"; do rm -f "/srv/dynoform/units/$u"; done; exec 9<&-; fi
marks=/run/dynoform/stops; lock=/run/dynoform/ports.lock
mark() { exec 8>>"$lock"; flock 8; m=; { read -r m < "$marks/$1"; } 2>/dev/null; }
unmark() { mark "$1"; [ "$m" != "stopping $$" ] || rm -f "$marks/$1"; exec 8>&-; }
mkdir -p "$marks"; exec 8>>"$lock"; flock 8; for u in "$@"; do echo "pending $$" > "$marks/$u"; done; exec 8>&-
sleep "$delay"; status=0
for u in "$@"; do
  mark "$u"; go=
  if [ "$m" = "pending $$" ]; then if [ "$delay" = 0 ] || [ ! -e "/srv/dynoform/units/$u" ]; then go=1; echo "stopping $$" > "$marks/$u"; else rm -f "$marks/$u"; fi; fi; exec 8>&-
  if [ -z "$go" ]; then echo "stop-units: $u was started again since; left alone" >&2; continue; fi
  tries=0; until systemctl stop -- "$u" 2>/dev/null || [ $? -eq 5 ]; do tries=$((tries + 1)); [ $tries -lt 3 ] || break; sleep 1; done
  state=$(systemctl show -p ActiveState --value -- "$u" 2>/dev/null)
  case $state in inactive|failed) ;; *) echo "stop-units: $u is still ${state:-unknown}" >&2; status=1; unmark "$u"; continue;; esac
  rm -rf "/etc/systemd/system/$u" /etc/systemd/system/*.wants/"$u" "/run/dynoform/ports/$u" "/etc/systemd/system/$u.d" "/run/systemd/system/$u.d" "/etc/systemd/system.control/$u.d" "/run/systemd/system.control/$u.d"
  unmark "$u"
done
systemctl daemon-reload; systemctl reset-failed -- "$@" >/dev/null 2>&1; exit $status
""",
    FORGET_BUILDS: (
        'rm -rf -- "$1" "${1%.tar}"; for old in "$2"/*; do umount -l -- "$old" 2>/dev/null; '
        'done; rm -rf -- "$2"'
    ),
    REMOVE_USER: r"""
if [ -d /srv/dynoform/units ]; then exec 9</srv/dynoform/units; flock 9; rm -f -- "/srv/dynoform/units/dyno-$2".v*.service; exec 9<&-; fi
left=
for f in /etc/systemd/system/"dyno-$2".v*.service; do
  [ -e "$f" ] || continue
  u=${f##*/}; left=1
  systemctl stop -- "$u" 2>/dev/null || true
  rm -rf -- "$f" /etc/systemd/system/*.wants/"$u" "/run/dynoform/ports/$u" "/etc/systemd/system/$u.d" "/run/systemd/system/$u.d" "/etc/systemd/system.control/$u.d" "/run/systemd/system.control/$u.d"
done
if [ -n "$left" ]; then systemctl daemon-reload; systemctl reset-failed -- "dyno-$2.v*.service" >/dev/null 2>&1 || true; fi
userdel "$1" 2>/dev/null || true
""",
    UNPACK_RELEASE: r"""
set -e
umask 077
dir="$1"; sha="$2"; user="$3"; envdir="$4"
parent=${dir%/*}; appdir=${parent%/*}; tmp="$dir.tmp.$$"
[ -d "$appdir" ] && had_app=1 || had_app=
[ -d "$parent" ] && had_releases=1 || had_releases=
[ -d "$envdir" ] && had_env=1 || had_env=
undo() {
  rm -rf -- "$tmp" "$tmp.tgz" "$tmp.sum"
  [ -n "$had_env" ] || rmdir -- "$envdir" 2>/dev/null || true
  [ -n "$had_releases" ] || rmdir -- "$parent" 2>/dev/null || true
  [ -n "$had_app" ] || rmdir -- "$appdir" 2>/dev/null || true
}
trap 'status=$?; if [ "$status" -ne 0 ]; then undo; fi; exit "$status"' EXIT
trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM
install -d -m 0700 "$envdir"
if { read -r have < "$dir/.dynoform-slug"; } 2>/dev/null && [ "$have" = "$sha" ]; then exit 0; fi
if [ -e "$tmp" ] || [ -L "$tmp" ]; then rm -rf -- "$tmp"; fi
twin=
for slug in "$parent"/v*/.dynoform-slug; do
  if { read -r have < "$slug"; } 2>/dev/null && [ "$have" = "$sha" ]; then twin=${slug%/*}; break; fi
done
if [ -n "$twin" ]; then
  chmod 0755 "$parent" "$appdir"
  cp -a "$twin" "$tmp"
else
  mkdir -p -m 0750 "$tmp"; chmod 0755 "$parent" "$appdir"
  curl -fsS --retry 3 -K - -o "$tmp.tgz"
  printf '%s  %s\n' "$sha" "$tmp.tgz" > "$tmp.sum"
  sha256sum -c --quiet "$tmp.sum" || { echo "slug checksum mismatch" >&2; exit 3; }
  tar -xzf "$tmp.tgz" -C "$tmp" --no-same-owner --no-overwrite-dir
  echo "$sha" > "$tmp/.dynoform-slug"
  chown -R "root:$user" "$tmp"; chmod -R g+rX,g-w,o-rwx "$tmp"
fi
rm -rf -- "$dir" "$tmp.tgz" "$tmp.sum"; mv "$tmp" "$dir"
""",
}


@pytest.mark.parametrize("name", PROGRAMS)
def test_host_programs_are_the_commands_hosts_ran_before(name: str) -> None:
    program = host_program(name)
    assert program == OLD_PROGRAMS[name].strip("\n") + "\n"
    assert not program.startswith("#")  # the file's comment block stays on this side


def test_retired_dynos_of_several_releases_are_named_with_their_release() -> None:
    from provisioner.ops.rollout import dyno_names
    from provisioner.plan.rollout import Action
    from provisioner.plan.units import DynoInstance

    def dereg(release: int, name: str) -> Action:
        return Action(ActionKind.DEREGISTER, 1, DynoInstance("app", release, name, "h1", 20000))

    one = [dereg(3, "web.1"), dereg(3, "web.2")]
    assert dyno_names(one) == "web.1, web.2"
    several = [dereg(2, "web.1"), dereg(3, "web.1"), dereg(2, "web.2"), dereg(3, "web.2")]
    assert dyno_names(several) == "web.1, web.2 of v3; web.1, web.2 of v2"


def test_the_reachable_hosts_are_those_that_accept_a_connection_and_nothing_runs(
    hosts: list[FakeHost], world: World, router: FakeRouter, said: list[str]
) -> None:
    """A deploy chooses its build host among these: no command is sent to learn it."""

    @dataclass
    class HalfDown(FakeFleet):
        def connect(self, host: Host) -> FakeHost:
            if host.id == "h1":
                raise RemoteError("cannot connect to host h1: refused")
            return super().connect(host)

    rollout = Rollout(HalfDown(hosts), Store(MemoryDocs()), router, FakeBlobs(), said.append)
    assert [h.id for h in rollout.reachable()] == ["h2"]
    assert said == ["warning: host h1 is unreachable: cannot connect to host h1: refused"]
    assert world.events == []


# the hosts a rollout looks at (Store.dyno_hosts) ---------------------------------------------
@pytest.fixture
def three(world: World) -> list[FakeHost]:
    return [FakeHost(f"h{n}", f"198.18.0.1{n}", world) for n in (1, 2, 3)]


def recorded(rollout: Rollout[FakeHost]) -> list[str] | None:
    hosts = rollout.store.dyno_hosts(APP)
    return None if hosts is None else sorted(hosts)


def test_a_redeploy_looks_only_at_the_hosts_of_the_apps_dynos(
    three: list[FakeHost], world: World, router: FakeRouter, said: list[str]
) -> None:
    rollout = make_rollout(three, router, said)
    assert recorded(rollout) is None
    rollout.converge(APP, release(1), {}, web(2))
    used = sorted(h.id for h in three if h.running)
    idle = next(h for h in three if not h.running)
    assert recorded(rollout) == used and len(used) == 2
    world.clear()

    rollout.converge(APP, release(2), {}, web(2))

    assert world.of(idle.id) == []  # not even asked what runs there
    assert sorted(h.id for h in three if h.running) == used
    assert recorded(rollout) == used


def test_a_dyno_placed_anew_looks_at_every_host_and_is_recorded_before_it_starts(
    three: list[FakeHost],
    world: World,
    router: FakeRouter,
    said: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rollout = make_rollout(three, router, said)
    rollout.converge(APP, release(1), {}, web(1))
    assert recorded(rollout) == ["h1"]
    seen: list[list[str] | None] = []
    batch = FakeHost._batch

    def batch_seeing_the_record(host: FakeHost, document: dict[str, Any]) -> tuple[int, str]:
        seen.append(recorded(rollout))
        return batch(host, document)

    world.clear()
    monkeypatch.setattr(FakeHost, "_batch", batch_seeing_the_record)
    rollout.converge(APP, release(1), {}, web(3))

    assert all(world.of(h.id)[0] == FACTS for h in three)  # the whole fleet was looked at
    assert seen == [["h1", "h2", "h3"]] * 2  # h2 and h3 booted web.2 and web.3, recorded first
    assert recorded(rollout) == ["h1", "h2", "h3"]


def test_a_host_leaves_the_record_once_a_rollout_saw_its_dynos_gone(
    three: list[FakeHost], world: World, router: FakeRouter, said: list[str]
) -> None:
    """The scale down's stops run on the hosts after the drain, after the command: the next
    rollout looks at those hosts once more, finds them empty and drops them."""
    rollout = make_rollout(three, router, said)
    rollout.converge(APP, release(1), {}, web(3))

    rollout.converge(APP, release(1), {}, web(1))
    assert [sorted(h.running) for h in three] == [[unit(1, "web.1")], [], []]
    assert recorded(rollout) == ["h1", "h2", "h3"]
    world.clear()

    rollout.converge(APP, release(2), {}, web(1))
    assert world.of("h3") == [FACTS]  # looked at once more: nothing of the app runs there
    assert recorded(rollout) == ["h1"]


def test_a_record_naming_a_host_that_is_gone_looks_at_every_host(
    three: list[FakeHost], world: World, router: FakeRouter, said: list[str]
) -> None:
    rollout = make_rollout(three, router, said)
    rollout.converge(APP, release(1), {}, web(2))
    rollout.store.save_dyno_hosts(APP, frozenset({"h1", "h9"}))  # h9 was terminated
    world.clear()

    observed = rollout.observe_app(APP)

    assert observed.scope is None
    assert [world.of(h.id) for h in three] == [[FACTS]] * 3
    rollout.converge(APP, release(2), {}, web(2))
    assert "h9" not in (recorded(rollout) or [])  # the next scoped look is possible again


def test_a_failed_retirement_keeps_the_wider_record(
    three: list[FakeHost], world: World, router: FakeRouter, said: list[str]
) -> None:
    """The old dynos left running are on hosts the next rollout must look at."""
    rollout = make_rollout(three, router, said)
    rollout.converge(APP, release(1), {}, web(2))
    router.fail["deregister"] = RuntimeError("throttled")

    rollout.converge(APP, release(2), {}, web(1))  # web.2 of v1 is left running on h2

    assert said[-1] == "warning: retiring the old dynos failed: RuntimeError: throttled"
    assert three[1].running == {unit(1, "web.2"): 20000}
    assert recorded(rollout) == ["h1", "h2"]


def test_too_little_room_on_the_recorded_hosts_looks_at_every_host(
    three: list[FakeHost], world: World, router: FakeRouter, said: list[str]
) -> None:
    """Other apps' dynos seen on the recorded hosts alone would seem to need room there for
    their dynos elsewhere: the look at every host decides instead of failing."""
    rollout = make_rollout(three, router, said)
    rollout.converge(APP, release(1), {}, web(1))
    assert recorded(rollout) == ["h1"]
    h1, h2, h3 = three
    h1.running["dyno-blog.v1.web.3.service"] = 20100
    h2.running["dyno-blog.v1.web.1.service"] = 20100
    h3.running["dyno-blog.v1.web.2.service"] = 20100
    world.clear()

    rollout.converge(APP, release(2), {}, web(1))

    assert [world.of(h.id)[0] for h in three] == [FACTS] * 3
    assert unit(2, "web.1") in h1.running


def test_a_record_read_before_the_lease_is_read_again(
    three: list[FakeHost], world: World, router: FakeRouter, said: list[str]
) -> None:
    """A deploy looks at the hosts while it waits for the app's lease; a heal may move a dyno
    to another host meanwhile. The rollout, under the lease, reads the record again."""
    rollout = make_rollout(three, router, said)
    rollout.converge(APP, release(1), {}, web(2))
    early = rollout.observe_scope(frozenset({"h1", "h2"}))
    h1, h2, h3 = three
    h3.running[unit(1, "web.3")] = h2.running.pop(unit(1, "web.2"))  # the heal's doing
    rollout.store.save_dyno_hosts(APP, frozenset({"h1", "h2", "h3"}))
    world.clear()

    rollout.converge(APP, release(2), {}, web(2), observed=early)

    assert world.of("h3")[0] == FACTS
    assert not [u for h in three for u in h.running if ".v1." in u]  # web.3 of v1 retired too
