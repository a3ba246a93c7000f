"""Scheduled backups (pure): when a schedule's next backup is due, and which backups it keeps.

A schedule says `HH:MM` in a time zone, every day. The instant due is the newest such instant
that has passed, unless it came before the schedule was set or was claimed already: so a
controller that was down at the time takes the missed backup once, late, and only the newest
missed one. Instants are compared in UTC (aware datetimes with the same tzinfo compare by their
wall clock, which would be wrong across a DST change). A time that a DST change skips counts
with the offset before the change (02:30 on the spring-forward day in New York is 03:30 EDT);
a time it repeats counts once, the first time.

Retention, of scheduled backups only (manual captures are never pruned, as on Heroku): the
newest backup of each of the 7 newest days that have one, and the newest of each of the 4
newest ISO weeks (Monday to Sunday) that have one; days and weeks in the schedule's zone.
Counting days that have a backup, not calendar days, means a gap (a controller down for a
fortnight) never prunes the backups taken before it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from datetime import time as clock

from provisioner.model import addons as m

DAILY = 7
WEEKLY = 4
LATE_AFTER = 60.0  # a backup started this many seconds after its time is logged as late


def _utc(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


def _on(day: datetime, at: str, zone: str) -> datetime:
    """The schedule's instant on the local date of day, in UTC."""
    hour, minute = (int(part) for part in at.split(":"))
    local = datetime.combine(day.date(), clock(hour, minute), tzinfo=m.time_zone(zone))
    return local.astimezone(UTC)


def latest(at: str, zone: str, now: datetime) -> datetime:
    """The newest instant `at` in zone that is not after now (UTC)."""
    today = now.astimezone(m.time_zone(zone))
    instant = _on(today, at, zone)
    return instant if instant <= now else _on(today - timedelta(days=1), at, zone)


def following(at: str, zone: str, now: datetime) -> datetime:
    """The first instant `at` in zone after now (UTC): when the next backup is due."""
    today = now.astimezone(m.time_zone(zone))
    instant = _on(today, at, zone)
    return instant if instant > now else _on(today + timedelta(days=1), at, zone)


def due(schedule: m.BackupSchedule, now: datetime) -> datetime | None:
    """The instant whose backup is to be taken now, or None."""
    instant = latest(schedule.at, schedule.zone, now)
    if instant < _utc(schedule.since):
        return None
    if schedule.last_due is not None and instant <= _utc(schedule.last_due):
        return None
    return instant


def late_by(instant: datetime, now: datetime) -> float | None:
    """Seconds late, when that is more than LATE_AFTER (else None: on time)."""
    seconds = (now - instant).total_seconds()
    return seconds if seconds > LATE_AFTER else None


def kept(backups: list[m.Backup], zone: str, daily: int = DAILY, weekly: int = WEEKLY) -> set[str]:
    """The ids of the scheduled backups retention keeps (see the module's docstring)."""
    tz = m.time_zone(zone)
    days: set[object] = set()
    weeks: set[object] = set()
    keep: set[str] = set()
    newest_first = sorted(
        (b for b in backups if b.scheduled), key=lambda b: _utc(b.created_at), reverse=True
    )
    for backup in newest_first:
        local = _utc(backup.created_at).astimezone(tz)
        day, week = local.date(), local.isocalendar()[:2]
        if day not in days and len(days) < daily:
            days.add(day)
            keep.add(backup.id)
        if week not in weeks and len(weeks) < weekly:
            weeks.add(week)
            keep.add(backup.id)
    return keep


def to_prune(backups: list[m.Backup], zone: str) -> list[m.Backup]:
    """The scheduled backups retention deletes, oldest first; never a manual capture."""
    keep = kept(backups, zone)
    gone = [b for b in backups if b.scheduled and b.id not in keep]
    return sorted(gone, key=lambda b: _utc(b.created_at))
