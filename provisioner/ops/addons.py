"""Add-on operations: create, attach, detach, destroy, info, backups, psql; one provider protocol.

Records live in the state store at `addons/<name>.json` (with the generated password, which
leaves the store only inside the config var); backups of self-hosted add-ons in the platform
bucket under `addon-backups/<name>/`. Every attach and detach is a config change, so a new
release rolls the app's dynos. What differs between the self-hosted provider (ops/selfhosted.py)
and the managed one (aws/managed.py) is behind `Provider`; what a provider cannot do, it refuses
with `Unsupported`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from provisioner.aws.managed import Managed
from provisioner.aws.state import StaleWrite
from provisioner.context import Context, Say
from provisioner.errors import DynoformError, NotFound, Unsupported
from provisioner.model import addons as m
from provisioner.ops import oneoff, selfhosted
from provisioner.ops.releases import change_config
from provisioner.store import now_iso

LOCK = "_addons"  # a lease name no app can have: serializes port choice and host launches
PSQL_TOOLS = {"psql": "postgresql-client"}  # Debian's psql, on the host one-offs run on


class Provider(Protocol):
    """Where an add-on's resource lives and how it is made, reached, backed up and removed."""

    name: str

    def create(self, addon: m.Addon, say: Say) -> None:
        """Make the resource; addon.resource records where it is."""

    def url(self, addon: m.Addon) -> str:
        """The URL attached apps get (with the password)."""

    def attach(self, addon: m.Addon, attachment: m.Attachment, say: Say) -> str:
        """Let the attachment's app reach the resource; the URL for its config var."""

    def detach(self, addon: m.Addon, attachment: m.Attachment, say: Say) -> None:
        """Undo attach (the config var is the caller's)."""

    def destroy(self, addon: m.Addon, say: Say) -> None:
        """Remove the resource and its data; done already is fine."""

    def info(self, addon: m.Addon) -> dict[str, str]:
        """Where it lives, as addons:info shows it (never the password)."""

    def capture_backup(self, addon: m.Addon, backup: m.Backup, say: Say) -> m.Backup:
        """Take the backup; the record completed with where it is."""

    def restore_backup(self, backup: m.Backup, addon: m.Addon, say: Say) -> None:
        """Replace addon's data with the backup's; may change addon.resource (then saved)."""

    def download_backup(self, backup: m.Backup, handle: BinaryIO) -> None:
        """Write the backup's file to handle."""

    def delete_backup(self, backup: m.Backup, say: Say) -> None:
        """Remove the backup's data (the dump, the snapshot); gone already is fine."""


def open_provider(ctx: Context, name: str) -> Provider:
    """A provider on the Context: its AWS clients, its fleet and SSH pool (nothing opened yet)."""
    if m.validate_provider(name) == m.MANAGED:
        return Managed(ctx.aws, lambda: ctx.platform(create=False))
    return selfhosted.SelfHosted(ctx, lambda host_id: used_ports(ctx, host_id))


def default_provider(ctx: Context) -> str:
    return m.SELF_HOSTED if ctx.target.is_local else m.MANAGED


# records --------------------------------------------------------------------------------------
def _key(name: str) -> str:
    return f"addons/{m.validate_addon_name(name)}.json"


def get(ctx: Context, name: str) -> m.Addon:
    doc = ctx.store.docs.get(_key(name))
    if doc is None:
        raise NotFound(f"no add-on named {name!r}", "see `dynoform addons`")
    return m.Addon.from_dict(dict(doc.data))


def _all(ctx: Context) -> list[m.Addon]:
    keys = ctx.store.docs.keys("addons/")
    names = [k.removeprefix("addons/").removesuffix(".json") for k in keys]
    return [get(ctx, n) for n in sorted(names) if "/" not in n]


