"""Apps, releases, config, formation and leases as documents in the state store.

Layout (one bucket per platform):
  apps/<app>/app.json                  the app record, with the app's immutable id
  apps/<app>/config.json               current config vars {"version": n, "vars": {...}}
  apps/<app>/formation.json            process types -> quantity, size
  apps/<app>/hosts.json                the hosts that may hold the app's dynos (see dyno_hosts)
  apps/<app>/releases/<00000012>.json  release v12 (no config values in it)
  apps/<app>/release-config/<00000012>.json   the config snapshot of v12
  leases/<app>.json                    who is changing the app right now
  domains/<domain>.json                which app a custom domain belongs to (its one owner)

Documents are keyed by the app's name and move when it is renamed; everything else the app owns
(sources, slugs, build caches and logs in the bucket, add-on ownership) is keyed by its id,
which never changes, so a later app with a freed name can neither see nor delete any of it.
"""

from __future__ import annotations

import getpass
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from provisioner.aws.state import Documents, StaleWrite
from provisioner.errors import Conflict, DynoformError, NotFound
from provisioner.model.app import DEFAULT_STACK, App
from provisioner.model.config import validate_config
from provisioner.model.formation import Formation, formation_from_dict, formation_to_dict
from provisioner.model.names import validate_app_name
from provisioner.model.release import Release

MAX_CONFLICT_RETRIES = 50
# A holder renews every LEASE_TTL / LEASE_RENEWALS seconds; a killed holder's lease is free
# LEASE_TTL seconds after its last renewal.
LEASE_TTL = 30.0
LEASE_RENEWALS = 6
# The controller's operations on an app start with this word; a command that finds one holding
# the app's lease waits for it (at most CONTROLLER_PATIENCE s) instead of failing as busy.
CONTROLLER_OPERATION = "controller"
CONTROLLER_PATIENCE = 120.0
# `apps:destroy` holds the app's lease under this operation (the controller's duties that do not
# take the lease, such as cron, look for it).
DESTROY_OPERATION = "destroy"


# An app id is 12 hex digits starting with a digit: app names start with a letter, so no id is
# ever the name of an app made before ids existed (such an app's id is its name).
APP_ID_RE = re.compile(r"[0-9][0-9a-f]{11}")


def new_app_id() -> str:
    return secrets.choice("0123456789") + secrets.token_hex(6)[1:]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def whoami() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


