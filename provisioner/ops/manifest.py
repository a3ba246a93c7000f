"""`dynoform plan`, `apply` and `export`: the manifest (model/manifest.py) against what exists.

What exists is read by ops/manifest_state.py (the platform's security groups and runners, each
app's records, the committed tree of each source, SSM parameters); the comparison is pure
(plan/manifest.py); apply makes each change through the same operations the commands use
(config changes are releases, scaling is a rollout, each under the app's lease), so apply and
the commands cannot fight, and an interrupted apply is finished by running it again.
"""

from __future__ import annotations

import secrets
from typing import Any

from provisioner.aws import instances
from provisioner.aws.network import DYNO_PORTS
from provisioner.context import Context
from provisioner.errors import DynoformError
from provisioner.model import manifest as m
from provisioner.model.formation import Formation
from provisioner.ops import addons, apps, buildpacks, cron, deploy, domains, hosts, ps
from provisioner.ops.manifest_state import (
    DEFAULT_FILE,
    SOURCE_DOC,
    desired_state,
    fingerprint,
    load,
    observe_app,
    observe_apps,
    observe_platform,
    record_applied,
)
from provisioner.ops.releases import change_config
from provisioner.plan.manifest import (
    RUNNERS,
    AppState,
    Change,
    Plan,
    Rule,
    default_rules,
    plan_changes,
)

__all__ = ["DEFAULT_FILE", "apply", "export", "fingerprint", "load", "plan", "pipeline_next"]


# plan -------------------------------------------------------------------------------------------
def plan(ctx: Context, manifest: m.Manifest, prune: bool = False) -> Plan:
    """The changes apply would make, in order; apps the manifest does not name are listed
    as unmanaged (with prune: destroyed)."""
    desired = desired_state(ctx, manifest)
    platform = observe_platform(ctx)
    observed = observe_apps(ctx, manifest)
    return plan_changes(desired, platform, observed, prune)


# apply ------------------------------------------------------------------------------------------
def apply(ctx: Context, plan: Plan, manifest: m.Manifest) -> list[str]:
    """Make the plan (of manifest)'s changes; returns one line per change made. The manifest
    is recorded once all are made: the controller reports drift from it."""
    done: list[str] = []
    for group in _batches(plan.changes):
        _apply_batch(ctx, group, manifest.platform.instance_type)
        for change in group:
            ctx.say(f"applied: {change.line()}")
            done.append(change.line())
    record_applied(ctx, manifest)
    return done


def _batches(changes: list[Change]) -> list[list[Change]]:
    """Changes made together: an app's config keys in one release, its formation in one
    rollout; everything else one by one, in the plan's order."""
    batches: list[list[Change]] = []
    for change in changes:
        last = batches[-1][0] if batches else None
        together = change.kind in ("config", "formation")
        if last and together and (last.kind, last.app) == (change.kind, change.app):
            batches[-1].append(change)
        else:
            batches.append([change])
    return batches


def _apply_batch(ctx: Context, group: list[Change], instance_type: str | None) -> None:
    first = group[0]
    app = str(first.app)
    if first.kind == "config":
        _apply_config(ctx, app, group)
    elif first.kind == "formation":
        ps.scale(ctx, app, [str(c.value) for c in group])
    elif first.kind == "app":
        apps.create(ctx, app) if first.action == "create" else apps.destroy(ctx, app)
    elif first.kind == "deploy":
        path, print_ = first.value
        result = deploy.deploy_dir(ctx, app, path)
        doc = {"fingerprint": print_, "slug": result.release.slug_sha256}
        ctx.store.docs.put(SOURCE_DOC.format(app=app), doc)
    elif first.kind == "addon":
        _apply_addon(ctx, app, first)
    elif first.kind == "buildpacks":
        buildpacks.set_buildpacks(ctx, app, list(first.value))
    elif first.kind == "domain":
        (domains.add if first.action == "create" else domains.remove)(ctx, app, str(first.key))
    elif first.kind == "maintenance":
        ps.set_maintenance(ctx, app, bool(first.value))
    elif first.kind == "cron":
        _apply_cron(ctx, app, first)
    elif first.kind == "runners":
        _apply_runners(ctx, int(first.value), instance_type)
    elif first.kind == "rule":
        _apply_rule(ctx, first.value, first.action)
    else:
        raise DynoformError(f"cannot apply {first.address}: unknown kind {first.kind!r}")


def _apply_config(ctx: Context, app: str, group: list[Change]) -> None:
    sets: dict[str, str] = {}
    unsets = []
    for change in group:
        key = str(change.key)
        if change.action == "delete":
            unsets.append(key)
        else:  # a secret to generate has no value yet: made here, once
            sets[key] = change.value if change.value is not None else secrets.token_hex(32)
    change_config(ctx, app, sets, unsets)


def _apply_addon(ctx: Context, app: str, change: Change) -> None:
    if change.action == "create":
        spec: m.AddonSpec = change.value
        addons.create(ctx, app, spec.kind, spec.plan, spec.var, spec.provider)
        return
    addon = addons.resolve(ctx, str(change.key), app)
    if addon.owned_by(app, ctx.store.app_id(app)):
        addons.destroy(ctx, addon.name)
    else:
        addons.detach(ctx, addon.name, app)


