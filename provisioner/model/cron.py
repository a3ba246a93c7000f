"""Cron job records: `apps/<app>/cron/<id>.json` in the state store, with the job's last runs."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import asdict, dataclass, field, replace
from typing import Any

KEEP_RUNS = 20  # runs kept per job, newest last
RUNNING = "running"
CLAIMED = "claimed"  # the minute is taken; its dyno is on its way (or its starter died)
ENDED = ("succeeded", "failed", "skipped", "lost")


def jobs_prefix(app: str) -> str:
    return f"apps/{app}/cron/"


def job_key(app: str, job_id: str) -> str:
    return f"{jobs_prefix(app)}{job_id}.json"


def new_job_id() -> str:
    return f"c{secrets.token_hex(4)}"


def app_json_job_id(schedule: str, command: str) -> str:
    """The same app.json entry keeps its id (and its runs) across deploys."""
    digest = hashlib.sha256(f"{schedule}\n{command}".encode()).hexdigest()
    return f"j{digest[:8]}"


@dataclass(frozen=True)
class CronRun:
    n: int  # scheduler.N
    minute: str  # the scheduled minute, 2026-11-30T19:05Z
    release: int
    host: str
    state: str  # claimed, running, succeeded, failed, skipped, lost
    late: bool = False
    started_at: float | None = None
    ended_at: float | None = None
    exit_status: int | None = None
    note: str = ""

    @property
    def dyno(self) -> str:
        return f"scheduler.{self.n}"

    @property
    def seconds(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return round(self.ended_at - self.started_at, 3)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CronRun:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class CronJob:
    id: str
    schedule: str
    command: str
    created_at: str
    last_minute: str  # the minute the job last ran for (or was made in): runs come after it
    overlap: bool = False  # start the next run while one still runs
    source: str = "cli"  # cli, or app.json
    runs: tuple[CronRun, ...] = field(default_factory=tuple)
    # Removed while a run was under way: nothing new starts; the record goes when it ended
    # (its unit, kept after it exits, is collected first).
    removed: bool = False

    @property
    def last_run(self) -> CronRun | None:
        return self.runs[-1] if self.runs else None

    def running(self) -> list[CronRun]:
        return [r for r in self.runs if r.state in (RUNNING, CLAIMED)]

    def with_run(self, run: CronRun) -> CronJob:
        """The run added (or replaced, by its number); of the ended ones, the oldest past
        KEEP_RUNS are dropped. Runs under way are always kept: a long run skipped minute after
        minute must not fall out of its record (the job would look idle and start again)."""
        runs = [r for r in self.runs if r.n != run.n] + [run]
        runs.sort(key=lambda r: (r.minute, r.n))
        ended = [r for r in runs if r.state not in (RUNNING, CLAIMED)]
        dropped = {id(r) for r in ended[: max(0, len(ended) - KEEP_RUNS)]}
        return replace(self, runs=tuple(r for r in runs if id(r) not in dropped))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["runs"] = [r.to_dict() for r in self.runs]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CronJob:
        runs = tuple(CronRun.from_dict(r) for r in data.get("runs", []))
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "runs"}
        return cls(**fields, runs=runs)
