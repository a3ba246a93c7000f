"""A scheduled backup on the local cloud: the controlled platform's controller takes it at its
minute (a half-hour zone, so the zone math is the hosts' too), it shows in the app's logs as
`dynoform[backups]`, and it restores the data as it was."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta

import pytest
from e2e_support import Controlled, wait_for

from provisioner.model import addons as m

pytestmark = pytest.mark.cloud
ZONE = "Asia/Kolkata"  # UTC+05:30


def sql(world: Controlled, host: str, database: str, statement: str) -> str:
    """SQL as the add-on's own role (so the restore, which runs as that role, owns it too)."""
    psql = ["runuser", "-u", "postgres", "--", "psql", "-X", "-qtA", "-v", "ON_ERROR_STOP=1",
            "-d", database, "-c", f"SET ROLE {database}; {statement}"]  # fmt: skip
    return world.cli("hosts:exec", host, "--", "sudo", "-n", *psql).stdout.strip()


def next_minute(after: datetime) -> datetime:
    return (after + timedelta(seconds=70)).replace(second=0, microsecond=0)


def test_a_scheduled_backup_is_taken_at_its_minute_and_restores(controlled: Controlled) -> None:
    app = f"bkp-{secrets.token_hex(3)}"
    controlled.cli("apps:create", app, "--no-remote")
    try:
        started = time.monotonic()
        name = controlled.cli("addons:create", "postgres", "-a", app).stdout.strip()
        print(f"add-on (and its host) made in {time.monotonic() - started:.0f} s")
        resource = controlled.json("addons:info", name)["resource"]
        host, database = str(resource["host_id"]), str(resource["database"])
        sql(controlled, host, database, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")

        instant = next_minute(datetime.now(UTC))  # 10 to 70 s from now
        at = instant.astimezone(m.time_zone(ZONE)).strftime("%H:%M")
        controlled.cli("pg:backups:schedule", "DATABASE_URL", "--at", f"{at} {ZONE}", "-a", app)
        [row] = controlled.json("pg:backups:schedules", "-a", app)
        assert row["at"] == f"{at} {ZONE}" and row["next_at"] == instant.isoformat()

        def scheduled() -> list[dict[str, str]]:
            return [b for b in controlled.json("pg:backups", "-a", app) if b["id"][0] == "a"]

        seconds = (instant - datetime.now(UTC)).total_seconds() + 60
        [backup] = wait_for("the scheduled backup", scheduled, seconds, step=2)
        late = datetime.fromisoformat(backup["created_at"]) - instant
        assert timedelta(0) <= late < timedelta(seconds=15), late  # the duty ticks every 5 s
        logged = controlled.cli("logs", "-a", app, "--source", "dynoform").stdout
        assert f"dynoform[backups]: took scheduled backup {backup['ref']} ({at} {ZONE})" in logged
        [row] = controlled.json("pg:backups:schedules", "-a", app)
        assert row["last_backup"] == backup["id"]

        sql(controlled, host, database, "UPDATE kept SET n = 0; CREATE TABLE later (x int)")
        controlled.cli("pg:backups:restore", backup["ref"], "DATABASE_URL", "-a", app,
                       "--confirm", name)  # fmt: skip
        assert sql(controlled, host, database, "SELECT n FROM kept") == "42"
        tables = sql(controlled, host, database, "SELECT tablename FROM pg_tables "
                     "WHERE tableowner = current_user")  # fmt: skip
        assert tables.split() == ["kept"]
    finally:
        controlled.cli("apps:destroy", "-a", app, "--confirm", app, check=False)
