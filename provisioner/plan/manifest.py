"""What `dynoform plan` shows and `apply` does: the manifest against what exists (pure).

`plan_changes` takes the desired state (the manifest, with its source fingerprints and SSM
values read) and the observed one, and returns the changes in the order apply makes them:
the platform first (runner count, security group rules), then each app in the manifest's
order (existence, buildpacks, config, deploy, formation, domains, maintenance, cron), then
what `--prune` removes. Each change has an address (`apps.shop.config.GREETING`), an action
(create, update, delete, deploy) and before/after as shown: config values are masked unless
the manifest holds them literally. What apply needs beyond that rides in `value`, which is
never shown or printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from provisioner.errors import ValidationError
from provisioner.model.formation import Formation
from provisioner.model.manifest import (
    KEEP,
    LITERAL,
    SECRET,
    AddonSpec,
    AppSpec,
    ConfigSpec,
    CronSpec,
    Manifest,
    ProcessSpec,
)
from provisioner.model.sizes import DEFAULT_SIZE

MASKED = "(sensitive)"
GENERATED = "(generated)"
RUNNERS, LB = "runners", "lb"


@dataclass(frozen=True, order=True)
class Rule:
    """One ingress permission of a platform security group: a port range from a CIDR or from
    another group (`sg:lb`, `sg:runners`, or a group id)."""

    group: str  # RUNNERS or LB
    protocol: str  # tcp, udp, or -1 (all)
    low: int
    high: int
    source: str

    @property
    def label(self) -> str:
        proto = "all" if self.protocol == "-1" else self.protocol
        ports = f"{self.low}" if self.low == self.high else f"{self.low}-{self.high}"
        return f"{proto}/{ports} {self.source}"

    @property
    def address(self) -> str:
        return f"platform.security_groups.{self.group}.ingress[{self.label}]"


def default_rules(dyno_ports: tuple[int, int]) -> list[Rule]:
    """The rules platform:init makes (the SSH rule from the operator is handled apart)."""
    low, high = dyno_ports
    return [
        Rule(LB, "tcp", 80, 80, "0.0.0.0/0"),
        Rule(LB, "tcp", 443, 443, "0.0.0.0/0"),
        Rule(RUNNERS, "tcp", low, high, "sg:lb"),
        Rule(RUNNERS, "tcp", 22, 22, "sg:runners"),
    ]


def parse_ingress(text: str) -> Rule:
    """`tcp/6379 10.0.0.0/8` or `tcp/8000-8100 10.0.0.0/8` (checked by the manifest parser)."""
    ports, source = text.split(" ", 1)
    protocol, _, span = ports.partition("/")
    low, _, high = span.partition("-")
    return Rule(RUNNERS, protocol, int(low), int(high or low), source)


@dataclass(frozen=True)
class PlatformState:
    runners: int | None  # running runner hosts; None: not known (no platform)
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class AddonState:
    """An add-on attached to the app (by its var)."""

    name: str
    kind: str
    plan: str
    provider: str
    owned: bool  # made for this app (apply destroys it), or another's attached (detached)
    shared_with: tuple[str, ...] = ()  # the other apps it is attached to


@dataclass(frozen=True)
class AppState:
    """One app as it exists."""

    name: str
    buildpacks: tuple[str, ...] = ()
    formation: Formation = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)
    domains: tuple[str, ...] = ()
    maintenance: bool = False
    cron: dict[str, CronSpec] = field(default_factory=dict)  # job id -> job (not app.json's)
    addons: dict[str, AddonState] = field(default_factory=dict)  # var -> add-on
    deployed: str | None = None  # fingerprint of the source the serving slug came from
    has_slug: bool = False
    autoscaled: tuple[str, ...] = ()  # process types whose quantity autoscaling owns


@dataclass(frozen=True)
class Change:
    address: str
    action: str  # create, update, delete, deploy
    before: str | None = None
    after: str | None = None
    kind: str = ""  # what apply does: app, config, deploy, formation, domain, ...
    app: str | None = None
    key: str | None = None
    value: Any = field(default=None, repr=False, compare=False)  # never shown

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "action": self.action,
            "before": self.before,
            "after": self.after,
        }

    def line(self) -> str:
        sign = {"create": "+", "delete": "-", "update": "~", "deploy": "^"}.get(self.action, "?")
        if self.action == "update" or (self.action == "deploy" and self.before):
            detail = f": {self.before} -> {self.after}"
        elif self.after is not None and self.action != "delete":
            detail = f": {self.after}"
        elif self.before is not None:
            detail = f": {self.before}"
        else:
            detail = ""
        return f"{sign} {self.action} {self.address}{detail}"


@dataclass(frozen=True)
class Plan:
    changes: list[Change]
    unmanaged: list[str]  # apps that exist and the manifest does not name

    def to_dict(self) -> dict[str, Any]:
        return {"changes": [c.to_dict() for c in self.changes], "unmanaged": self.unmanaged}


@dataclass(frozen=True)
class Desired:
    """The manifest with what it refers to read: each app's source fingerprint (of the
    committed tree) and the SSM parameters' values."""

    manifest: Manifest
    fingerprints: dict[str, str] = field(default_factory=dict)  # app -> fingerprint
    ssm: dict[str, str] = field(default_factory=dict)  # parameter path -> value
    dyno_ports: tuple[int, int] = (1024, 65535)


