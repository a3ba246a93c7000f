"""Host roles as ordered, idempotent steps, in the manner of pyinfra.

Each step names a *fact* (an argv whose output describes the host's current state), a pure
parser for that output, and the desired state; `plan` compares the two and returns the actions
needed, none when the host already matches. Check mode stops after planning; a second apply
plans nothing. The engine runs through a `Runner` it is given, so everything here is pure and
tested with facts in, commands out. Roles are data: `playbooks/<role>.toml`.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from provisioner import paths
from provisioner.errors import DynoformError, ValidationError

if TYPE_CHECKING:  # imported when a role is loaded: ~20 ms that most commands skip
    import jinja2

Cmd = tuple[str, ...]

_MIB = 1024 * 1024
_PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_NAME_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_MODE_RE = re.compile(r"0?[0-7]{3,4}")
_SYSCTL_RE = re.compile(r"[a-z0-9_]+(\.[a-z0-9_-]+)+")
_UNIT_RE = re.compile(r"[A-Za-z0-9@_.:-]+\.(service|slice|socket|timer|target|mount|path)")

_STAT = 'if [ -e "$1" ]; then stat -c "%F|%a|%U|%G" -- "$1"; else echo missing; fi'
_STAT_SUM = (
    'if [ -e "$1" ]; then stat -c "%F|%a|%U|%G" -- "$1" && sha256sum -- "$1"; else echo missing; fi'
)


class PlaybookError(DynoformError):
    """A step could not be planned or applied."""


@dataclass(frozen=True)
class Put:
    """Write content to path atomically with this mode and owner."""

    path: str
    content: bytes
    mode: str
    owner: str
    group: str

    def describe(self) -> str:
        return (
            f"write {self.path} ({len(self.content)} bytes, {self.mode} {self.owner}:{self.group})"
        )


Action = Cmd | Put


def describe(action: Action) -> str:
    return action.describe() if isinstance(action, Put) else shlex.join(action)


@dataclass(frozen=True)
class Fact:
    """What a fact command gave: its exit status and standard output."""

    exit_code: int
    stdout: str


@dataclass(frozen=True)
class Plan:
    reasons: tuple[str, ...] = ()
    actions: tuple[Action, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.actions)


NO_CHANGE = Plan()


# fact parsers (pure) ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PathState:
    kind: str  # "directory", "regular file", ... as stat prints it
    mode: int
    owner: str
    group: str
    sha256: str | None = None


def parse_stat(fact: Fact) -> PathState | None:
    """Parse `stat -c %F|%a|%U|%G` (and an optional sha256sum line); None when missing."""
    lines = fact.stdout.strip().splitlines()
    if fact.exit_code != 0 or not lines or lines[0] == "missing":
        if fact.exit_code != 0 and lines and lines[0] != "missing":
            raise PlaybookError(f"cannot read path state: {fact.stdout.strip()[:200]}")
        return None
    kind, mode, owner, group = lines[0].split("|")
    digest = lines[1].split()[0] if len(lines) > 1 else None
    return PathState(
        kind.replace("regular empty file", "regular file"), int(mode, 8), owner, group, digest
    )


def parse_installed(fact: Fact) -> set[str]:
    """Installed packages from `dpkg-query -W -f '${Package}\\t${db:Status-Abbrev}\\n'`."""
    installed = set()
    for line in fact.stdout.splitlines():
        name, _, status = line.partition("\t")
        if status.startswith("ii"):
            installed.add(name.split(":")[0])
    return installed


@dataclass(frozen=True)
class UserState:
    name: str
    uid: int
    home: str
    shell: str


def parse_passwd(fact: Fact) -> UserState | None:
    """A `getent passwd NAME` line; None when the user does not exist (exit 2)."""
    line = fact.stdout.strip()
    if fact.exit_code != 0 or not line:
        return None
    fields = line.split(":")
    return UserState(fields[0], int(fields[2]), fields[5], fields[6])


def parse_meminfo(text: str) -> int:
    """MemTotal from /proc/meminfo, in bytes."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise PlaybookError("no MemTotal in /proc/meminfo")


def normalize_sysctl(value: str) -> str:
    return " ".join(value.split())


# steps -----------------------------------------------------------------------------------------
class Step(Protocol):
    @property
    def name(self) -> str: ...

    def fact(self) -> Cmd: ...

    def plan(self, fact: Fact) -> Plan: ...


