"""Scheduled backups (plan/backups.py): when one is due, and which ones retention keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from provisioner.errors import ValidationError
from provisioner.model import addons as m
from provisioner.plan import backups as plan

GOLDEN = Path(__file__).parent / "golden" / "backups"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def schedule(at: str = "02:00", zone: str = "UTC", since: str = "2026-01-01T00:00:00+00:00",
             last_due: str | None = None) -> m.BackupSchedule:  # fmt: skip
    return m.BackupSchedule("postgres-abc123", at, zone, since, last_due=last_due)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("02:00 UTC", ("02:00", "UTC")),
        ("2:05", ("02:05", "UTC")),
        ("23:59 Europe/Paris", ("23:59", "Europe/Paris")),
        ("00:00 utc", ("00:00", "UTC")),
        ("  07:30   America/New_York ", ("07:30", "America/New_York")),
        ("12:00 Etc/UTC", ("12:00", "UTC")),
    ],
)
def test_at_takes_hh_mm_and_a_zone(text: str, parsed: tuple[str, str]) -> None:
    assert m.parse_backup_time(text) == parsed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("24:00 UTC", "--at '24:00 UTC'"),
        ("02:60", "--at '02:60'"),
        ("2am", "--at '2am'"),
        ("", "--at ''"),
        ("02:00 UTC extra", "--at '02:00 UTC extra'"),
        ("02:00 Mars/Olympus", "time zone 'Mars/Olympus'"),
        ("02:00 ../etc/passwd", "time zone '../etc/passwd'"),
    ],
)
def test_a_bad_at_is_refused_naming_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        m.parse_backup_time(text)
    assert message in str(caught.value.message)


# due times -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("at", "zone", "now", "latest", "following"),
    [
        ("02:00", "UTC", "2026-03-10T01:59:59", "2026-03-09T02:00:00", "2026-03-10T02:00:00"),
        ("02:00", "UTC", "2026-03-10T02:00:00", "2026-03-10T02:00:00", "2026-03-11T02:00:00"),
        ("23:30", "UTC", "2026-03-11T00:10:00", "2026-03-10T23:30:00", "2026-03-11T23:30:00"),
        # Paris is UTC+1 in winter, UTC+2 in summer
        ("02:00", "Europe/Paris", "2026-01-15T12:00:00", "2026-01-15T01:00:00",
         "2026-01-16T01:00:00"),
        ("02:00", "Europe/Paris", "2026-07-15T12:00:00", "2026-07-15T00:00:00",
         "2026-07-16T00:00:00"),
        # the local date, not UTC's: 00:30 in Tokyo (UTC+9) is 15:30 UTC the day before
        ("00:30", "Asia/Tokyo", "2026-05-01T16:00:00", "2026-05-01T15:30:00",
         "2026-05-02T15:30:00"),
        # New York springs forward on 2026-03-08 at 02:00: 02:30 that day is 03:30 EDT
        ("02:30", "America/New_York", "2026-03-08T12:00:00", "2026-03-08T07:30:00",
         "2026-03-09T06:30:00"),
        # ...and falls back on 2026-11-01: 01:30 happens twice, the first one counts
        ("01:30", "America/New_York", "2026-11-01T12:00:00", "2026-11-01T05:30:00",
         "2026-11-02T06:30:00"),
    ],
)  # fmt: skip
def test_latest_and_following_instant(
    at: str, zone: str, now: str, latest: str, following: str
) -> None:
    assert plan.latest(at, zone, utc(now)) == utc(latest)
    assert plan.following(at, zone, utc(now)) == utc(following)


def test_due_once_per_day_at_its_time() -> None:
    s = schedule()
    assert plan.due(s, utc("2026-03-10T01:59:59")) == utc("2026-03-09T02:00:00")  # missed: late
    s.last_due = "2026-03-09T02:00:00+00:00"
    assert plan.due(s, utc("2026-03-10T01:59:59")) is None
    assert plan.due(s, utc("2026-03-10T02:00:00")) == utc("2026-03-10T02:00:00")
    s.last_due = "2026-03-10T02:00:00+00:00"
    assert plan.due(s, utc("2026-03-10T02:00:05")) is None
    assert plan.due(s, utc("2026-03-11T01:00:00")) is None


def test_nothing_is_due_for_a_time_before_the_schedule_was_set() -> None:
    s = schedule(at="02:00", since="2026-03-10T14:00:00+00:00")
    assert plan.due(s, utc("2026-03-10T14:00:01")) is None
    assert plan.due(s, utc("2026-03-11T01:59:59")) is None
    assert plan.due(s, utc("2026-03-11T02:00:00")) == utc("2026-03-11T02:00:00")
    # set for the next minute: due on the minute
    s = schedule(at="14:01", since="2026-03-10T14:00:31+00:00")
    assert plan.due(s, utc("2026-03-10T14:00:59")) is None
    assert plan.due(s, utc("2026-03-10T14:01:00")) == utc("2026-03-10T14:01:00")


def test_days_without_a_controller_give_one_late_backup_not_one_a_day() -> None:
    s = schedule(last_due="2026-03-01T02:00:00+00:00")
    now = utc("2026-03-05T09:00:00")
    assert plan.due(s, now) == utc("2026-03-05T02:00:00")
    assert plan.late_by(utc("2026-03-05T02:00:00"), now) == 7 * 3600
    assert plan.late_by(now - timedelta(seconds=60), now) is None
    assert plan.late_by(now - timedelta(seconds=61), now) == 61


# retention -----------------------------------------------------------------------------------
def backup(created: datetime, scheduled: bool = True) -> m.Backup:
    return m.Backup(m.new_backup_id(created, scheduled), "postgres-abc123", created.isoformat())


def test_retention_golden() -> None:
    """60 days of daily backups at 02:00 UTC, two manual captures among them: 7 daily and the
    newest of each of the 4 newest ISO weeks stay, the manual ones always."""
    start = utc("2026-01-01T02:00:00")
    backups = [backup(start + timedelta(days=d)) for d in range(60)]
    backups += [backup(utc("2026-01-03T10:00:00"), scheduled=False),
                backup(utc("2026-03-01T18:00:00"), scheduled=False)]  # fmt: skip
    keep = plan.kept(backups, "UTC")
    lines = [
        f"{b.id} {datetime.fromisoformat(b.created_at):%a} "
        f"W{datetime.fromisoformat(b.created_at).isocalendar()[1]:02d} "
        + ("keep" if not b.scheduled or b.id in keep else "prune")
        for b in sorted(backups, key=lambda b: b.created_at)[-24:]
    ]
    assert "\n".join(lines) + "\n" == (GOLDEN / "retention.txt").read_text()
    assert len(keep) == 10  # 7 days, 3 weeks more (the newest week's is a daily one)
    pruned = plan.to_prune(backups, "UTC")
    assert len(pruned) == 50 and all(b.scheduled for b in pruned)
    assert pruned == sorted(pruned, key=lambda b: b.created_at)


def test_retention_counts_days_that_have_a_backup_not_calendar_days() -> None:
    """A controller down for three weeks: the backups before the gap are kept."""
    days = [0, 1, 2, 3, 25, 26]
    backups = [backup(utc("2026-02-02T02:00:00") + timedelta(days=d)) for d in days]
    assert plan.to_prune(backups, "UTC") == []


def test_retention_keeps_the_newest_of_a_day_with_two() -> None:
    first, second = backup(utc("2026-02-02T02:00:00")), backup(utc("2026-02-02T02:05:00"))
    assert plan.kept([first, second], "UTC") == {second.id}
    assert plan.to_prune([first, second], "UTC") == [first]


def test_retention_days_and_weeks_are_the_schedules_zone() -> None:
    """Sunday 23:30 in New York is Monday in UTC: two backups of one local day, one goes."""
    sunday = backup(utc("2026-02-09T04:30:00"))  # Sunday 2026-02-08 23:30 EST
    earlier = backup(utc("2026-02-08T15:00:00"))  # Sunday 10:00 EST
    assert plan.kept([earlier, sunday], "America/New_York") == {sunday.id}
    assert plan.kept([earlier, sunday], "UTC") == {earlier.id, sunday.id}
