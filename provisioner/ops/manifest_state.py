"""What the manifest is compared with: the platform's runners and security group rules, each
managed app's records, the committed tree of each source, SSM parameters (read only).

Apart from ops/manifest.py (which changes things through the commands' operations) so that the
controller's drift duty (ops/manifest_drift.py) can read the same state without importing them.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from provisioner.aws import instances
from provisioner.aws.network import DYNO_PORTS
from provisioner.context import Context
from provisioner.errors import DynoformError, NoPlatform
from provisioner.model import manifest as m
from provisioner.ops import addons, autoscale, cron
from provisioner.ops.source import is_git_work_tree
from provisioner.plan.manifest import (
    LB,
    RUNNERS,
    AddonState,
    AppState,
    Desired,
    PlatformState,
    Rule,
)
from provisioner.store import now_iso

DEFAULT_FILE = "dynoform.toml"
SOURCE_DOC = "apps/{app}/manifest-source.json"  # what the serving slug was built from
APPLIED_DOC = "manifest/applied.json"  # the manifest last applied (the drift duty's reference)


# reading the manifest ---------------------------------------------------------------------------
def load(path: Path | str = DEFAULT_FILE) -> m.Manifest:
    """The manifest at path, with each app's source resolved against the file's directory."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DynoformError(
            f"no manifest at {path}", "write dynoform.toml, or give -f PATH"
        ) from exc
    manifest = m.parse_manifest(text, str(path))
    base = path.resolve().parent
    resolved = {
        name: replace(spec, source=str((base / spec.source).resolve())) if spec.source else spec
        for name, spec in manifest.apps.items()
    }
    return replace(manifest, apps=resolved)


def fingerprint(path: Path) -> str:
    """What a deploy of path would build: the committed tree's id for a git repository, else a
    hash of the directory's files (names, modes and contents)."""
    if not path.is_dir():
        raise DynoformError(f"source {path} is not a directory", "fix `source` in the manifest")
    if is_git_work_tree(path):
        tree = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD^{tree}"], capture_output=True, text=True
        )
        if tree.returncode != 0:
            raise DynoformError(f"{path} has no commits", "commit your code")
        return tree.stdout.strip()
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if ".git" not in p.relative_to(path).parts):
        if file.is_file():
            digest.update(f"{file.relative_to(path)}\0{file.stat().st_mode & 0o111}\0".encode())
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


# observing --------------------------------------------------------------------------------------
def observe_platform(ctx: Context) -> PlatformState | None:
    """Runners alive and the security groups' rules; None without a platform."""
    try:
        platform = ctx.platform(create=False)
    except NoPlatform:
        return None
    names = {platform.runner_sg_id: "sg:runners", platform.lb_sg_id: "sg:lb"}
    rules: list[Rule] = []
    for group, group_id in ((RUNNERS, platform.runner_sg_id), (LB, platform.lb_sg_id)):
        found = ctx.aws.ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
        for perm in found[0].get("IpPermissions", []) if found else []:
            rules += _rules_of(group, perm, names)
    runners = instances.list_hosts(ctx.aws, platform.name)
    alive = [h for h in runners if h.state in ("pending", "running")]
    return PlatformState(len(alive), tuple(sorted(set(rules))))


def _rules_of(group: str, perm: dict[str, Any], names: dict[str, str]) -> list[Rule]:
    protocol = str(perm.get("IpProtocol", "-1"))
    low, high = int(perm.get("FromPort", -1)), int(perm.get("ToPort", -1))
    sources = [r["CidrIp"] for r in perm.get("IpRanges", [])]
    sources += [r["CidrIpv6"] for r in perm.get("Ipv6Ranges", [])]
    sources += [names.get(p["GroupId"], p["GroupId"]) for p in perm.get("UserIdGroupPairs", [])]
    return [Rule(group, protocol, low, high, source) for source in sources]


def observe_app(ctx: Context, app: str) -> AppState:
    store = ctx.store
    record = store.app(app)
    current = store.current_release(app)
    formation, _ = store.formation(app)
    config, _ = store.config(app)
    jobs = {
        j.id: m.CronSpec(j.schedule, j.command, j.overlap)
        for j in cron.jobs(ctx, app)
        if j.source == "cli"
    }
    app_id = record.app_id
    attached = {}
    for addon in addons.list_addons(ctx, app):
        attachment = addon.attached_to(app, app_id)
        if attachment is not None:
            owned = addon.owned_by(app, app_id)
            others = tuple(sorted(a.app for a in addon.attachments if a.app != app))
            attached[attachment.var] = AddonState(
                addon.name, addon.kind, addon.plan, addon.provider, owned, others
            )
    has_slug = bool(current and current.slug_key)
    doc = store.docs.get(SOURCE_DOC.format(app=app))
    deployed = None
    if doc is not None and current is not None and doc.data.get("slug") == current.slug_sha256:
        deployed = str(doc.data.get("fingerprint"))
    return AppState(
        name=app,
        buildpacks=tuple(record.buildpacks),
        formation=formation,
        config=config,
        domains=tuple(sorted(record.domains)),
        maintenance=record.maintenance,
        cron=jobs,
        addons=attached,
        autoscaled=_autoscaled(ctx, app),
        deployed=deployed,
        has_slug=has_slug,
    )


def desired_state(ctx: Context, manifest: m.Manifest) -> Desired:
    prints = {n: fingerprint(Path(a.source)) for n, a in manifest.apps.items() if a.source}
    paths = {
        str(spec.path)
        for app in manifest.apps.values()
        for spec in (app.config or {}).values()
        if spec.kind == m.SSM
    }
    return Desired(manifest, prints, {p: _ssm(ctx, p) for p in sorted(paths)}, DYNO_PORTS)


def _ssm(ctx: Context, path: str) -> str:
    try:
        found = ctx.aws.ssm.get_parameter(Name=path, WithDecryption=True)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code == "ParameterNotFound":
            raise DynoformError(
                f"SSM parameter {path} does not exist", "create it, or fix the manifest"
            ) from exc
        raise
    return str(found["Parameter"]["Value"])


def observe_apps(ctx: Context, manifest: m.Manifest) -> dict[str, AppState]:
    """Every app: the managed ones read, the others only named (a damaged one stops nothing)."""
    return {
        name: observe_app(ctx, name) if name in manifest.apps else AppState(name)
        for name in ctx.store.apps()
    }


def record_applied(ctx: Context, manifest: m.Manifest) -> None:
    """Keep the manifest just applied: the controller checks for drift against it."""
    ctx.store.docs.put(APPLIED_DOC, {"text": manifest.text, "applied_at": now_iso()})


def applied(ctx: Context) -> m.Manifest | None:
    """The manifest last applied, as the controller reads it: no sources (it has no checkout),
    SSM references as values that must exist (it does not read SSM)."""
    doc = ctx.store.docs.get(APPLIED_DOC)
    if doc is None:
        return None
    manifest = m.parse_manifest(str(doc.data.get("text", "")), "the applied manifest")
    apps = {name: _for_drift(spec) for name, spec in manifest.apps.items()}
    return replace(manifest, apps=apps)


def _for_drift(spec: m.AppSpec) -> m.AppSpec:
    config = spec.config
    if config is not None:
        keep = m.ConfigSpec(m.KEEP)
        config = {k: keep if c.kind == m.SSM else c for k, c in config.items()}
    return replace(spec, source=None, config=config)


def _autoscaled(ctx: Context, app: str) -> tuple[str, ...]:
    policy = autoscale.policy_of(ctx, app)
    return (policy.type,) if policy else ()
