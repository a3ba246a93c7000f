"""Scheduled backups of Postgres add-ons: the schedules, and the controller's `backups` duty.

A schedule lives beside its add-on's record (`addons/<name>/schedule.json`) and goes with it.
The duty (`tick`, on the leader only) takes each backup that is due (plan/backups.py) after
claiming its instant in the schedule by a conditional write: of two leaders that overlap for a
moment, only the first writer takes it. Then it prunes the add-on's scheduled backups that
retention does not keep. What it does shows as `dynoform[backups]` in the logs of the apps the
add-on is attached to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from provisioner import events
from provisioner.aws.state import Doc, StaleWrite
from provisioner.context import Context
from provisioner.errors import DynoformError, NotFound
from provisioner.model import addons as m
from provisioner.ops import addons
from provisioner.plan import backups as plan
from provisioner.store import now_iso

SOURCE = "backups"
EVERY = 5.0  # seconds between ticks: a backup starts within this of its minute
SCHEDULE = "schedule.json"


def schedule_key(addon: str) -> str:
    return f"addons/{m.validate_addon_name(addon)}/{SCHEDULE}"


@dataclass(frozen=True)
class ScheduleRow:
    """What pg:backups:schedules shows of one schedule."""

    schedule: m.BackupSchedule
    attached_as: list[str]  # the app's vars for the add-on (every app's when no app is given)
    next_at: str

    def as_dict(self) -> dict[str, Any]:
        return {**self.schedule.to_dict(), "at": self.schedule.when, "attached_as":
                self.attached_as, "next_at": self.next_at}  # fmt: skip


def _row(ctx: Context, addon: m.Addon, schedule: m.BackupSchedule, app: str | None) -> ScheduleRow:
    app_id = ctx.store.app_id(app) if app else ""
    vars_ = [a.var if app else f"{a.app}:{a.var}" for a in addon.attachments
             if app is None or a.is_for(app, app_id)]  # fmt: skip
    following = plan.following(schedule.at, schedule.zone, datetime.now(UTC))
    return ScheduleRow(schedule, vars_, following.isoformat())


def _read(ctx: Context, addon: str) -> tuple[m.BackupSchedule, Doc] | None:
    doc = ctx.store.docs.get(schedule_key(addon))
    return (m.BackupSchedule.from_dict(dict(doc.data)), doc) if doc else None


# what users run -------------------------------------------------------------------------------
def schedule(ctx: Context, ref: str | None, app: str | None, at: str) -> ScheduleRow:
    """Back up a Postgres add-on (by name or var) daily at `HH:MM ZONE`; replaces its schedule.
    The first backup is the first such time from now on."""
    when, zone = m.parse_backup_time(at)
    addon = addons.postgres(ctx, ref, app)
    found = _read(ctx, addon.name)
    kept = found[0] if found else m.BackupSchedule(addon.name, when, zone, now_iso())
    fresh = replace(kept, at=when, zone=zone, since=now_iso())  # the last run stays on show
    ctx.store.docs.put(schedule_key(addon.name), fresh.to_dict())
    return _row(ctx, addon, fresh, app)


def unschedule(ctx: Context, ref: str | None, app: str | None) -> m.BackupSchedule:
    """Stop the daily backups of an add-on; its backups stay."""
    addon = addons.postgres(ctx, ref, app)
    found = _read(ctx, addon.name)
    if found is None:
        raise NotFound(
            f"{addon.name} has no backup schedule", "see `dynoform pg:backups:schedules`"
        )
    ctx.store.docs.delete_prefix(schedule_key(addon.name))
    return found[0]


def schedules(ctx: Context, app: str | None = None) -> list[ScheduleRow]:
    """The backup schedules of the add-ons app owns or is attached to (all, without app)."""
    rows = []
    for addon in addons.list_addons(ctx, app):
        if addon.kind == m.POSTGRES and (found := _read(ctx, addon.name)):
            rows.append(_row(ctx, addon, found[0], app))
    return rows


# the controller's duty ------------------------------------------------------------------------
def tick(ctx: Context, guard: Callable[[], None], now: datetime | None = None) -> None:
    """Take every scheduled backup that is due, once across the fleet; prune after each.
    (now: the time to act for, in tests; else the clock's, read anew after each backup.)"""
    keys = set(ctx.store.docs.keys("addons/"))
    for key in sorted(keys):
        if not key.endswith(f"/{SCHEDULE}"):
            continue
        if key.removesuffix(f"/{SCHEDULE}") + ".json" not in keys:
            continue  # the add-on's destroy was cut short: its schedule stays, idle
        doc = ctx.store.docs.get(key)
        if doc is None:
            continue  # unscheduled meanwhile
        at = now or datetime.now(UTC)
        instant = plan.due(m.BackupSchedule.from_dict(dict(doc.data)), at)
        if instant is None:
            continue
        guard()
        claimed = claim(ctx, doc, instant, at)
        if claimed is not None:
            _take(ctx, guard, claimed, instant, at)


def claim(
    ctx: Context, doc: Doc, instant: datetime, now: datetime
) -> tuple[m.BackupSchedule, str] | None:
    """Claim the instant's backup by a conditional write of the schedule as read: the schedule
    with its etag, or None when another writer (a second leader, a user) came first."""
    current = m.BackupSchedule.from_dict(dict(doc.data))
    mine = replace(current, last_due=instant.isoformat(), last_started=now.isoformat(
        timespec="seconds"), last_error=None)  # fmt: skip
    etag = _update(ctx, mine, doc.etag)
    return (mine, etag) if etag else None


def _update(ctx: Context, changed: m.BackupSchedule, etag: str) -> str | None:
    """Write the schedule if it is still the one read with etag: its new etag, else None."""
    try:
        return ctx.store.docs.update(schedule_key(changed.addon), changed.to_dict(), etag)
    except StaleWrite:
        return None
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None  # unscheduled since it was read
        raise


def _take(
    ctx: Context,
    guard: Callable[[], None],
    claimed: tuple[m.BackupSchedule, str],
    instant: datetime,
    now: datetime,
) -> None:
    current, etag = claimed
    name = current.addon
    late = plan.late_by(instant, now)
    when = f"{current.when}, {late / 60:.0f} min late" if late else current.when
    try:
        backup = addons.capture_backup(ctx, name, scheduled=True, now=now)
    except Exception as exc:  # noqa: BLE001 - said, and recorded in the schedule
        message = exc.message if isinstance(exc, DynoformError) else repr(exc)
        _say(ctx, name, f"scheduled backup of {name} ({when}) failed: {message}")
        _update(ctx, replace(current, last_error=message), etag)  # not retried until the next
        return
    _say(ctx, name, f"took scheduled backup {backup.ref} ({when})")
    _update(ctx, replace(current, last_backup=backup.id), etag)  # lost to a user's change: fine
    prune(ctx, guard, name, current.zone)


def prune(ctx: Context, guard: Callable[[], None], name: str, zone: str) -> list[m.Backup]:
    """Delete the add-on's scheduled backups that retention does not keep; those deleted."""
    gone = plan.to_prune(m.backups_of(addons.get(ctx, name)), zone)
    if gone:
        guard()
        addons.delete_backups(ctx, name, gone)
        _say(ctx, name, f"retention deleted {', '.join(b.id for b in gone)} of {name}")
    return gone


def _say(ctx: Context, name: str, message: str) -> None:
    """An event in the logs of every app the add-on is attached to (else the platform's)."""
    apps: list[str | None] = []
    try:
        apps += sorted({a.app for a in addons.get(ctx, name).attachments})
    except NotFound:
        pass
    for app in apps or [None]:
        events.record(ctx.store.docs, SOURCE, message, app)
    ctx.say(message)
