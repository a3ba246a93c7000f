"""Cron schedules: parsing, the latest and next scheduled minutes, and what a tick starts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from provisioner.errors import ValidationError
from provisioner.model.appjson import parse_app_json_cron
from provisioner.model.cron import CronJob, CronRun, app_json_job_id
from provisioner.plan.cron import Due, due, minute_key, parse_schedule, run_number


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


NOW = at("2026-11-30T19:47:30")  # a Monday


@pytest.mark.parametrize(
    ("schedule", "latest", "upcoming"),
    [
        ("* * * * *", "2026-11-30T19:47", "2026-11-30T19:48"),
        ("*/10 * * * *", "2026-11-30T19:40", "2026-11-30T19:50"),
        ("5,35 9-17 * * *", "2026-11-30T17:35", "2026-12-01T09:05"),
        ("0 2 * * mon", "2026-11-30T02:00", "2026-12-07T02:00"),
        ("0 2 * * 7", "2026-11-29T02:00", "2026-12-06T02:00"),  # 7 is Sunday too
        ("@daily", "2026-11-30T00:00", "2026-12-01T00:00"),
        ("@hourly", "2026-11-30T19:00", "2026-11-30T20:00"),
        ("0 0 1 jan *", "2026-01-01T00:00", "2027-01-01T00:00"),
        ("0 0 29 2 *", "2024-02-29T00:00", "2028-02-29T00:00"),
        # Both day fields restricted: either may match (the 1st, or any Friday).
        ("0 12 1 * fri", "2026-11-27T12:00", "2026-12-01T12:00"),
        ("10-20/5 * * * *", "2026-11-30T19:20", "2026-11-30T20:10"),
    ],
)
def test_latest_and_next_minutes(schedule: str, latest: str, upcoming: str) -> None:
    parsed = parse_schedule(schedule)
    assert parsed.latest(NOW) == at(latest)
    assert parsed.next_after(NOW) == at(upcoming)


@pytest.mark.parametrize(
    ("schedule", "error"),
    [
        ("* * * *", "expected five fields"),
        ("61 * * * *", "minute must be within 0-59"),
        ("* 24 * * *", "hour must be within 0-23"),
        ("*/0 * * * *", "a step must be 1 or more"),
        ("5-1 * * * *", "minute must be within 0-59"),
        ("x * * * *", "expected a number"),
        ("@often", "knows @yearly"),
        ("0 0 31 2 *", "never matches a real date"),
    ],
)
def test_bad_schedules_are_refused_with_the_field(schedule: str, error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        parse_schedule(schedule)


def test_due_is_the_latest_minute_once_and_says_late_and_missed() -> None:
    every = parse_schedule("* * * * *")
    assert due(every, at("2026-11-30T19:47"), NOW) is None  # this minute ran already
    assert due(every, at("2026-11-30T19:46"), at("2026-11-30T19:47:02")) == Due(
        at("2026-11-30T19:47"), late=False, missed=0
    )
    # No controller for six minutes: one run, late, and the missed minutes counted.
    assert due(every, at("2026-11-30T19:40"), NOW) == Due(at("2026-11-30T19:47"), True, 6)
    hourly = parse_schedule("0 * * * *")
    assert due(hourly, at("2026-11-30T19:00"), NOW) is None


def test_run_numbers_are_the_same_for_a_job_and_minute() -> None:
    first = run_number("c1", at("2026-11-30T19:47"))
    assert first == run_number("c1", at("2026-11-30T19:47"))
    assert first != run_number("c1", at("2026-11-30T19:48"))
    assert first != run_number("c2", at("2026-11-30T19:47"))
    assert 1_000_000 <= first < 10_000_000
    assert minute_key(at("2026-11-30T19:47:59")) == "2026-11-30T19:47Z"


def test_a_job_keeps_its_newest_runs_in_order() -> None:
    job = CronJob("c1", "* * * * *", "true", "2026-11-30T19:00:00Z", "2026-11-30T19:00Z")
    for minute in range(25):
        run = CronRun(minute, f"2026-11-30T19:{minute:02d}Z", 1, "i-a", "succeeded")
        job = job.with_run(replace(run, state="running"))
        job = job.with_run(run)  # the same run (by its number) once ended
    assert len(job.runs) == 20 and job.runs[0].n == 5
    assert job.last_run is not None and job.last_run.state == "succeeded"
    assert job.running() == []
    assert CronJob.from_dict(job.to_dict()) == job


def test_app_json_cron_entries_as_dokku_writes_them() -> None:
    text = '{"cron": [{"schedule": "@daily", "command": "python clean.py"}]}'
    assert parse_app_json_cron(text) == [("@daily", "python clean.py")]
    assert parse_app_json_cron('{"env": {}}') == []
    assert app_json_job_id("@daily", "a") == app_json_job_id("@daily", "a")
    assert app_json_job_id("@daily", "a") != app_json_job_id("@daily", "b")
    with pytest.raises(ValidationError, match="cron entry 1.*needs a schedule and a command"):
        parse_app_json_cron('{"cron": [{"schedule": "@daily"}]}')


def test_a_long_run_stays_in_its_record_however_many_minutes_it_skips() -> None:
    job = CronJob("c1", "* * * * *", "sleep 3600", "2026-11-30T19:00:00Z", "2026-11-30T19:00Z")
    job = job.with_run(CronRun(1, "2026-11-30T19:01Z", 1, "i-a", "running"))
    for minute in range(2, 40):
        job = job.with_run(CronRun(minute, f"2026-11-30T19:{minute:02d}Z", 0, "", "skipped"))
    assert [r.n for r in job.running()] == [1]
    assert len(job.runs) == 21  # the 20 newest ended runs, and the one under way