def _apply_cron(ctx: Context, app: str, change: Change) -> None:
    if change.action == "delete":
        cron.remove(ctx, app, str(change.key))
        return
    spec: m.CronSpec = change.value
    cron.add(ctx, app, spec.schedule, spec.command, spec.overlap)


def _apply_runners(ctx: Context, delta: int, instance_type: str | None) -> None:
    if delta > 0:
        added = hosts.add(ctx, delta, instance_type or hosts.DEFAULT_TYPE)
        if added.failed:
            raise DynoformError(f"{len(added.failed)} of {delta} runners failed to start")
        return
    idle = [r for r in hosts.list_hosts(ctx) if r.role == instances.RUNNER and r.dynos == 0]
    if len(idle) < -delta:
        raise DynoformError(
            f"{-delta} runners should go but only {len(idle)} run no dynos",
            "scale apps down first, or remove hosts by hand: dynoform hosts:remove",
        )
    for row in idle[:-delta]:
        hosts.remove(ctx, row.id)


def _apply_rule(ctx: Context, rule: Rule, action: str) -> None:
    platform = ctx.platform(create=False)
    ids = {"sg:runners": platform.runner_sg_id, "sg:lb": platform.lb_sg_id}
    group_id = platform.runner_sg_id if rule.group == RUNNERS else platform.lb_sg_id
    perm: dict[str, Any] = {"IpProtocol": rule.protocol}
    if rule.protocol != "-1":
        perm.update(FromPort=rule.low, ToPort=rule.high)
    if rule.source.startswith("sg"):
        perm["UserIdGroupPairs"] = [{"GroupId": ids.get(rule.source, rule.source)}]
    elif ":" in rule.source:
        perm["Ipv6Ranges"] = [{"CidrIpv6": rule.source}]
    else:
        perm["IpRanges"] = [{"CidrIp": rule.source}]
    if action == "create":
        ctx.aws.ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[perm])
    else:
        ctx.aws.ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=[perm])


# export -----------------------------------------------------------------------------------------
def export(ctx: Context) -> str:
    """A manifest of what exists: config values as `{ keep = true }`, never the values."""
    platform = observe_platform(ctx)
    lines = []
    if platform is not None:
        extra = sorted(set(platform.rules) - set(default_rules(DYNO_PORTS)))
        ingress = [r.label for r in extra if r.group == RUNNERS and _expressible(r)]
        lines += ["[platform]", f"runners = {platform.runners}"]
        if ingress:
            lines.append(f"ingress = [{', '.join(_quote(r) for r in ingress)}]")
        lines.append("")
    for name in ctx.store.apps():
        try:
            state = observe_app(ctx, name)
        except DynoformError as exc:  # one damaged app must not hide the others
            lines += [f"# {name} left out: {exc.message}", ""]
            continue
        lines += _export_app(state)
    return "\n".join(lines).rstrip() + "\n"


def _expressible(rule: Rule) -> bool:
    """An ingress rule a manifest can hold (a CIDR, tcp or udp); the SSH rule is init's."""
    if rule.source.startswith("sg") or rule.protocol not in ("tcp", "udp"):
        return False
    return not (rule.protocol, rule.low, rule.high) == ("tcp", 22, 22)


def _export_app(state: AppState) -> list[str]:
    lines = [f"[apps.{state.name}]", f"buildpacks = [{', '.join(map(_quote, state.buildpacks))}]"]
    lines.append(f"domains = [{', '.join(map(_quote, state.domains))}]")
    lines.append(f"maintenance = {'true' if state.maintenance else 'false'}")
    jobs = [
        f"{{ schedule = {_quote(j.schedule)}, command = {_quote(j.command)}"
        + (", overlap = true }" if j.overlap else " }")
        for j in state.cron.values()
    ]
    lines.append(f"cron = [{', '.join(jobs)}]")
    attached = [
        f"{{ service = {_quote(a.kind)}, plan = {_quote(a.plan)}, "
        f"as = {_quote(var.removesuffix('_URL'))}, provider = {_quote(a.provider)} }}"
        for var, a in sorted(state.addons.items())
    ]
    lines.append(f"addons = [{', '.join(attached)}]")
    lines += ["", f"[apps.{state.name}.formation]", *_formation_lines(state.formation), ""]
    lines.append(f"[apps.{state.name}.config]")
    lines += [f"{key} = {{ keep = true }}" for key in sorted(state.config)]
    return [*lines, ""]


def _formation_lines(formation: Formation) -> list[str]:
    return [
        f"{kind} = {{ quantity = {pf.quantity}, size = {_quote(pf.size)} }}"
        for kind, pf in sorted(formation.items())
    ]


def _quote(text: str) -> str:
    """A TOML basic string."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c >= " " else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'


def pipeline_next(manifest: m.Manifest, app: str) -> str:
    """The app after `app` in the manifest's pipeline that has it."""
    for name, stages in manifest.pipelines.items():
        if app in stages:
            index = stages.index(app)
            if index + 1 == len(stages):
                raise DynoformError(
                    f"{app} is the last stage of pipeline {name}", "nothing after it"
                )
            return stages[index + 1]
    raise DynoformError(f"no pipeline in the manifest has {app}", "add [pipelines.NAME] stages")