class Store:
    def __init__(self, docs: Documents) -> None:
        self.docs = docs
        self._held: dict[str, Lease] = {}  # app -> the lease this store's caller holds on it

    # apps -------------------------------------------------------------------------------------
    def _app_key(self, app: str) -> str:
        return f"apps/{validate_app_name(app)}/app.json"

    def create_app(self, app: str, app_id: str | None = None) -> App:
        """A new app record (a new id unless given); the keys set later (domains, ...) are
        written when they are."""
        record = App.from_dict({"name": app, "id": app_id or new_app_id(),
                                "created_at": now_iso(), "stack": DEFAULT_STACK,
                                "buildpacks": []})  # fmt: skip
        self.claim_app(record)
        return record

    def claim_app(self, record: App) -> None:
        """Create the app record only if the name is free: of two claims, exactly one wins."""
        app = record.name
        self._fence(app)
        try:
            self.docs.create(self._app_key(app), record.to_dict())
        except StaleWrite:
            raise Conflict(
                f"app {app!r} already exists", "choose another name or use `-a` to pick it"
            ) from None

    def app(self, app: str) -> App:
        doc = self.docs.get(self._app_key(app))
        if doc is None:
            raise NotFound(f"no app named {app!r}", "see `dynoform apps`")
        return App.from_dict(doc.data)

    def app_id(self, app: str) -> str:
        return self.app(app).app_id

    def app_exists(self, app: str) -> bool:
        return self.docs.get(self._app_key(app)) is not None

    def update_app(self, app: str, change: Callable[[App], App]) -> App:
        """Read-modify-write of the app record, retried on concurrent changes:
        `store.update_app(name, lambda a: dataclasses.replace(a, maintenance=True))`."""
        key = self._app_key(app)
        self._fence(app)
        for _ in range(MAX_CONFLICT_RETRIES):
            doc = self.docs.get(key)
            if doc is None:
                raise NotFound(f"no app named {app!r}", "see `dynoform apps`")
            record = change(App.from_dict(doc.data))
            try:
                self.docs.update(key, record.to_dict(), doc.etag)
                return record
            except StaleWrite:
                continue
        raise DynoformError(f"app {app!r} changed too often to update", "retry")

    def apps(self) -> list[str]:
        return sorted(self.docs.children("apps/"))

    def apps_with_id(self, app_id: str) -> list[str]:
        """The apps whose record has this id: one, or two after a rename was cut short."""
        found = []
        for name in self.apps():
            doc = self.docs.get(self._app_key(name))
            if doc is not None and App.from_dict(doc.data).app_id == app_id:
                found.append(name)
        return found

    def delete_app(self, app: str) -> int:
        """Remove the app's documents; its domain claims go first, while it still exists."""
        validate_app_name(app)
        self._fence(app)
        doc = self.docs.get(self._app_key(app))
        for domain in App.from_dict(doc.data).domains if doc else ():
            self.release_domain(domain, app)
        return self.docs.delete_prefix(f"apps/{app}/") + self.docs.delete_prefix(f"leases/{app}.")

    # domains ----------------------------------------------------------------------------------
    def _claim_key(self, domain: str) -> str:
        return f"domains/{domain}.json"

    def domain_owner(self, domain: str) -> str | None:
        """The app whose claim holds the domain (a claim may outlive a destroyed app)."""
        doc = self.docs.get(self._claim_key(domain))
        return str(doc.data["app"]) if doc else None

    def claim_domain(self, domain: str, app: str) -> bool:
        """Make `app` the domain's one owner; True if newly claimed, False if it was already.

        The claim is created with If-None-Match, so of several apps claiming a domain at once
        exactly one wins. A claim whose app is gone (destroyed, or destroyed and created again
        under the same name) is taken over with If-Match; a live owner's is refused, naming it.
        """
        key = self._claim_key(domain)
        mine = {"app": app, "app_id": self.app(app).identity}
        for _ in range(MAX_CONFLICT_RETRIES):
            try:
                self.docs.create(key, dict(mine, claimed_at=now_iso()))
                return True
            except StaleWrite:
                doc = self.docs.get(key)
            if doc is None:
                continue  # released meanwhile: try to create it again
            if self._claim_alive(doc.data):
                owner = str(doc.data["app"])
                if owner == app:
                    return False
                raise DynoformError(
                    f"{domain} is already a domain of {owner}",
                    f"remove it there first: dynoform domains:remove {domain} -a {owner}",
                )
            try:
                self.docs.update(key, dict(mine, claimed_at=now_iso()), doc.etag)
                return True
            except StaleWrite:
                continue
        raise DynoformError(f"domain {domain} changed too often to claim", "retry")

    def _claim_alive(self, claim: dict[str, Any]) -> bool:
        """Whether the claim's app still exists: the same app, not a new one of its name."""
        owner = self.docs.get(self._app_key(str(claim.get("app"))))
        return owner is not None and App.from_dict(owner.data).identity == claim.get("app_id")

    def release_domain(self, domain: str, app: str) -> bool:
        """Give up the app's claim on the domain; False when the app held none.

        Safe without a condition: only the claim's live owner calls this, and a live owner's
        claim is never taken over."""
        key = self._claim_key(domain)
        doc = self.docs.get(key)
        if doc is None or doc.data.get("app") != app:
            return False
        self.docs.delete(key)
        return True

    def move_domains(self, old: str, new: str) -> None:
        """Hand the claims of `old`'s domains to `new` (a rename: both exist meanwhile); a
        domain of old's record without a claim (added before claims) gets one for `new`."""
        new_id = self.app(new).identity
        for domain in self.app(old).domains:
            key = self._claim_key(domain)
            for _ in range(MAX_CONFLICT_RETRIES):
                doc = self.docs.get(key)
                if doc is not None and doc.data.get("app") != old:
                    break  # another app's claim (two records from before claims): leave it
                claim = {"app": new, "app_id": new_id, "claimed_at": now_iso()}
                try:
                    if doc is None:
                        self.docs.create(key, claim)
                    else:
                        self.docs.update(key, claim, doc.etag)
                    break
                except StaleWrite:
                    continue

    # releases ---------------------------------------------------------------------------------
    def _release_key(self, app: str, version: int) -> str:
        return f"apps/{app}/releases/{version:08d}.json"

    def release_versions(self, app: str) -> list[int]:
        prefix = f"apps/{app}/releases/"
        return sorted(int(k[len(prefix) : -len(".json")]) for k in self.docs.keys(prefix))

    def create_release(
        self,
        app: str,
        make: Callable[[int], Release],
        config: dict[str, str],
        newest: int | None = None,
    ) -> Release:
        """Allocate the next version by creating its document; concurrent callers never collide.

        `newest`: the newest version as the caller read it (else the releases are listed). A
        stale one costs only retries: the create is conditional, and a taken number moves on.
        The config snapshot is written right after under the version.
        """
        self._fence(app)
        if newest is None:
            versions = self.release_versions(app)
            newest = versions[-1] if versions else 0
        version = newest + 1
        for _ in range(MAX_CONFLICT_RETRIES * 4):
            release = make(version)
            try:
                self.docs.create(self._release_key(app, version), release.to_dict())
            except StaleWrite:
                version += 1
                continue
            self.docs.put(f"apps/{app}/release-config/{version:08d}.json", validate_config(config))
            return release
        raise DynoformError(f"could not allocate a release number for {app!r}", "retry")

    def release(self, app: str, version: int) -> Release:
        doc = self.docs.get(self._release_key(app, version))
        if doc is None:
            raise NotFound(f"app {app!r} has no release v{version}", "see `dynoform releases`")
        return Release.from_dict(doc.data)

    def releases(self, app: str) -> list[Release]:
        return [self.release(app, v) for v in self.release_versions(app)]

    def release_config(self, app: str, version: int) -> dict[str, str]:
        doc = self.docs.get(f"apps/{app}/release-config/{version:08d}.json")
        return dict(doc.data) if doc else {}

    def set_release_status(self, app: str, version: int, status: str) -> Release:
        key = self._release_key(app, version)
        self._fence(app)
        for _ in range(MAX_CONFLICT_RETRIES):
            doc = self.docs.get(key)
            if doc is None:
                raise NotFound(f"app {app!r} has no release v{version}")
            release = Release.from_dict(doc.data)
            release.status = status
            try:
                self.docs.update(key, release.to_dict(), doc.etag)
                return release
            except StaleWrite:
                continue
        raise DynoformError(f"release v{version} of {app!r} changed too often", "retry")

    def current_release(self, app: str) -> Release | None:
        """The newest succeeded release, the one that serves."""
        for version in reversed(self.release_versions(app)):
            release = self.release(app, version)
            if release.status == "succeeded":
                return release
        return None

    # config -----------------------------------------------------------------------------------
    def config(self, app: str) -> tuple[dict[str, str], str | None]:
        doc = self.docs.get(f"apps/{app}/config.json")
        if doc is None:
            return {}, None
        return dict(doc.data.get("vars", {})), doc.etag

    def save_config(self, app: str, config: dict[str, str], etag: str | None) -> None:
        """Store config vars; raises StaleWrite when another change came first."""
        data = {"vars": validate_config(config), "updated_at": now_iso()}
        self._fence(app)
        key = f"apps/{app}/config.json"
        if etag is None:
            self.docs.create(key, data)
        else:
            self.docs.update(key, data, etag)

    # formation --------------------------------------------------------------------------------
    def formation(self, app: str) -> tuple[Formation, str | None]:
        doc = self.docs.get(f"apps/{app}/formation.json")
        if doc is None:
            return {}, None
        return formation_from_dict(doc.data), doc.etag

    def save_formation(self, app: str, formation: Formation, etag: str | None) -> None:
        key = f"apps/{app}/formation.json"
        data = formation_to_dict(formation)
        self._fence(app)
        if etag is None:
            self.docs.create(key, data)
        else:
            self.docs.update(key, data, etag)

    # where the app's dynos may run ---------------------------------------------------------
    def dyno_hosts(self, app: str) -> frozenset[str] | None:
        """The hosts that may hold the app's dynos; None: not recorded (every host may). A
        rollout adds the hosts it starts dynos on before it starts them, and drops a host only
        when a later look finds none of the app's units there (or the host is lost), so the set
        never misses a dyno: a rollout need look at no other host (provisioner.ops.rollout)."""
        doc = self.docs.get(f"apps/{app}/hosts.json")
        return None if doc is None else frozenset(doc.data.get("hosts", []))

    def save_dyno_hosts(self, app: str, hosts: frozenset[str]) -> None:
        self._fence(app)
        data = {"hosts": sorted(hosts), "updated_at": now_iso()}
        self.docs.put(f"apps/{app}/hosts.json", data)

    # leases -----------------------------------------------------------------------------------
    @contextmanager
    def lease(
        self,
        app: str,
        operation: str,
        ttl: float | None = None,
        wait: bool = False,
        timeout: float = 900,
        patient: bool = True,
    ) -> Iterator[Lease]:
        lease = Lease(self.docs, app, operation, ttl or lease_ttl())
        lease.acquire(wait=wait, timeout=timeout, patient=patient)
        self._held[app] = lease
        try:
            yield lease
        finally:
            self._held.pop(app, None)
            lease.release()

    def lease_holder(self, app: str) -> LeaseInfo | None:
        """Who holds the app's lease now, if anybody (a lease past its expiry is free)."""
        doc = self.docs.get(lease_key(validate_app_name(app)))
        if doc is None:
            return None
        info = LeaseInfo.from_record(doc.data)
        return info if info.expires_at > time.time() else None

    def _fence(self, app: str) -> None:
        """Before a write to an app's documents: if this store holds its lease, it must be ours."""
        lease = self._held.get(app)
        if lease is not None:
            lease.ensure()


