"""Cron figures: how late after its minute each run of an every-minute job starts (target: 5 s),
measured by the controller's record of the start, over a few minutes on the local platform."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from bench.deploys import cli, cli_json, summary


def start_delays(app: str, minutes: int = 3) -> dict[str, Any]:
    paused = cli_json("controller:status")["paused"]
    cli("controller:resume")
    job = cli("cron:add", "-a", app, "* * * * *", "--", "true").stdout.strip()
    try:
        runs = _wait_runs(app, job, minutes, limit=minutes * 60 + 120)
    finally:
        cli("cron:remove", job, "-a", app, check=False)
        if paused:
            cli("controller:pause")
    delays = [_started(r) - _minute(r) for r in runs]
    return {
        "cron_start_after_minute_s": summary(delays),
        "cron_runs": f"{len(runs)} runs, {sum(1 for r in runs if r['late'])} late",
    }


def _wait_runs(app: str, job: str, count: int, limit: float) -> list[dict[str, Any]]:
    started = time.monotonic()
    runs: list[dict[str, Any]] = []
    while time.monotonic() - started < limit:
        record = next(j for j in cli_json("cron", "-a", app) if j["id"] == job)
        runs = [r for r in record["runs"] if r["started_at"]]
        if len(runs) >= count:
            break
        time.sleep(5)
    return runs


def _started(run: dict[str, Any]) -> float:
    return datetime.fromisoformat(run["started_at"]).timestamp()


def _minute(run: dict[str, Any]) -> float:
    return datetime.strptime(run["minute"], "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC).timestamp()
