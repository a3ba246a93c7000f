"""Cron jobs on the controlled platform, as a user sees them: a job from app.json runs once a
minute for three minutes, also across a controller change-over (the leader's controller killed
outright); a long job is not started twice; each run's output is in `dynoform logs`."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from e2e_support import Controlled, wait_for

pytestmark = pytest.mark.cloud

TICK = "sh -c 'echo cron-tick $DYNO at $(date -u +%H:%M)'"


@pytest.fixture
def cron_app(controlled: Controlled, tmp_path: Path) -> Iterator[str]:
    app = f"cron-{secrets.token_hex(3)}"
    (tmp_path / "Procfile").write_text("web: python3 -m http.server $PORT\n")
    cron = [{"schedule": "* * * * *", "command": TICK}]
    (tmp_path / "app.json").write_text(json.dumps({"cron": cron}))
    controlled.cli("apps:create", app, "--no-remote")
    try:
        deployed = controlled.cli("deploy", "-a", app, str(tmp_path))
        assert "app.json: added cron job" in deployed.stderr, deployed.stderr
        yield app
    finally:
        controlled.cli("apps:destroy", "-a", app, "--confirm", app, check=False)


def seconds_into_minute() -> float:
    now = datetime.now(UTC)
    return now.second + now.microsecond / 1e6


def wait_for_second(second: float) -> None:
    """Sleep until `second` s into a minute (the next one if that moment passed)."""
    time.sleep((second - seconds_into_minute()) % 60)


def kill_the_leader(world: Controlled) -> str:
    """SIGKILL the leading controller: its lease is not released, a successor must wait it out."""
    leader = str(world.json("controller:status")["leader"]).split(":")[0]
    world.cli("hosts:exec", leader, "--", "sudo", "systemctl", "kill", "--signal=SIGKILL",
              "dynoform-controller.service")  # fmt: skip
    return leader


def test_a_job_runs_once_a_minute_across_a_controller_change_over(
    controlled: Controlled, cron_app: str
) -> None:
    world = controlled
    [job] = world.json("cron", "-a", cron_app)
    assert (job["source"], job["schedule"], job["command"]) == ("app.json", "* * * * *", TICK)
    long = world.cli("cron:add", "-a", cron_app, "* * * * *", "--", "sleep", "100").stdout.strip()
    # Three scheduled minutes; the leader dies 3 s before the second.
    first = first_run(world, cron_app, job["id"], 75)
    wait_for_second(57)
    killed = kill_the_leader(world)
    time.sleep(3 + 60 + 2)  # the second and third minutes begin
    wait_for(
        "the third minute's run to end", lambda: ended_runs(world, cron_app, job["id"]) >= 3, 60
    )

    runs = world_runs(world, cron_app, job["id"])
    minutes = [r["minute"] for r in runs if r["state"] == "succeeded"]
    assert len(minutes) >= 3 and len(set(minutes)) == len(minutes), runs
    assert first["minute"] in minutes
    # The output: one line per minute from app[scheduler.N], none twice.
    logs = world.cli("logs", "-a", cron_app, "-n", "500").stdout
    ticks = re.findall(r"app\[(scheduler\.\d+)\]: cron-tick (scheduler\.\d+) at (\d\d:\d\d)", logs)
    per_minute = Counter(at for _, _, at in ticks)
    assert len(per_minute) >= 3 and set(per_minute.values()) == {1}, logs
    assert all(dyno == named for dyno, named, _ in ticks)
    # A change-over happened: a successor took over from the killed controller.
    recent = [e["message"] for e in world.json("controller:status", "-n", "100")["recent"]]
    assert any(f"took over from {killed}:" in m for m in recent), recent
    # The long job was never started twice at once: the minutes it still ran were skipped.
    sleeper = world_runs(world, cron_app, long)
    skipped = [r for r in sleeper if r["state"] == "skipped"]
    assert skipped and "still running" in str(skipped[0]["note"]), sleeper
    assert len([r for r in sleeper if r["state"] == "running"]) <= 1, sleeper


def world_runs(world: Controlled, app: str, job_id: str) -> list[dict[str, object]]:
    job = next(j for j in world.json("cron", "-a", app) if j["id"] == job_id)
    return list(job["runs"])


def first_run(world: Controlled, app: str, job_id: str, timeout: float) -> dict[str, object]:
    """The job's first succeeded run; failing, say every run so far and the controller's view
    (a run that failed or was lost says why; none at all points at the controller)."""
    runs: list[dict[str, object]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = world_runs(world, app, job_id)
        done = [r for r in runs if r["state"] == "succeeded"]
        if done:
            return done[0]
        time.sleep(1.0)
    status = world.cli("controller:status", check=False).stdout[-1500:]
    raise AssertionError(f"no run succeeded within {timeout:.0f} s: runs {runs}; {status}")


def ended_runs(world: Controlled, app: str, job_id: str) -> int:
    return sum(1 for r in world_runs(world, app, job_id) if r["state"] == "succeeded")