def _for_app(ctx: Context, app: str) -> list[m.Addon]:
    """The add-ons the app (by its id) owns or is attached to."""
    app_id = ctx.store.app_id(app)
    return [a for a in _all(ctx) if a.owned_by(app, app_id) or a.attached_to(app, app_id)]


def list_addons(ctx: Context, app: str | None = None) -> list[m.Addon]:
    """Every add-on of the platform, or those app owns or is attached to."""
    return _for_app(ctx, app) if app else _all(ctx)


def _save(ctx: Context, addon: m.Addon) -> None:
    ctx.store.docs.put(_key(addon.name), addon.to_dict())


def resolve(ctx: Context, ref: str, app: str | None = None) -> m.Addon:
    """An add-on by name, or by its config var on app (DATABASE_URL, DATABASE, REDIS...)."""
    if ref.startswith(("postgres-", "redis-")):
        return get(ctx, ref)
    if app is None:
        raise DynoformError(f"no add-on named {ref!r}", "name it, or pass -a APP")
    var = ref.upper() if ref.upper().endswith("_URL") else f"{ref.upper()}_URL"
    app_id = ctx.store.app_id(app)
    for addon in _for_app(ctx, app):
        attachment = addon.attached_to(app, app_id)
        if attachment is not None and attachment.var == var:
            return addon
    raise NotFound(f"{app} has no add-on attached as {var}", "see `dynoform addons`")


def postgres(ctx: Context, ref: str | None, app: str | None) -> m.Addon:
    """A Postgres add-on by name or var (DATABASE_URL when ref is None)."""
    addon = resolve(ctx, ref or "DATABASE_URL", app)
    if addon.kind != m.POSTGRES:
        raise Unsupported(f"{addon.name} is not a Postgres add-on")
    return addon


def used_ports(ctx: Context, host_id: str) -> set[int]:
    """The ports the self-hosted Redis add-ons on a host have."""
    return {
        int(a.resource["port"])
        for a in _all(ctx)
        if a.provider == m.SELF_HOSTED
        and a.kind == m.REDIS
        and a.resource.get("host_id") == host_id
        and "port" in a.resource
    }


@contextmanager
def _locked(ctx: Context, operation: str) -> Iterator[None]:
    with ctx.store.lease(LOCK, operation, wait=True, timeout=1800):
        yield


# operations -----------------------------------------------------------------------------------
@dataclass
class AddonInfo:
    addon: m.Addon
    lines: dict[str, str]  # what addons:info shows, in order; never the password


def info(ctx: Context, ref: str, app: str | None = None) -> AddonInfo:
    addon = resolve(ctx, ref, app)
    lines = {
        "name": addon.name, "kind": addon.kind, "plan": addon.plan, "provider": addon.provider,
        "state": addon.state, "owner": addon.app, "created_at": addon.created_at,
        "attachments": ", ".join(f"{a.app} as {a.var}" for a in addon.attachments) or "none",
    }  # fmt: skip
    lines.update(open_provider(ctx, addon.provider).info(addon))
    if backups := m.backups_of(addon):
        lines["backups"] = str(len(backups))
    return AddonInfo(addon, lines)


def create(
    ctx: Context,
    app: str,
    service: str,
    plan: str = m.DEFAULT_PLAN,
    as_name: str | None = None,
    provider: str | None = None,
) -> m.Addon:
    """Make an add-on for app (the target's default provider unless named) and attach it."""
    kind = m.normalize_kind(service)
    m.validate_plan(kind, plan)
    provider = m.validate_provider(provider or default_provider(ctx))
    var = m.attachment_var(kind, as_name)
    app_id = ctx.store.app_id(app)
    config, _ = ctx.store.config(app)
    m.check_var_free(config, var, _all(ctx), app)
    addon = m.Addon(
        name=m.new_addon_name(kind), kind=kind, plan=plan, provider=provider, app=app,
        app_id=app_id, created_at=now_iso(), secret=m.new_password(),
    )  # fmt: skip
    try:
        ctx.store.docs.create(_key(addon.name), addon.to_dict())
    except StaleWrite:
        raise DynoformError(f"add-on name {addon.name} was taken", "retry") from None
    ctx.say(f"creating {addon.name} ({kind}, {plan}, {provider}) for {app}")
    try:
        with _locked(ctx, f"addons:create {addon.name}"):
            open_provider(ctx, provider).create(addon, ctx.say)
            addon.state = "available"
            _save(ctx, addon)  # under the lock: the next create sees the port taken
    except BaseException:
        addon.state = "failed"
        _save(ctx, addon)
        ctx.say(f"creating {addon.name} failed; removing what was made")
        _remove_resource(ctx, addon)
        ctx.store.docs.delete(_key(addon.name))  # kept only when the cleanup failed
        raise
    _attach(ctx, addon, m.Attachment(app, var, app_id))
    return addon