@dataclass(frozen=True)
class Packages:
    packages: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"packages {' '.join(self.packages)}"

    def fact(self) -> Cmd:
        return ("dpkg-query", "-W", "-f=${Package}\t${db:Status-Abbrev}\n", "--", *self.packages)

    def plan(self, fact: Fact) -> Plan:
        missing = [p for p in self.packages if p not in parse_installed(fact)]
        if not missing:
            return NO_CHANGE
        return Plan(
            (f"missing: {' '.join(missing)}",),
            (
                ("apt-get", "update", "-q"),
                (
                    "env",
                    "DEBIAN_FRONTEND=noninteractive",
                    "apt-get",
                    "install",
                    "-y",
                    "-q",
                    "--no-install-recommends",
                    *missing,
                ),
            ),
        )


@dataclass(frozen=True)
class User:
    user: str
    home: str
    shell: str = "/usr/sbin/nologin"
    system: bool = True

    @property
    def name(self) -> str:
        return f"user {self.user}"

    def fact(self) -> Cmd:
        return ("getent", "passwd", self.user)

    def plan(self, fact: Fact) -> Plan:
        state = parse_passwd(fact)
        if state is None:
            create: Cmd = ("useradd", "--user-group", "--home-dir", self.home, "--no-create-home")
            create += ("--shell", self.shell) + (("--system",) if self.system else ())
            return Plan(("missing",), (create + (self.user,),))
        reasons, change = [], []
        if state.home != self.home:
            reasons.append(f"home {state.home} != {self.home}")
            change += ["--home", self.home]
        if state.shell != self.shell:
            reasons.append(f"shell {state.shell} != {self.shell}")
            change += ["--shell", self.shell]
        if not change:
            return NO_CHANGE
        return Plan(tuple(reasons), (("usermod", *change, self.user),))


def _ownership(path: str, state: PathState, mode: int, owner: str, group: str) -> Plan:
    reasons: list[str] = []
    actions: list[Action] = []
    if state.mode != mode:
        reasons.append(f"mode {state.mode:04o} != {mode:04o}")
        actions.append(("chmod", f"{mode:04o}", "--", path))
    if (state.owner, state.group) != (owner, group):
        reasons.append(f"owner {state.owner}:{state.group} != {owner}:{group}")
        actions.append(("chown", f"{owner}:{group}", "--", path))
    return Plan(tuple(reasons), tuple(actions))


@dataclass(frozen=True)
class Directory:
    path: str
    mode: int = 0o755
    owner: str = "root"
    group: str = "root"

    @property
    def name(self) -> str:
        return f"directory {self.path}"

    def fact(self) -> Cmd:
        return ("sh", "-c", _STAT, "sh", self.path)

    def plan(self, fact: Fact) -> Plan:
        state = parse_stat(fact)
        if state is None:
            create = ("install", "-d", "-m", f"{self.mode:04o}", "-o", self.owner, "-g", self.group)
            return Plan(("missing",), (create + ("--", self.path),))
        if state.kind != "directory":
            raise PlaybookError(f"{self.path} is a {state.kind}, not a directory", "move it away")
        return _ownership(self.path, state, self.mode, self.owner, self.group)


@dataclass(frozen=True)
class File:
    path: str
    content: bytes
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    after: tuple[Cmd, ...] = ()  # run when anything changed (reload a daemon, apply a setting)

    @property
    def name(self) -> str:
        return f"file {self.path}"

    def fact(self) -> Cmd:
        return ("sh", "-c", _STAT_SUM, "sh", self.path)

    def plan(self, fact: Fact) -> Plan:
        state = parse_stat(fact)
        put = Put(self.path, self.content, f"{self.mode:04o}", self.owner, self.group)
        want = hashlib.sha256(self.content).hexdigest()
        if state is None:
            return Plan(("missing",), (put, *self.after))
        if state.kind != "regular file":
            raise PlaybookError(f"{self.path} is a {state.kind}, not a file", "move it away")
        if state.sha256 != want:
            reason = f"content differs (sha256 {str(state.sha256)[:12]} != {want[:12]})"
            return Plan((reason,), (put, *self.after))
        plan = _ownership(self.path, state, self.mode, self.owner, self.group)
        if not plan.changed:
            return NO_CHANGE
        return Plan(plan.reasons, plan.actions + self.after)


@dataclass(frozen=True)
class Sysctl:
    key: str
    value: str

    @property
    def name(self) -> str:
        return f"sysctl {self.key}"

    def fact(self) -> Cmd:
        return ("sysctl", "-n", "--", self.key)

    def plan(self, fact: Fact) -> Plan:
        current = normalize_sysctl(fact.stdout) if fact.exit_code == 0 else "(unreadable)"
        want = normalize_sysctl(self.value)
        if current == want:
            return NO_CHANGE
        return Plan((f"{current} != {want}",), (("sysctl", "-q", "-w", f"{self.key}={want}"),))


