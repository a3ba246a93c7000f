"""Cron jobs: schedules in standard five-field cron syntax (UTC), and which minute is due.

Pure: parsing, matching and the decision of what a tick does. The duty that runs the jobs is
ops/cron.py; the records are model/cron.py.
"""

from __future__ import annotations

import calendar
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from provisioner.errors import ValidationError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = {name.lower(): n for n, name in enumerate(calendar.month_abbr) if name}
DAYS = {name.lower(): (n + 1) % 7 for n, name in enumerate(calendar.day_abbr)}  # sun = 0
# (name, lowest, highest, names) of the five fields, in order.
FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 7, DAYS),
)
SEARCH_DAYS = 366 * 8 + 2  # Feb 29 on a Monday comes back within 28 years; 8 covers Feb 29
LATE_AFTER = 10.0  # a run that starts more than this many seconds after its minute is late


@dataclass(frozen=True)
class Schedule:
    """A parsed cron schedule: the sets of values each field allows."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month was `*`
    any_weekday: bool  # day of week was `*`

    def day_matches(self, day: datetime) -> bool:
        """Cron's rule: when both day fields are restricted, either one may match."""
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return in_week
        if self.any_weekday:
            return in_month
        return in_month or in_week

    def matches(self, minute: datetime) -> bool:
        return (
            minute.minute in self.minutes and minute.hour in self.hours and self.day_matches(minute)
        )

    def latest(self, now: datetime) -> datetime | None:
        """The latest scheduled minute at or before now (UTC), or None within SEARCH_DAYS."""
        now = floor_minute(now)
        day = now.replace(hour=0, minute=0)
        for back in range(SEARCH_DAYS):
            if self.day_matches(day):
                found = self._latest_in_day(day, now if back == 0 else None)
                if found is not None:
                    return found
            day -= timedelta(days=1)
        return None

    def _latest_in_day(self, day: datetime, until: datetime | None) -> datetime | None:
        for hour in sorted(self.hours, reverse=True):
            if until is not None and hour > until.hour:
                continue
            for minute in sorted(self.minutes, reverse=True):
                if until is not None and hour == until.hour and minute > until.minute:
                    continue
                return day.replace(hour=hour, minute=minute)
        return None

    def next_after(self, moment: datetime) -> datetime | None:
        """The first scheduled minute after moment (UTC), or None within SEARCH_DAYS."""
        start = floor_minute(moment) + timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        for ahead in range(SEARCH_DAYS):
            if self.day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = day.replace(hour=hour, minute=minute)
                        if ahead > 0 or candidate >= start:
                            return candidate
            day += timedelta(days=1)
        return None


def parse_schedule(text: str) -> Schedule:
    """Five fields (minute hour day-of-month month day-of-week) or a macro such as @daily."""
    spec = " ".join(text.split())
    expanded = MACROS.get(spec.lower(), spec)
    parts = expanded.split(" ")
    if spec.startswith("@") and spec.lower() not in MACROS:
        raise ValidationError(f"schedule {text!r}", f"knows {', '.join(MACROS)}")
    if len(parts) != 5:
        raise ValidationError(
            f"schedule {text!r}",
            "expected five fields: minute hour day-of-month month day-of-week, e.g. '*/10 * * * *'",
        )
    sets = [_parse_field(part, *spec_of) for part, spec_of in zip(parts, FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in sets[4])  # 7 is Sunday too
    schedule = Schedule(
        spec,
        frozenset(sets[0]),
        frozenset(sets[1]),
        frozenset(sets[2]),
        frozenset(sets[3]),
        weekdays,
        any_day=parts[2] == "*",
        any_weekday=parts[4] == "*",
    )
    if schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC)) is None:
        raise ValidationError(f"schedule {text!r}", "never matches a real date")
    return schedule


def _parse_field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        values |= _parse_item(item, name, low, high, names)
    return values


def _parse_item(item: str, name: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    where = f"cron {name} {item!r}"
    body, _, step_text = item.partition("/")
    step = _number(step_text, where, names={}) if step_text else 1
    if step < 1:
        raise ValidationError(where, "a step must be 1 or more")
    if body == "*":
        first, last = low, high
    elif "-" in body:
        start, _, end = body.partition("-")
        first, last = _number(start, where, names), _number(end, where, names)
    else:
        first = _number(body, where, names)
        last = high if step_text else first
    if not (low <= first <= high and low <= last <= high) or first > last:
        raise ValidationError(where, f"{name} must be within {low}-{high}")
    return set(range(first, last + 1, step))


def _number(text: str, where: str, names: dict[str, int]) -> int:
    if text.lower() in names:
        return names[text.lower()]
    if not text.isdigit():
        raise ValidationError(where, "expected a number, a range a-b, * or a step /n")
    return int(text)


def floor_minute(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def minute_key(minute: datetime) -> str:
    """How records write a minute: 2026-11-30T19:05Z."""
    return floor_minute(minute).strftime("%Y-%m-%dT%H:%MZ")


def parse_minute_key(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class Due:
    """A run to start now: for `minute`, late when its minute began LATE_AFTER s ago or more,
    `missed` scheduled minutes before it were never run (no controller was alive)."""

    minute: datetime
    late: bool
    missed: int


def due(schedule: Schedule, last: datetime, now: datetime) -> Due | None:
    """The run a tick starts, if any: the latest scheduled minute after `last` (the minute the
    job last ran for, or was made in), once, however many minutes were missed."""
    minute = schedule.latest(now)
    if minute is None or minute <= last:
        return None
    missed = 0
    earlier = schedule.next_after(last)
    while earlier is not None and earlier < minute and missed < 1000:
        missed += 1
        earlier = schedule.next_after(earlier)
    return Due(minute, (now - minute).total_seconds() > LATE_AFTER, missed)


def run_number(job_id: str, minute: datetime) -> int:
    """The N of `scheduler.N`: the same for the same job and minute (a second controller that
    starts a claimed run again names it alike, and systemd refuses a second unit of that name)."""
    return zlib.crc32(f"{job_id}:{minute_key(minute)}".encode()) % 9_000_000 + 1_000_000