def _attach(ctx: Context, addon: m.Addon, attachment: m.Attachment) -> None:
    app, var = attachment.app, attachment.var
    url = open_provider(ctx, addon.provider).attach(addon, attachment, ctx.say)
    addon.attachments = [a for a in addon.attachments if not a.is_for(app, attachment.app_id)]
    addon.attachments.append(attachment)
    _save(ctx, addon)
    release = change_config(ctx, app, {var: url}, (), wait=True)
    ctx.say(f"attached {addon.name} to {app} as {var}: v{release.version}")


def attach(ctx: Context, name: str, app: str, as_name: str | None = None) -> m.Addon:
    """Attach an existing add-on to another app as NAME_URL (the kind's default var)."""
    addon = get(ctx, name)
    if addon.state != "available":
        raise DynoformError(f"{addon.name} is {addon.state}", "wait, or destroy it")
    app_id = ctx.store.app_id(app)
    if addon.attached_to(app, app_id):
        raise DynoformError(f"{addon.name} is already attached to {app}")
    var = m.attachment_var(addon.kind, as_name)
    config, _ = ctx.store.config(app)
    m.check_var_free(config, var, _all(ctx), app)
    _attach(ctx, addon, m.Attachment(app, var, app_id))
    return addon


def detach(ctx: Context, ref: str, app: str) -> m.Addon:
    """Detach an add-on (by name or var) from app: its var goes, in a new release."""
    addon = resolve(ctx, ref, app)
    app_id = ctx.store.app_id(app)
    attachment = addon.attached_to(app, app_id)
    if attachment is None:
        raise DynoformError(f"{addon.name} is not attached to {app}")
    if addon.owned_by(app, app_id) and len(addon.attachments) == 1:
        raise DynoformError(
            f"{app} owns {addon.name} and it is its only attachment",
            f"destroy it instead: dynoform addons:destroy {addon.name} --confirm {addon.name}",
        )
    _detach(ctx, addon, attachment)
    return addon


def _detach(ctx: Context, addon: m.Addon, attachment: m.Attachment, unset: bool = True) -> None:
    """Drop an attachment: its var first (unless the app is going), then the record's entry."""
    if unset:
        _unset(ctx, attachment)
    open_provider(ctx, addon.provider).detach(addon, attachment, ctx.say)
    addon.attachments.remove(attachment)
    _save(ctx, addon)


def _unset(ctx: Context, attachment: m.Attachment) -> None:
    app, var = attachment.app, attachment.var
    if not ctx.store.app_exists(app):
        return
    if not attachment.is_for(app, ctx.store.app_id(app)):
        return  # the name belongs to another app now
    config, _ = ctx.store.config(app)
    if var not in config:
        return
    release = change_config(ctx, app, {}, [var], wait=True)
    ctx.say(f"removed {var} from {app}: v{release.version}")