def plan_changes(
    desired: Desired,
    platform: PlatformState | None,
    apps: dict[str, AppState],
    prune: bool = False,
) -> Plan:
    """Every change that brings what exists to the manifest, in the order apply makes them."""
    manifest = desired.manifest
    changes = [] if platform is None else platform_changes(desired, platform)
    for name, spec in manifest.apps.items():
        changes += app_changes(spec, apps.get(name), desired)
    unmanaged = sorted(set(apps) - set(manifest.apps))
    if prune:
        changes += [Change(f"apps.{n}", "delete", kind="app", app=n) for n in unmanaged]
        unmanaged = []
    return Plan(changes, unmanaged)


def platform_changes(desired: Desired, state: PlatformState) -> list[Change]:
    spec = desired.manifest.platform
    changes = []
    if spec.runners is not None and state.runners is not None and spec.runners != state.runners:
        changes.append(
            Change(
                "platform.runners",
                "update",
                str(state.runners),
                str(spec.runners),
                kind="runners",
                value=spec.runners - state.runners,
            )
        )
    wanted = set(default_rules(desired.dyno_ports)) | {parse_ingress(r) for r in spec.ingress}
    if spec.ssh_cidr:
        wanted.add(Rule(RUNNERS, "tcp", 22, 22, spec.ssh_cidr))
    have = set(state.rules)
    for rule in sorted(wanted - have):
        changes.append(Change(rule.address, "create", kind="rule", value=rule))
    for rule in sorted(have - wanted):
        if not spec.ssh_cidr and _operator_ssh(rule):
            continue  # without ssh_cidr the operator's SSH rule is platform:init's to keep
        changes.append(Change(rule.address, "delete", kind="rule", value=rule))
    return changes


def _operator_ssh(rule: Rule) -> bool:
    return (rule.group, rule.protocol, rule.low, rule.high) == (RUNNERS, "tcp", 22, 22) and (
        not rule.source.startswith("sg")
    )


def app_changes(spec: AppSpec, state: AppState | None, desired: Desired) -> list[Change]:
    name = spec.name
    changes = []
    if state is None:
        changes.append(Change(f"apps.{name}", "create", kind="app", app=name))
        state = AppState(name)
    if spec.buildpacks is not None and tuple(spec.buildpacks) != state.buildpacks:
        changes.append(
            Change(
                f"apps.{name}.buildpacks",
                "update",
                _listing(state.buildpacks),
                _listing(spec.buildpacks),
                kind="buildpacks",
                app=name,
                value=list(spec.buildpacks),
            )
        )
    if spec.addons is not None:
        changes += addon_changes(name, spec.addons, state.addons)
    if spec.config is not None:
        # Add-ons' vars are theirs: never removed as config the manifest does not name.
        theirs = {*state.addons, *(a.var for a in spec.addons or ())}
        changes += config_changes(name, spec.config, state.config, desired.ssm, theirs)
    fingerprint = desired.fingerprints.get(name)
    if spec.source is not None and fingerprint is not None:
        if not state.has_slug or state.deployed != fingerprint:
            before = f"source {_short(state.deployed)}" if state.has_slug else None
            changes.append(
                Change(
                    f"apps.{name}.source",
                    "deploy",
                    before,
                    f"source {_short(fingerprint)}",
                    kind="deploy",
                    app=name,
                    value=(spec.source, fingerprint),
                )
            )
    deploying = bool(changes) and changes[-1].kind == "deploy"
    if spec.formation is not None and (state.has_slug or deploying):
        # An app with nothing built yet (a pipeline's later stage before its first promotion)
        # has no dynos to scale: its formation is planned once it has a release.
        # An autoscaled type's quantity is the autoscaler's: the manifest would fight it.
        wanted = {k: v for k, v in spec.formation.items() if k not in state.autoscaled}
        changes += formation_changes(name, wanted, state.formation)
    if spec.domains is not None:
        changes += _set_changes(f"apps.{name}.domains", "domain", name, spec.domains, state.domains)
    if spec.maintenance is not None and spec.maintenance != state.maintenance:
        changes.append(
            Change(
                f"apps.{name}.maintenance",
                "update",
                _on(state.maintenance),
                _on(spec.maintenance),
                kind="maintenance",
                app=name,
                value=spec.maintenance,
            )
        )
    if spec.cron is not None:
        changes += cron_changes(name, spec.cron, state.cron)
    return changes


