"""Scheduled backups against moto: schedules beside the add-on's record, the controller's
`backups` duty (once per instant, claimed by a conditional write), and retention deleting the
right RDS snapshots and S3 dumps."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from cli_support import platform_cli

from provisioner import events
from provisioner.aws.platform import ensure_platform
from provisioner.context import Context
from provisioner.model import addons as m
from provisioner.ops import addons, backups
from provisioner.targets import Target

MONDAY = datetime(2026, 3, 2, 2, 0, 5, tzinfo=UTC)  # five seconds after a 02:00 UTC schedule


@pytest.fixture
def ctx(aws, store, config_home, monkeypatch):
    monkeypatch.setattr("provisioner.aws.managed.POLL_SECONDS", 0.0)
    target = Target("test", region="us-east-1", platform="plat")
    ensure_platform(aws, target, "203.0.113.7/32")
    store.create_app("shop")
    with Context(target, lambda _: None, aws, store) as ctx:
        yield ctx


def guard() -> None:
    """The lease is ours (the controller's own tests cover losing it)."""


def scheduled_at_0200(ctx: Context) -> m.Addon:
    addon = addons.create(ctx, "shop", "postgres", provider="managed")
    backups.schedule(ctx, "DATABASE_URL", "shop", "02:00 UTC")
    doc = ctx.store.docs.get(backups.schedule_key(addon.name))
    assert doc is not None
    since = {**doc.data, "since": (MONDAY - timedelta(days=1)).isoformat()}  # set last week
    ctx.store.docs.put(backups.schedule_key(addon.name), since)
    return addon


def snapshots(aws) -> set[str]:
    found = aws.client("rds").describe_db_snapshots(SnapshotType="manual")["DBSnapshots"]
    return {s["DBSnapshotIdentifier"] for s in found}


def test_the_duty_takes_a_due_backup_once_and_logs_it_to_the_attached_apps(aws, ctx) -> None:
    addon = scheduled_at_0200(ctx)
    backups.tick(ctx, guard, MONDAY - timedelta(seconds=10))
    assert addons.backups(ctx, addon.name) == []  # 01:59:55: not yet

    backups.tick(ctx, guard, MONDAY)
    taken = addons.backups(ctx, addon.name)
    assert [b.id for b in taken] == ["a20260302020005"] and taken[0].scheduled
    assert snapshots(aws) == {taken[0].snapshot}
    backups.tick(ctx, guard, MONDAY + timedelta(minutes=5))
    backups.tick(ctx, guard, MONDAY + timedelta(hours=20))
    assert len(addons.backups(ctx, addon.name)) == 1  # once a day

    said = [(e.source, e.message) for e in events.recent(ctx.store.docs, app="shop")]
    assert said == [("backups", f"took scheduled backup {addon.name}:a20260302020005 (02:00 UTC)")]
    row = backups.schedules(ctx, "shop")[0]
    assert row.schedule.last_backup == "a20260302020005"
    assert row.schedule.last_due == "2026-03-02T02:00:00+00:00"


def test_a_missed_backup_is_taken_once_late_and_says_so(ctx) -> None:
    addon = scheduled_at_0200(ctx)
    three_days_late = MONDAY + timedelta(days=3, hours=7)
    backups.tick(ctx, guard, three_days_late)
    backups.tick(ctx, guard, three_days_late + timedelta(seconds=5))
    assert [b.id for b in addons.backups(ctx, addon.name)] == ["a20260305090005"]
    said = events.recent(ctx.store.docs, app="shop")[-1].message
    assert said == f"took scheduled backup {addon.name}:a20260305090005 (02:00 UTC, 420 min late)"


def test_two_leaders_that_read_the_same_schedule_take_one_backup(ctx) -> None:
    addon = scheduled_at_0200(ctx)
    doc = ctx.store.docs.get(backups.schedule_key(addon.name))
    instant = MONDAY.replace(second=0)
    first = backups.claim(ctx, doc, instant, MONDAY)
    second = backups.claim(ctx, doc, instant, MONDAY)  # the other leader, a moment later
    assert first is not None and second is None
    # and the first one's write is what the next tick reads: nothing more is due
    backups.tick(ctx, guard, MONDAY)
    assert addons.backups(ctx, addon.name) == []


def test_a_guard_that_refuses_stops_the_duty_before_any_change(aws, ctx) -> None:
    addon = scheduled_at_0200(ctx)

    def lost() -> None:
        raise RuntimeError("not the leader")

    with pytest.raises(RuntimeError):
        backups.tick(ctx, lost, MONDAY)
    assert addons.backups(ctx, addon.name) == [] and snapshots(aws) == set()
    assert backups.schedules(ctx, "shop")[0].schedule.last_due is None


def test_retention_deletes_the_right_snapshots_and_keeps_manual_ones(aws, ctx) -> None:
    addon = scheduled_at_0200(ctx)
    manual = addons.capture_backup(ctx, addon.name, now=MONDAY - timedelta(hours=1))
    for day in range(22):  # three weeks and a day of daily backups, Monday to Monday
        backups.tick(ctx, guard, MONDAY + timedelta(days=day))
    left = addons.backups(ctx, addon.name)
    expected = [manual.id] + [
        f"a202603{d:02d}020005"
        for d in (8, 15, 17, 18, 19, 20, 21, 22, 23)  # Sundays of older weeks, the last 7 days
    ]
    assert [b.id for b in left] == expected
    assert snapshots(aws) == {b.snapshot for b in left}
    said = [e.message for e in events.recent(ctx.store.docs, 100, app="shop")]
    assert f"retention deleted a20260302020005 of {addon.name}" in said


def test_retention_deletes_every_version_of_a_self_hosted_dump(aws, ctx) -> None:
    addon = m.Addon("postgres-selfh1", m.POSTGRES, "small", m.SELF_HOSTED, "shop", created_at="x")
    blobs = ctx.blobs()
    for day in range(9):
        when = MONDAY + timedelta(days=day)
        backup = m.Backup(m.new_backup_id(when, scheduled=True), addon.name, when.isoformat())
        for text in ("first try", "dump"):  # two versions of one key
            blobs.put_text(m.backup_key(addon.name, backup.id), text)
        addon.resource.setdefault("backups", []).append({**backup.to_dict(), "size": 4})
    ctx.store.docs.put(f"addons/{addon.name}.json", addon.to_dict())

    gone = backups.prune(ctx, guard, addon.name, "UTC")
    # Monday and Tuesday of the first week go: its Sunday is newer, and they are not of the
    # last 7 days
    assert [b.id for b in gone] == ["a20260302020005", "a20260303020005"]
    versions = ctx.aws.s3.list_object_versions(
        Bucket=blobs.bucket, Prefix=f"addon-backups/{addon.name}/"
    )
    keys = {v["Key"] for v in versions.get("Versions", []) + versions.get("DeleteMarkers", [])}
    assert keys == {m.backup_key(addon.name, b.id) for b in addons.backups(ctx, addon.name)}
    assert len(keys) == 7


def test_destroying_the_addon_takes_its_schedule_and_snapshots(aws, ctx) -> None:
    addon = scheduled_at_0200(ctx)
    backups.tick(ctx, guard, MONDAY)
    addons.capture_backup(ctx, addon.name)
    assert len(snapshots(aws)) == 2
    addons.destroy(ctx, addon.name)
    assert ctx.store.docs.keys("addons/") == [] and snapshots(aws) == set()
    backups.tick(ctx, guard, MONDAY + timedelta(days=1))  # nothing left to do


def test_a_schedule_left_behind_by_a_cut_short_destroy_stays_idle(ctx) -> None:
    orphan = m.BackupSchedule("postgres-gone00", "02:00", "UTC", "2026-01-01T00:00:00+00:00")
    ctx.store.docs.put(backups.schedule_key(orphan.addon), orphan.to_dict())
    backups.tick(ctx, guard, MONDAY)
    doc = ctx.store.docs.get(backups.schedule_key(orphan.addon))
    assert doc is not None and doc.data == orphan.to_dict()
    assert events.recent(ctx.store.docs) == []


# the CLI ---------------------------------------------------------------------------------------
@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("provisioner.aws.managed.POLL_SECONDS", 0.0)
    with platform_cli(tmp_path, monkeypatch, capsys) as call:
        yield call


def test_schedule_list_replace_and_unschedule_through_the_cli(cli) -> None:
    assert cli("apps:create", "shop", "--no-remote")[0] == 0
    name = cli("addons:create", "postgres", "-a", "shop")[1].strip()
    assert cli("pg:backups:schedules", "-a", "shop")[2] == (
        "no backup schedules: dynoform pg:backups:schedule --at '02:00 UTC'\n"
    )
    code, _, err = cli("pg:backups:schedule", "DATABASE_URL", "--at", "02:00 Europe/Paris",
                       "-a", "shop")  # fmt: skip
    assert code == 0, err
    assert f"backing up {name} daily at 02:00 Europe/Paris (next at " in err
    rows = json.loads(cli("pg", "backups", "schedules", "-a", "shop", "--json")[1])
    assert [(r["addon"], r["at"], r["attached_as"]) for r in rows] == [
        (name, "02:00 Europe/Paris", ["DATABASE_URL"])
    ]
    next_at = datetime.fromisoformat(rows[0]["next_at"])
    assert next_at.astimezone(m.time_zone("Europe/Paris")).strftime("%H:%M") == "02:00"

    assert cli("pg", "backups", "schedule", "--at", "4:30", "-a", "shop")[0] == 0  # replaces
    rows = json.loads(cli("pg:backups:schedules", "-a", "shop", "--json")[1])
    assert [r["at"] for r in rows] == ["04:30 UTC"]
    code, out, _ = cli("pg:backups:schedules", "-a", "shop")
    assert out.split("\n")[1].split()[:3] == [name, "DATABASE_URL", "04:30"]

    code, _, err = cli("pg:backups:schedule", "--at", "25:00", "-a", "shop")
    assert code == 1 and "--at '25:00'" in err and "HH:MM and a time zone" in err
    code, _, err = cli("pg:backups:schedule", "--at", "02:00 Moon/Base", "-a", "shop")
    assert code == 1 and "time zone 'Moon/Base'" in err
    code, _, err = cli("pg:backups:schedule", "REDIS", "--at", "02:00", "-a", "shop")
    assert code == 1 and "shop has no add-on attached as REDIS_URL" in err

    code, _, err = cli("pg:backups:unschedule", "DATABASE_URL", "-a", "shop")
    assert code == 0 and f"no more daily backups of {name} (was 04:30 UTC)" in err
    assert json.loads(cli("pg:backups:schedules", "-a", "shop", "--json")[1]) == []
    code, _, err = cli("pg:backups:unschedule", "-a", "shop")
    assert code == 1 and f"{name} has no backup schedule" in err