def destroy(ctx: Context, name: str) -> m.Addon:
    """Config vars first (the dynos stop using it), then the resource, then the record."""
    addon = get(ctx, name)
    for attachment in list(addon.attachments):
        _detach(ctx, addon, attachment)
    addon.state = "destroying"
    _save(ctx, addon)
    ctx.store.docs.delete_prefix(f"addons/{addon.name}/")  # its backup schedule
    _remove_resource(ctx, addon)
    ctx.store.docs.delete(_key(addon.name))
    return addon


def _remove_resource(ctx: Context, addon: m.Addon) -> None:
    provider = open_provider(ctx, addon.provider)
    with _locked(ctx, f"addons:destroy {addon.name}"):
        provider.destroy(addon, ctx.say)
    for backup in m.backups_of(addon):  # RDS keeps snapshots after their instance
        provider.delete_backup(backup, ctx.say)
    ctx.blobs().delete_prefix(f"addon-backups/{addon.name}/")


def destroy_app_addons(ctx: Context, app: str) -> list[str]:
    """When an app goes: its own add-ons are destroyed, its attachments to others removed."""
    gone: list[str] = []
    app_id = ctx.store.app_id(app)
    if len(ctx.store.apps_with_id(app_id)) > 1:
        ctx.say(f"kept the add-ons of {app}: a rename cut short left the app two names")
        return gone
    for addon in _for_app(ctx, app):
        # The app's own var goes with the app: no release to roll for an app being removed.
        if attachment := addon.attached_to(app, app_id):
            _detach(ctx, addon, attachment, unset=False)
        if addon.owned_by(app, app_id):
            destroy(ctx, addon.name)
            ctx.say(f"destroyed add-on {addon.name}")
            gone.append(addon.name)
    return gone


# backups --------------------------------------------------------------------------------------
def backups(ctx: Context, ref: str | None = None, app: str | None = None) -> list[m.Backup]:
    """The backups of a Postgres add-on (by name or var; DATABASE_URL by default)."""
    return m.backups_of(postgres(ctx, ref, app))


def capture_backup(
    ctx: Context,
    ref: str | None = None,
    app: str | None = None,
    scheduled: bool = False,
    now: datetime | None = None,
) -> m.Backup:
    """Back up a Postgres add-on now; the backup is recorded in its record. (The controller's
    backups duty says scheduled, and the time it acts for.)"""
    addon = postgres(ctx, ref, app)
    now = now or datetime.now(UTC)
    backup = m.Backup(m.new_backup_id(now, scheduled), addon.name, now.isoformat("T", "seconds"))
    backup = open_provider(ctx, addon.provider).capture_backup(addon, backup, ctx.say)
    _change_backups(ctx, addon.name, lambda found: [*found, backup])
    return backup


def delete_backups(ctx: Context, name: str, gone: list[m.Backup]) -> None:
    """Delete backups of an add-on: their data, then their entries in its record."""
    addon = get(ctx, name)
    provider = open_provider(ctx, addon.provider)
    for backup in gone:
        provider.delete_backup(backup, ctx.say)
    ids = {b.id for b in gone}
    _change_backups(ctx, name, lambda found: [b for b in found if b.id not in ids])


def _change_backups(
    ctx: Context, name: str, change: Callable[[list[m.Backup]], list[m.Backup]]
) -> None:
    """Change the record's list of backups by a conditional write (a capture and a prune
    running at once must not drop each other's change)."""
    while True:
        doc = ctx.store.docs.get(_key(name))
        if doc is None:
            raise NotFound(f"no add-on named {name!r}", "see `dynoform addons`")
        addon = m.Addon.from_dict(dict(doc.data))
        addon.resource["backups"] = [b.to_dict() for b in change(m.backups_of(addon))]
        try:
            ctx.store.docs.update(_key(name), addon.to_dict(), doc.etag)
            return
        except StaleWrite:
            continue


def find_backup(ctx: Context, ref: str) -> m.Backup:
    """`postgres-abc123:b20260101120000` (or `postgres-abc123` for its latest backup)."""
    name, _, backup_id = ref.partition(":")
    found = m.backups_of(get(ctx, name))
    if backup_id:
        found = [b for b in found if b.id == backup_id]
    if not found:
        raise NotFound(f"no backup {ref!r}", f"see `dynoform pg:backups {name}`")
    return found[-1]


