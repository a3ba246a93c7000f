"""The manifest, `dynoform.toml`: the platform and the apps as they should be (pure).

Parsed with tomllib and checked here; every error names the key (`apps.shop.formation.web`)
and the line of the file where it is, so a typo is found at once. A section left out is not
managed: an app without `[apps.NAME.config]` keeps whatever config it has.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from provisioner.errors import ValidationError
from provisioner.model import addons
from provisioner.model.config import validate_config_value
from provisioner.model.formation import validate_quantity
from provisioner.model.names import (
    normalise_domain,
    validate_app_name,
    validate_config_key,
    validate_process_type,
)
from provisioner.model.sizes import dyno_size
from provisioner.plan.cron import parse_schedule

LITERAL, SECRET, KEEP, SSM = "literal", "secret", "keep", "ssm"
_INGRESS_RE = re.compile(r"(tcp|udp)/(\d+)(?:-(\d+))? (\S+/\d+)")


@dataclass(frozen=True)
class ConfigSpec:
    """One config var as the manifest wants it: a literal value, a secret generated once,
    a value that must exist and is kept as set, or a value read from SSM Parameter Store."""

    kind: str  # LITERAL, SECRET, KEEP or SSM
    value: str | None = None  # the literal
    path: str | None = None  # the SSM parameter


@dataclass(frozen=True)
class ProcessSpec:
    quantity: int
    size: str | None = None  # None: whatever size it has


@dataclass(frozen=True)
class CronSpec:
    schedule: str
    command: str
    overlap: bool = False


@dataclass(frozen=True)
class AddonSpec:
    """An add-on attached to the app as `var` (DATABASE_URL), made for it if missing."""

    kind: str  # postgres or redis
    plan: str
    var: str
    provider: str | None = None  # None: the target's default


@dataclass(frozen=True)
class AppSpec:
    """An app the manifest manages; None for a part it leaves alone."""

    name: str
    source: str | None = None
    buildpacks: tuple[str, ...] | None = None
    formation: dict[str, ProcessSpec] | None = None
    config: dict[str, ConfigSpec] | None = None
    domains: tuple[str, ...] | None = None
    maintenance: bool | None = None
    cron: tuple[CronSpec, ...] | None = None
    addons: tuple[AddonSpec, ...] | None = None


@dataclass(frozen=True)
class PlatformSpec:
    """The platform: runner count and type, and ingress rules beyond the ones platform:init
    makes (`tcp/6379 10.0.0.0/8` on the runners' security group)."""

    runners: int | None = None
    instance_type: str | None = None
    ssh_cidr: str | None = None
    ingress: tuple[str, ...] = ()


@dataclass(frozen=True)
class Manifest:
    platform: PlatformSpec = field(default_factory=PlatformSpec)
    apps: dict[str, AppSpec] = field(default_factory=dict)
    pipelines: dict[str, tuple[str, ...]] = field(default_factory=dict)
    text: str = field(default="", compare=False, repr=False)  # as written (what apply records)


class ManifestError(ValidationError):
    """A bad manifest: the key, the rule, and the line to look at."""


def parse_manifest(text: str, filename: str = "dynoform.toml") -> Manifest:
    """The manifest in text, checked; ManifestError names the key and line of the first fault."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(filename, f"is not valid TOML: {exc}") from exc
    return _Reader(text, filename).manifest(data)


def key_line(text: str, path: tuple[str, ...]) -> int | None:
    """The line (1-based) where the key at path is set, or the nearest table above it."""
    best: tuple[int, int] | None = None  # (matched depth, line)
    table: tuple[str, ...] = ()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip() if '"' not in raw else raw.strip()
        header = re.match(r"^\[\[?([^\]]+)\]\]?", line)
        if header:
            table = _dotted(header.group(1))
            here = table
        elif (assign := re.match(r"^([A-Za-z0-9_.\"' -]+?)\s*=", line)) is not None:
            here = table + _dotted(assign.group(1))
        else:
            continue
        depth = _common(here, path)
        if depth == len(path) and len(here) == len(path):
            return number
        if depth == len(here) and (best is None or depth > best[0]):
            best = (depth, number)
    return best[1] if best else None


def _dotted(text: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in text.split("."))


def _common(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


class _Reader:
    def __init__(self, text: str, filename: str) -> None:
        self.text = text
        self.filename = filename

    def fail(self, path: tuple[str, ...], rule: str) -> ManifestError:
        line = key_line(self.text, path)
        where = f"{self.filename}:{line}" if line else self.filename
        return ManifestError(f"{where}: {'.'.join(path) or 'manifest'}", rule)

    def table(self, value: Any, path: tuple[str, ...], known: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "must be a table")
        for key in value:
            if key not in known:
                raise self.fail((*path, key), f"unknown key (known: {', '.join(sorted(known))})")
        return value

    def typed(self, value: Any, path: tuple[str, ...], kind: type, what: str) -> Any:
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(path, f"must be {what}")
        return value

    def strings(self, value: Any, path: tuple[str, ...]) -> tuple[str, ...]:
        items = self.typed(value, path, list, "a list of strings")
        for index, item in enumerate(items):
            self.typed(item, path, str, f"a list of strings (item {index + 1} is not)")
        return tuple(items)

    def checked(self, path: tuple[str, ...], check: Any, *args: Any) -> Any:
        try:
            return check(*args)
        except ValidationError as exc:
            raise self.fail(path, exc.rule) from exc

    def manifest(self, data: dict[str, Any]) -> Manifest:
        self.table(data, (), {"platform", "apps", "pipelines"})
        platform = self.platform(data.get("platform", {}))
        apps_table = self.table(data.get("apps", {}), ("apps",), set(data.get("apps", {})))
        apps = {name: self.app(name, spec) for name, spec in apps_table.items()}
        pipelines = self.pipelines(data.get("pipelines", {}), apps)
        return Manifest(platform, apps, pipelines, self.text)

    def platform(self, value: Any) -> PlatformSpec:
        path = ("platform",)
        data = self.table(value, path, {"runners", "instance_type", "ssh_cidr", "ingress"})
        runners = data.get("runners")
        if runners is not None:
            self.typed(runners, (*path, "runners"), int, "a whole number")
            if not 0 <= runners <= 100:
                raise self.fail((*path, "runners"), "must be between 0 and 100")
        itype = data.get("instance_type")
        if itype is not None:
            self.typed(itype, (*path, "instance_type"), str, "an instance type such as t3.small")
        ssh = data.get("ssh_cidr")
        if ssh is not None and not re.fullmatch(r"[0-9.]+/\d+", str(ssh)):
            raise self.fail((*path, "ssh_cidr"), "must be a CIDR such as 203.0.113.7/32")
        ingress = self.strings(data.get("ingress", []), (*path, "ingress"))
        for rule in ingress:
            if not _INGRESS_RE.fullmatch(rule):
                raise self.fail((*path, "ingress"), f"{rule!r}: expected 'tcp/PORT[-PORT] CIDR'")
        return PlatformSpec(runners, itype, ssh, ingress)

    def app(self, name: str, value: Any) -> AppSpec:
        path = ("apps", name)
        self.checked(path, validate_app_name, name)
        known = {"source", "buildpacks", "formation", "config", "domains", "maintenance", "cron"}
        known.add("addons")
        data = self.table(value, path, known)
        source = data.get("source")
        if source is not None:
            self.typed(source, (*path, "source"), str, "a directory path")
        packs = data.get("buildpacks")
        domains = data.get("domains")
        maintenance = data.get("maintenance")
        if maintenance is not None:
            self.typed(maintenance, (*path, "maintenance"), bool, "true or false")
        return AppSpec(
            name=name,
            source=source,
            buildpacks=None if packs is None else self.strings(packs, (*path, "buildpacks")),
            formation=self.formation(data.get("formation"), (*path, "formation")),
            config=self.config(data.get("config"), (*path, "config")),
            domains=None if domains is None else self.domains(domains, (*path, "domains")),
            maintenance=maintenance,
            cron=self.cron(data.get("cron"), (*path, "cron")),
            addons=self.addons(data.get("addons"), (*path, "addons")),
        )

    def formation(self, value: Any, path: tuple[str, ...]) -> dict[str, ProcessSpec] | None:
        if value is None:
            return None
        data = self.table(value, path, set(value) if isinstance(value, dict) else set())
        result = {}
        for kind, entry in sorted(data.items()):
            here = (*path, kind)
            self.checked(here, validate_process_type, kind)
            size = None
            if isinstance(entry, dict):
                entry = self.table(entry, here, {"quantity", "size"})
                size = entry.get("size")
                if size is not None:
                    self.checked((*here, "size"), dyno_size, self.typed(size, here, str, "text"))
                entry = entry.get("quantity", 1)
            quantity = self.typed(entry, here, int, "a number of dynos or { quantity, size }")
            self.checked(here, validate_quantity, kind, quantity)
            result[kind] = ProcessSpec(quantity, size)
        return result

    def config(self, value: Any, path: tuple[str, ...]) -> dict[str, ConfigSpec] | None:
        if value is None:
            return None
        data = self.table(value, path, set(value) if isinstance(value, dict) else set())
        result = {}
        for key, entry in sorted(data.items()):
            here = (*path, key)
            self.checked(here, validate_config_key, key)
            result[key] = self.config_value(entry, here)
        return result

    def config_value(self, entry: Any, here: tuple[str, ...]) -> ConfigSpec:
        if isinstance(entry, str):
            self.checked(here, validate_config_value, here[-1], entry)
            return ConfigSpec(LITERAL, value=entry)
        if isinstance(entry, (int, float)) and not isinstance(entry, bool):
            return ConfigSpec(LITERAL, value=str(entry))
        if isinstance(entry, dict) and len(entry) == 1:
            ((kind, arg),) = entry.items()
            if kind == "secret" and arg == "generate":
                return ConfigSpec(SECRET)
            if kind == "keep" and arg is True:
                return ConfigSpec(KEEP)
            if kind == "ssm" and isinstance(arg, str) and arg.startswith("/"):
                return ConfigSpec(SSM, path=arg)
        raise self.fail(
            here,
            'must be text, { secret = "generate" }, { keep = true } or { ssm = "/parameter" }',
        )

    def domains(self, value: Any, path: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted({normalise_domain(d) for d in self.strings(value, path)}))

    def cron(self, value: Any, path: tuple[str, ...]) -> tuple[CronSpec, ...] | None:
        if value is None:
            return None
        entries = self.typed(value, path, list, "a list of { schedule, command } tables")
        result = []
        for entry in entries:
            data = self.table(entry, path, {"schedule", "command", "overlap"})
            schedule = self.typed(data.get("schedule"), (*path, "schedule"), str, "a schedule")
            self.checked((*path, "schedule"), parse_schedule, schedule)
            command = self.typed(data.get("command"), (*path, "command"), str, "a command")
            overlap = self.typed(data.get("overlap", False), (*path, "overlap"), bool, "a bool")
            result.append(CronSpec(schedule, command, overlap))
        return tuple(result)

    def addons(self, value: Any, path: tuple[str, ...]) -> tuple[AddonSpec, ...] | None:
        if value is None:
            return None
        entries = self.typed(value, path, list, "a list of { service, plan, as, provider }")
        result: dict[str, AddonSpec] = {}
        for entry in entries:
            data = self.table(entry, path, {"service", "plan", "as", "provider"})
            service = self.typed(data.get("service"), (*path, "service"), str, "postgres or redis")
            kind = self.checked((*path, "service"), addons.normalize_kind, service)
            plan = self.typed(data.get("plan", addons.DEFAULT_PLAN), (*path, "plan"), str, "a plan")
            self.checked((*path, "plan"), addons.validate_plan, kind, plan)
            provider = data.get("provider")
            if provider is not None:
                self.checked((*path, "provider"), addons.validate_provider, str(provider))
            as_name = data.get("as")
            if as_name is not None:
                self.typed(as_name, (*path, "as"), str, "a name such as DATABASE")
            var = self.checked((*path, "as"), addons.attachment_var, kind, as_name)
            if var in result:
                raise self.fail((*path, "as"), f"two add-ons would be attached as {var}")
            result[var] = AddonSpec(kind, plan, var, provider)
        return tuple(result.values())

    def pipelines(self, value: Any, apps: dict[str, AppSpec]) -> dict[str, tuple[str, ...]]:
        data = self.table(value, ("pipelines",), set(value) if isinstance(value, dict) else set())
        result = {}
        for name, entry in data.items():
            path = ("pipelines", name)
            stages = self.strings(self.table(entry, path, {"stages"}).get("stages"), path)
            if len(stages) < 2:
                raise self.fail((*path, "stages"), "must name at least two apps")
            for stage in stages:
                self.checked((*path, "stages"), validate_app_name, stage)
            result[name] = stages
        return result
