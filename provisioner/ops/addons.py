"""Add-on operations: create, attach, detach, destroy, backups; providers chosen per target.

Records live in the state store at `addons/<name>.json` (with the generated password, which
leaves the store only inside the config var); backups of self-hosted add-ons in the platform
bucket under `addon-backups/<name>/`. Every attach and detach is a config change, so a new
release rolls the app's dynos.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

from provisioner.aws.blobs import Blobs
from provisioner.aws.state import StaleWrite
from provisioner.context import Context
from provisioner.errors import DynoformError, NotFound
from provisioner.model import addons as m
from provisioner.ops.releases import change_config
from provisioner.store import now_iso

Say = Callable[[str], None]
LOCK = "_addons"  # a lease name no app can have: serializes port choice and host launches


class Provider(Protocol):
    name: str

    def create(self, addon: m.Addon, say: Say) -> str: ...

    def url(self, addon: m.Addon) -> str: ...

    def destroy(self, addon: m.Addon, say: Say) -> None: ...


def _key(name: str) -> str:
    return f"addons/{m.validate_addon_name(name)}.json"


class Addons:
    """The add-on records of one platform and the operations on them."""

    def __init__(self, ctx: Context, providers: Callable[[str], Provider]) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.providers = providers  # provider name -> provider (opened lazily)
        self.say = ctx.say

    # records ----------------------------------------------------------------------------------
    def get(self, name: str) -> m.Addon:
        doc = self.store.docs.get(_key(name))
        if doc is None:
            raise DynoformError(f"no add-on named {name!r}", "see `dynoform addons`")
        return m.Addon.from_dict(dict(doc.data))

    def all(self) -> list[m.Addon]:
        keys = self.store.docs.keys("addons/")
        names = [k.removeprefix("addons/").removesuffix(".json") for k in keys]
        return [self.get(n) for n in sorted(names) if "/" not in n]

    def for_app(self, app: str) -> list[m.Addon]:
        """The add-ons the app (by its id) owns or is attached to."""
        app_id = self.store.app_id(app)
        return [a for a in self.all() if a.owned_by(app, app_id) or a.attached_to(app, app_id)]

    def save(self, addon: m.Addon) -> None:
        self.store.docs.put(_key(addon.name), addon.to_dict())

    def resolve(self, ref: str, app: str | None = None) -> m.Addon:
        """An add-on by name, or by its config var on app (DATABASE_URL, DATABASE, REDIS...)."""
        if ref.startswith(("postgres-", "redis-")):
            return self.get(ref)
        if app is None:
            raise DynoformError(f"no add-on named {ref!r}", "name it, or pass -a APP")
        var = ref.upper() if ref.upper().endswith("_URL") else f"{ref.upper()}_URL"
        app_id = self.store.app_id(app)
        for addon in self.for_app(app):
            attachment = addon.attached_to(app, app_id)
            if attachment is not None and attachment.var == var:
                return addon
        raise NotFound(f"{app} has no add-on attached as {var}", "see `dynoform addons`")

    def used_ports(self, host_id: str) -> set[int]:
        return {
            int(a.resource["port"])
            for a in self.all()
            if a.provider == m.SELF_HOSTED
            and a.kind == m.REDIS
            and a.resource.get("host_id") == host_id
            and "port" in a.resource
        }

    @contextmanager
    def _locked(self, operation: str) -> Any:
        with self.store.lease(LOCK, operation, wait=True, timeout=1800):
            yield

    # operations -------------------------------------------------------------------------------
    def create(
        self,
        app: str,
        service: str,
        plan: str = m.DEFAULT_PLAN,
        as_name: str | None = None,
        provider: str = m.SELF_HOSTED,
    ) -> m.Addon:
        kind = m.normalize_kind(service)
        m.validate_plan(kind, plan)
        m.validate_provider(provider)
        var = m.attachment_var(kind, as_name)
        app_id = self.store.app_id(app)
        config, _ = self.store.config(app)
        m.check_var_free(config, var, self.all(), app)
        addon = m.Addon(
            name=m.new_addon_name(kind), kind=kind, plan=plan, provider=provider, app=app,
            app_id=app_id, created_at=now_iso(), secret=m.new_password(),
        )  # fmt: skip
        try:
            self.store.docs.create(_key(addon.name), addon.to_dict())
        except StaleWrite:
            raise DynoformError(f"add-on name {addon.name} was taken", "retry") from None
        self.say(f"creating {addon.name} ({kind}, {plan}, {provider}) for {app}")
        try:
            with self._locked(f"addons:create {addon.name}"):
                url = self.providers(provider).create(addon, self.say)
                addon.state = "available"
                self.save(addon)  # under the lock: the next create sees the port taken
        except BaseException:
            addon.state = "failed"
            self.save(addon)
            self.say(f"creating {addon.name} failed; removing what was made")
            self._remove_resource(addon)
            self.store.docs.delete(_key(addon.name))  # kept only when the cleanup failed
            raise
        self._attach(addon, app, app_id, var, url)
        return addon

    def _attach(self, addon: m.Addon, app: str, app_id: str, var: str, url: str) -> None:
        addon.attachments = [a for a in addon.attachments if not a.is_for(app, app_id)]
        addon.attachments.append(m.Attachment(app, var, app_id))
        self.save(addon)
        release = change_config(self.ctx, app, {var: url}, (), wait=True)
        self.say(f"attached {addon.name} to {app} as {var}: v{release.version}")

    def attach(self, name: str, app: str, as_name: str | None = None) -> m.Addon:
        addon = self.get(name)
        if addon.state != "available":
            raise DynoformError(f"{addon.name} is {addon.state}", "wait, or destroy it")
        app_id = self.store.app_id(app)
        if addon.attached_to(app, app_id):
            raise DynoformError(f"{addon.name} is already attached to {app}")
        var = m.attachment_var(addon.kind, as_name)
        config, _ = self.store.config(app)
        m.check_var_free(config, var, self.all(), app)
        self._attach(addon, app, app_id, var, self.providers(addon.provider).url(addon))
        return addon

    def detach(self, name: str, app: str) -> m.Addon:
        addon = self.get(name)
        app_id = self.store.app_id(app)
        attachment = addon.attached_to(app, app_id)
        if attachment is None:
            raise DynoformError(f"{addon.name} is not attached to {app}")
        if addon.owned_by(app, app_id) and len(addon.attachments) == 1:
            raise DynoformError(
                f"{app} owns {addon.name} and it is its only attachment",
                f"destroy it instead: dynoform addons:destroy {addon.name} --confirm {addon.name}",
            )
        self._unset(attachment)
        addon.attachments.remove(attachment)
        self.save(addon)
        return addon

    def _unset(self, attachment: m.Attachment) -> None:
        app, var = attachment.app, attachment.var
        if not self.store.app_exists(app):
            return
        if not attachment.is_for(app, self.store.app_id(app)):
            return  # the name belongs to another app now
        config, _ = self.store.config(app)
        if var not in config:
            return
        release = change_config(self.ctx, app, {}, [var], wait=True)
        self.say(f"removed {var} from {app}: v{release.version}")

    def destroy(self, name: str) -> m.Addon:
        """Config vars first (the dynos stop using it), then the resource, then the record."""
        addon = self.get(name)
        for attachment in list(addon.attachments):
            self._unset(attachment)
            addon.attachments.remove(attachment)
            self.save(addon)
        addon.state = "destroying"
        self.save(addon)
        self._remove_resource(addon)
        self.store.docs.delete(_key(addon.name))
        return addon

    def _remove_resource(self, addon: m.Addon) -> None:
        with self._locked(f"addons:destroy {addon.name}"):
            self.providers(addon.provider).destroy(addon, self.say)
        blobs = Blobs(self.store.docs.s3, self.store.docs.bucket)
        blobs.delete_prefix(f"addon-backups/{addon.name}/")

    def destroy_app_addons(self, app: str) -> list[str]:
        """When an app goes: its own add-ons are destroyed, its attachments to others removed."""
        gone: list[str] = []
        app_id = self.store.app_id(app)
        if len(self.store.apps_with_id(app_id)) > 1:
            self.say(f"kept the add-ons of {app}: a rename cut short left the app two names")
            return gone
        for addon in self.for_app(app):
            # The app's own var goes with the app: no release to roll for an app being removed.
            if attachment := addon.attached_to(app, app_id):
                addon.attachments.remove(attachment)
                self.save(addon)
            if addon.owned_by(app, app_id):
                self.destroy(addon.name)
                gone.append(addon.name)
        return gone

    def refresh(self, addon: m.Addon) -> None:
        """Save addon and give every attached app its current URL (after a managed restore)."""
        self.save(addon)
        url = self.providers(addon.provider).url(addon)
        for attachment in addon.attachments:
            config, _ = self.store.config(attachment.app)
            if config.get(attachment.var) != url:
                change_config(self.ctx, attachment.app, {attachment.var: url}, (), wait=True)

    # backups ----------------------------------------------------------------------------------
    def backups(self, name: str) -> list[dict[str, Any]]:
        addon = self.get(name)
        return list(addon.resource.get("backups", []))

    def capture(
        self, name: str, backup: Callable[[m.Addon, str], dict[str, Any]]
    ) -> dict[str, Any]:
        addon = self.get(name)
        if addon.kind != m.POSTGRES:
            raise DynoformError(f"{addon.name} is not a Postgres add-on")
        backup_id = "b" + datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        record = {"id": backup_id, "addon": addon.name, "created_at": now_iso()}
        record.update(backup(addon, backup_id))
        fresh = self.get(name)
        fresh.resource.setdefault("backups", []).append(record)
        self.save(fresh)
        return record

    def find_backup(self, ref: str) -> tuple[m.Addon, dict[str, Any]]:
        """`postgres-abc123:b20260101120000` (or `postgres-abc123` for its latest backup)."""
        name, _, backup_id = ref.partition(":")
        addon = self.get(name)
        found = addon.resource.get("backups", [])
        if backup_id:
            found = [b for b in found if b["id"] == backup_id]
        if not found:
            raise DynoformError(f"no backup {ref!r}", f"see `dynoform pg:backups {name}`")
        return addon, found[-1]


def snapshot_backup_ids(addon: m.Addon) -> list[str]:
    return [b["id"] for b in addon.resource.get("backups", [])]