def lease_key(app: str) -> str:
    return f"leases/{app}.json"


class LeaseBusy(Conflict):
    """Another operation holds the app's lease."""


def lease_ttl() -> float:
    """LEASE_TTL, or $DYNOFORM_LEASE_TTL (seconds): how long a killed holder blocks its app.
    Shorter means more renewals; tests of killed commands use it to wait less."""
    value = os.environ.get("DYNOFORM_LEASE_TTL", "")
    try:
        return max(5.0, float(value)) if value else LEASE_TTL
    except ValueError:
        raise DynoformError(f"DYNOFORM_LEASE_TTL={value!r} is not a number of seconds") from None


@dataclass
class LeaseInfo:
    holder: str
    operation: str
    acquired_at: str
    expires_at: float

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> LeaseInfo:
        """The lease document as written by Lease._record."""
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})

    def busy_error(self, app: str) -> LeaseBusy:
        left = max(0, round(self.expires_at - time.time()))
        return LeaseBusy(
            f"app {app!r} is busy: {self.operation} by {self.holder} since {self.acquired_at}"
            f" (its lease runs out in {left} s unless the holder renews it)",
            "wait for it to finish, or pass --wait",
        )


class Lease:
    """A per-app lease: one holder at a time; taken over only after it expires.

    It is renewed in the background while held, so a long operation keeps it, and a killed
    process loses it LEASE_TTL seconds after its last renewal. Writes under the lease call
    ensure(), which refuses once the lease may have passed to somebody else: its renewal was
    refused, or the last successful renewal is too old for the lease to be surely ours.
    """

    def __init__(
        self,
        docs: Documents,
        app: str,
        operation: str,
        ttl: float,
        key: str | None = None,
        holder: str | None = None,
    ) -> None:
        self.docs = docs
        self.key = key or lease_key(app)  # another key: a lease on something else
        self.app = app
        self.operation = operation
        self.ttl = ttl
        self.holder = holder or f"{whoami()}:{os.getpid()}:{threading.get_ident()}"
        self.etag: str | None = None
        self.acquired_at = now_iso()
        self.renewed = 0.0  # time.monotonic() of the last write that extended the lease
        self.lost: str | None = None
        self.took_over: LeaseInfo | None = None  # the dead holder this lease was taken from
        self.repaired = False  # repair.changing() repaired the app already
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _record(self) -> dict[str, Any]:
        return {
            "holder": self.holder,
            "operation": self.operation,
            "acquired_at": self.acquired_at,
            "expires_at": time.time() + self.ttl,
        }

    def _write(self, etag: str | None) -> None:
        """Create (etag None) or extend the lease document; StaleWrite when somebody else won."""
        started = time.monotonic()
        record = self._record()
        self.etag = (
            self.docs.create(self.key, record)
            if etag is None
            else (self.docs.update(self.key, record, etag))
        )
        self.renewed = started

    def try_acquire(self) -> LeaseInfo | None:
        """Take the lease; returns None on success, or who holds it."""
        try:
            self._write(None)
            return None
        except StaleWrite:
            pass
        doc = self.docs.get(self.key)
        if doc is None:
            return self.try_acquire()
        info = LeaseInfo.from_record(doc.data)
        if info.expires_at > time.time():
            return info
        try:
            self._write(doc.etag)
            self.took_over = info
            return None
        except StaleWrite:
            return self.try_acquire()

    def acquire(self, wait: bool = False, timeout: float = 900, patient: bool = True) -> None:
        """Take the lease, or raise LeaseBusy; with `wait`, retry until `timeout`. A `patient`
        caller (a command on an app) waits for the controller's short repairs anyway."""
        deadline = time.monotonic() + timeout
        while True:
            holder = self.try_acquire()
            if holder is None:
                break
            patient = patient and holder.operation.startswith(CONTROLLER_OPERATION)
            if not (wait or patient) or time.monotonic() > deadline:
                raise holder.busy_error(self.app)
            if patient and not wait:  # the controller's repairs are short: wait for one
                deadline = min(deadline, time.monotonic() + CONTROLLER_PATIENCE)
                wait = True
            time.sleep(1.0)
        self._renewer = threading.Thread(target=self._renew_loop, daemon=True)
        self._renewer.start()

    def _renew_loop(self) -> None:
        """Extend the lease every ttl/LEASE_RENEWALS s; transient errors are tried again."""
        while not self._stop.wait(self.ttl / LEASE_RENEWALS):
            try:
                self._write(self.etag)
            except StaleWrite:
                self.lost = "another operation took it over"
                return
            except Exception as exc:  # noqa: BLE001 - network or throttling: retry next round
                if self.age() >= self.ttl:
                    self.lost = f"it could not be renewed for {round(self.age())} s ({exc})"
                    return

    def age(self) -> float:
        return time.monotonic() - self.renewed

    def ensure(self) -> None:
        """Raise unless the lease is surely still ours (with a margin of one renewal period)."""
        if self.lost is None and self.age() > self.ttl - self.ttl / LEASE_RENEWALS:
            self.lost = f"it was last renewed {round(self.age())} s ago"
        if self.lost is not None:
            raise DynoformError(
                f"lost the lease on app {self.app!r} during {self.operation}: {self.lost}",
                "nothing more was written; check `dynoform releases` and run the command again",
            )

    def release(self) -> None:
        self._stop.set()
        if self._renewer:
            self._renewer.join(timeout=5)
        if self.lost is None:
            doc = self.docs.get(self.key)
            if doc is not None and doc.data.get("holder") == self.holder:
                self.docs.delete(self.key)
        self.etag = None