def restore_backup(ctx: Context, ref: str, target: str) -> tuple[m.Backup, m.Addon]:
    """Replace the data of the add-on named target with the backup ref's; attached apps get
    the add-on's new URL if the restore changed it (RDS restores into a new instance)."""
    backup = find_backup(ctx, ref)
    addon = get(ctx, target)
    before = addon.to_dict()
    provider = open_provider(ctx, addon.provider)
    provider.restore_backup(backup, addon, ctx.say)
    if addon.to_dict() != before:
        _save(ctx, addon)
        url = provider.url(addon)
        for attachment in addon.attachments:
            config, _ = ctx.store.config(attachment.app)
            if config.get(attachment.var) != url:
                change_config(ctx, attachment.app, {attachment.var: url}, (), wait=True)
    return backup, addon


def download_backup(ctx: Context, ref: str, path: Path | None = None) -> tuple[m.Backup, Path]:
    """Write a backup's dump to path (default `<addon>-<id>.dump` here); where it went."""
    backup = find_backup(ctx, ref)
    provider = open_provider(ctx, get(ctx, backup.addon).provider)
    path = path or Path(f"{backup.addon}-{backup.id}.dump")
    partial = path.with_name(path.name + ".part")
    if not path.parent.is_dir():
        raise NotFound(f"no directory {str(path.parent)!r} to write {path.name} in", "check -o")
    try:
        with partial.open("wb") as handle:
            provider.download_backup(backup, handle)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return backup, path


# pg:psql --------------------------------------------------------------------------------------
def psql(
    ctx: Context,
    app: str,
    ref: str | None,
    command: str | None,
    on_output: Say,
    interactive: bool = False,
) -> int:
    """psql in a one-off dyno of app against an attached Postgres add-on (by name or var;
    DATABASE_URL by default); its output to on_output (a terminal if interactive); its status.

    The URL stays in the dyno's environment: no argv ever holds it (nor the password)."""
    addon = postgres(ctx, ref, app)
    attachment = addon.attached_to(app, ctx.store.app_id(app))
    if attachment is None:
        raise DynoformError(f"{addon.name} is not attached to {app}")
    line = m.psql_dyno_command(attachment.var, command)
    return oneoff.run(ctx, app, line, on_output, interactive=interactive, tools=PSQL_TOOLS)


# addons:hosts ---------------------------------------------------------------------------------
@dataclass
class AddonHost:
    id: str
    private_ip: str | None
    zone: str
    type: str
    state: str
    addons: list[str]  # the add-ons on it, by name
    changes: list[dict[str, Any]] | None = None  # what the addon playbook changed (or would)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id, "private_ip": self.private_ip, "zone": self.zone, "type": self.type,
            "state": self.state, "addons": self.addons,
        }  # fmt: skip
        if self.changes is not None:
            data["changes"] = self.changes
        return data


def addon_hosts(ctx: Context, check: bool = False, bootstrap: bool = False) -> list[AddonHost]:
    """The self-hosted add-on hosts; with check (or bootstrap) the addon playbook's changes."""
    ctx.platform(create=False)
    fleet = ctx.fleet()
    on_host: dict[str, list[str]] = {}
    for addon in _all(ctx):
        on_host.setdefault(str(addon.resource.get("host_id")), []).append(addon.name)
    rows = []
    for host in selfhosted.addon_hosts(fleet):
        row = AddonHost(host.id, host.private_ip, host.zone, host.type, host.state,
                        on_host.get(host.id, []))  # fmt: skip
        if check or bootstrap:
            report = selfhosted.bootstrap(fleet, host, ctx.say, check=check)
            row.changes = [s.as_dict() for s in report.changes]
        rows.append(row)
    return rows