@dataclass(frozen=True)
class UnitActive:
    unit: str

    @property
    def name(self) -> str:
        return f"unit {self.unit} active"

    def fact(self) -> Cmd:
        return ("systemctl", "is-active", "--", self.unit)

    def plan(self, fact: Fact) -> Plan:
        state = fact.stdout.strip() or "unknown"
        if state == "active":
            return NO_CHANGE
        return Plan((f"is {state}",), (("systemctl", "start", "--", self.unit),))


# roles -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HostFacts:
    """What templates may use about the host, gathered before the steps."""

    memory_bytes: int
    cpus: int

    def vars(self, reserve_mib: int, reserve_percent: int) -> dict[str, Any]:
        reserve = max(reserve_mib * _MIB, self.memory_bytes * reserve_percent // 100)
        dynos = max(self.memory_bytes - reserve, 256 * _MIB)
        return {
            "memory_bytes": self.memory_bytes,
            "cpus": self.cpus,
            "host_reserve_bytes": reserve,
            "dyno_memory_max_bytes": dynos,
        }


HOST_FACTS: dict[str, Cmd] = {"meminfo": ("cat", "/proc/meminfo"), "nproc": ("nproc",)}


def parse_host_facts(outputs: dict[str, Fact]) -> HostFacts:
    return HostFacts(
        memory_bytes=parse_meminfo(outputs["meminfo"].stdout),
        cpus=int(outputs["nproc"].stdout.strip() or "1"),
    )


@dataclass(frozen=True)
class Role:
    name: str
    vars: dict[str, Any]
    specs: tuple[dict[str, Any], ...]  # validated step tables, rendered per host

    def steps(
        self,
        facts: HostFacts,
        templates: jinja2.Environment,
        target_vars: Mapping[str, Any] | None = None,
    ) -> list[Step]:
        """The role's steps for one host; target_vars are what the target adds (its API
        endpoint for the runner role's wall), after the role's [vars], before the host facts."""
        context = dict(self.vars)
        context.update(target_vars or {})
        context.update(
            facts.vars(
                int(self.vars.get("host_reserve_mib", 512)),
                int(self.vars.get("host_reserve_percent", 10)),
            )
        )
        return [_build(spec, context, templates) for spec in self.specs]


_KINDS = {
    "packages": {"packages"},
    "user": {"user", "home", "shell", "system"},
    "directory": {"directory", "mode", "owner", "group"},
    "file": {"file", "template", "content", "mode", "owner", "group", "after"},
    "sysctl": {"sysctl", "value"},
    "unit": {"unit", "active"},
}


def _mode(where: str, value: Any, default: int) -> int:
    if value is None:
        return default
    if not isinstance(value, str) or not _MODE_RE.fullmatch(value):
        raise ValidationError(f"{where}.mode", 'an octal string such as "0644"')
    return int(value, 8)


def _names(where: str, spec: dict[str, Any]) -> None:
    for key in ("owner", "group", "user"):
        if key in spec and not _NAME_RE.fullmatch(str(spec[key])):
            raise ValidationError(f"{where}.{key}", "a user or group name")


def _abs(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/") or "\n" in value:
        raise ValidationError(where, "an absolute path")
    return value


def validate_step(where: str, spec: dict[str, Any]) -> str:
    """The step's kind; raises ValidationError naming the field for anything wrong."""
    kinds = [k for k in _KINDS if k in spec]
    if len(kinds) != 1:
        raise ValidationError(where, f"needs exactly one of {', '.join(_KINDS)}")
    kind = kinds[0]
    unknown = set(spec) - _KINDS[kind]
    if unknown:
        raise ValidationError(f"{where}.{sorted(unknown)[0]}", f"not a field of a {kind} step")
    _names(where, spec)
    if kind == "packages":
        packages = spec["packages"]
        if not isinstance(packages, list) or not all(
            isinstance(p, str) and _PACKAGE_RE.fullmatch(p) for p in packages
        ):
            raise ValidationError(f"{where}.packages", "a list of Debian package names")
    elif kind in ("directory", "file"):
        _abs(f"{where}.{kind}", spec[kind])
        _mode(where, spec.get("mode"), 0)
        if kind == "file" and ("template" in spec) == ("content" in spec):
            raise ValidationError(where, "a file step needs either template or content")
        for index, cmd in enumerate(spec.get("after", [])):
            if not isinstance(cmd, list) or not cmd or not all(isinstance(a, str) for a in cmd):
                raise ValidationError(f"{where}.after[{index}]", "an argv list of strings")
    elif kind == "user":
        _abs(f"{where}.home", spec.get("home"))
    elif kind == "sysctl":
        if not _SYSCTL_RE.fullmatch(spec["sysctl"]) or "value" not in spec:
            raise ValidationError(f"{where}.sysctl", "a key such as net.core.somaxconn and a value")
    elif kind == "unit" and not _UNIT_RE.fullmatch(spec["unit"]):
        raise ValidationError(f"{where}.unit", "a systemd unit name")
    return kind


def _build(spec: dict[str, Any], context: dict[str, Any], templates: jinja2.Environment) -> Step:
    if "packages" in spec:
        return Packages(tuple(spec["packages"]))
    if "user" in spec:
        return User(
            spec["user"],
            spec["home"],
            spec.get("shell", "/usr/sbin/nologin"),
            spec.get("system", True),
        )
    owner = spec.get("owner", "root")
    group = spec.get("group", owner)
    if "directory" in spec:
        return Directory(spec["directory"], _mode("", spec.get("mode"), 0o755), owner, group)
    if "file" in spec:
        if "template" in spec:
            text = templates.get_template(spec["template"]).render(**context)
        else:
            text = str(spec["content"])
        after = tuple(tuple(cmd) for cmd in spec.get("after", []))
        return File(
            spec["file"], text.encode(), _mode("", spec.get("mode"), 0o644), owner, group, after
        )
    if "sysctl" in spec:
        value = templates.from_string(str(spec["value"])).render(**context)
        return Sysctl(spec["sysctl"], value)
    return UnitActive(spec["unit"])


def parse_role(name: str, text: str, source: str = "role") -> Role:
    """A role from its TOML text: `[vars]` and an ordered `[[steps]]` array."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DynoformError(f"{source}: not valid TOML: {exc}") from exc
    steps = data.get("steps", [])
    for index, spec in enumerate(steps):
        validate_step(f"{source}: steps[{index}]", spec)
    return Role(name, dict(data.get("vars", {})), tuple(steps))


def template_env(directory: Path) -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def load_role(name: str) -> tuple[Role, jinja2.Environment]:
    """The shipped role `playbooks/<name>.toml` and the template environment for it."""
    if not _NAME_RE.fullmatch(name):
        raise ValidationError(f"role {name!r}", "a lowercase name")
    path = paths.resource_dir("playbooks") / f"{name}.toml"
    if not path.exists():
        raise DynoformError(f"no playbook role named {name!r}", f"expected {path}")
    return parse_role(name, path.read_text(), path.name), template_env(
        paths.resource_dir("templates")
    )


# the engine ------------------------------------------------------------------------------------
class Runner(Protocol):
    """Runs commands as root on one host (the SSH edge, or a fake in tests)."""

    def fact(self, argv: Cmd) -> Fact: ...

    def apply(self, action: Action) -> None: ...


@dataclass
class StepReport:
    name: str
    changed: bool
    reasons: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "changed": self.changed,
            "reasons": self.reasons,
            "actions": self.actions,
        }


@dataclass
class Report:
    steps: list[StepReport]
    check: bool

    @property
    def changes(self) -> list[StepReport]:
        return [s for s in self.steps if s.changed]


def gather(runner: Runner) -> HostFacts:
    return parse_host_facts({key: runner.fact(argv) for key, argv in HOST_FACTS.items()})


def run_steps(
    steps: Sequence[Step],
    runner: Runner,
    *,
    check: bool = False,
    on_step: Callable[[StepReport], None] | None = None,
) -> Report:
    """Plan each step from its fact; unless check, apply its actions and verify it converged."""
    reports: list[StepReport] = []
    for step in steps:
        plan = step.plan(runner.fact(step.fact()))
        report = StepReport(
            step.name, plan.changed, list(plan.reasons), [describe(a) for a in plan.actions]
        )
        if plan.changed and not check:
            for action in plan.actions:
                runner.apply(action)
            again = step.plan(runner.fact(step.fact()))
            if again.changed:
                raise PlaybookError(
                    f"step `{step.name}` did not converge: {'; '.join(again.reasons)}",
                    "inspect the host with `dynoform hosts:exec`",
                )
        reports.append(report)
        if on_step:
            on_step(report)
    return Report(reports, check)


def run_role(
    role: Role, templates: jinja2.Environment, runner: Runner, *, check: bool = False
) -> Report:
    return run_steps(role.steps(gather(runner), templates), runner, check=check)