def addon_changes(
    app: str, specs: tuple[AddonSpec, ...], current: dict[str, AddonState]
) -> list[Change]:
    changes = []
    for spec in specs:
        address = f"apps.{app}.addons[{spec.var}]"
        have = current.get(spec.var)
        wanted = f"{spec.kind} {spec.plan}" + (f" ({spec.provider})" if spec.provider else "")
        if have is None:
            changes.append(
                Change(address, "create", None, wanted, kind="addon", app=app, value=spec)
            )
            continue
        provider = spec.provider or have.provider
        if (have.kind, have.plan, have.provider) != (spec.kind, spec.plan, provider):
            raise ValidationError(
                address,
                f"is {have.name} ({have.kind} {have.plan}, {have.provider}); an add-on cannot "
                f"change in place",
                f"write what it is, or destroy it first: dynoform addons:destroy {have.name}",
            )
    wanted_vars = {spec.var for spec in specs}
    for var, have in sorted(current.items()):
        if var not in wanted_vars:
            if have.owned and have.shared_with:
                raise ValidationError(
                    f"apps.{app}.addons",
                    f"leaves out {have.name} ({var}), which {', '.join(have.shared_with)} "
                    f"use too: destroying it would take their data",
                    "keep it in the manifest, or detach it from those apps first",
                )
            verb = "destroyed" if have.owned else "detached"
            before = f"{have.name} ({have.kind} {have.plan}, {verb})"
            address = f"apps.{app}.addons[{var}]"
            changes.append(Change(address, "delete", before, kind="addon", app=app, key=var))
    return changes


def config_changes(
    app: str,
    specs: dict[str, ConfigSpec],
    current: dict[str, str],
    ssm: dict[str, str],
    theirs: set[str] | None = None,  # add-ons' vars: kept, whatever the table says
) -> list[Change]:
    theirs = theirs or set()
    changes = []
    for key, spec in specs.items():
        address = f"apps.{app}.config.{key}"
        have = current.get(key)
        if spec.kind == KEEP:
            if have is None and key not in theirs:
                raise ValidationError(
                    address, f"is `keep = true` but {key} is not set on {app}", "set it first"
                )
            continue
        if spec.kind == SECRET:
            if have is None:
                changes.append(_config(address, "create", None, GENERATED, app, key, None))
            continue
        value = spec.value if spec.kind == LITERAL else ssm.get(str(spec.path))
        if value is None:
            raise ValidationError(address, f"SSM parameter {spec.path} has no value")
        if value == have:
            continue
        shown = value if spec.kind == LITERAL else f"{MASKED} from ssm {spec.path}"
        # What is set now is not the file's: it may be a secret set by hand, never shown.
        before = None if have is None else MASKED
        action = "create" if have is None else "update"
        changes.append(_config(address, action, before, shown, app, key, value))
    for key in sorted(set(current) - set(specs) - theirs):
        changes.append(_config(f"apps.{app}.config.{key}", "delete", MASKED, None, app, key, None))
    return changes


def _config(
    address: str,
    action: str,
    before: str | None,
    after: str | None,
    app: str,
    key: str,
    value: str | None,
) -> Change:
    return Change(address, action, before, after, kind="config", app=app, key=key, value=value)


def formation_changes(app: str, specs: dict[str, ProcessSpec], current: Formation) -> list[Change]:
    changes = []
    for kind, spec in specs.items():
        have = current.get(kind)
        size = spec.size or (have.size if have else DEFAULT_SIZE)
        if have is not None and (have.quantity, have.size) == (spec.quantity, size):
            continue
        before = f"{have.quantity} {have.size}" if have else None
        changes.append(
            Change(
                f"apps.{app}.formation.{kind}",
                "update" if have else "create",
                before,
                f"{spec.quantity} {size}",
                kind="formation",
                app=app,
                key=kind,
                value=f"{kind}={spec.quantity}:{size}",
            )
        )
    return changes


def cron_changes(
    app: str, specs: tuple[CronSpec, ...], current: dict[str, CronSpec]
) -> list[Change]:
    changes = []
    unmatched = dict(current)
    for spec in specs:
        match = next((i for i, job in unmatched.items() if job == spec), None)
        if match is not None:
            del unmatched[match]
            continue
        changes.append(
            Change(
                f"apps.{app}.cron[{_cron_label(spec)}]", "create", kind="cron", app=app, value=spec
            )
        )
    for job_id, job in sorted(unmatched.items()):
        changes.append(
            Change(
                f"apps.{app}.cron[{_cron_label(job)}]", "delete", kind="cron", app=app, key=job_id
            )
        )
    return changes


def _cron_label(spec: CronSpec) -> str:
    return f"{spec.schedule} {spec.command}" + (" overlap" if spec.overlap else "")


def _set_changes(
    address: str, kind: str, app: str, wanted: tuple[str, ...], have: tuple[str, ...]
) -> list[Change]:
    added = [
        Change(f"{address}[{d}]", "create", kind=kind, app=app, key=d)
        for d in wanted
        if d not in have
    ]
    gone = [
        Change(f"{address}[{d}]", "delete", kind=kind, app=app, key=d)
        for d in have
        if d not in wanted
    ]
    return added + gone


def _listing(items: tuple[str, ...]) -> str:
    return ", ".join(items) or "(detected)"


def _short(fingerprint: str | None) -> str:
    return fingerprint[:7] if fingerprint else "unknown"


def _on(flag: bool) -> str:
    return "on" if flag else "off"
