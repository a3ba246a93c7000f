"""Cron job records through the library and the CLI (moto): add, list, remove, app.json."""

from __future__ import annotations

import json

import pytest

from provisioner.aws.session import Aws
from provisioner.context import Context
from provisioner.errors import NotFound, ValidationError
from provisioner.model.cron import CronRun
from provisioner.ops import apps, cron
from provisioner.store import Store
from provisioner.targets import Target


@pytest.fixture
def ctx(aws: Aws, store: Store) -> Context:
    context = Context(Target("test", region="us-east-1"), aws=aws, store=store)
    apps.create(context, "cron-app")
    return context


def test_add_list_and_remove(ctx: Context) -> None:
    job = cron.add(ctx, "cron-app", "*/10  * * * *", "python manage.py cleanup")
    assert job.schedule == "*/10 * * * *" and job.source == "cli" and not job.overlap
    other = cron.add(ctx, "cron-app", "@daily", "echo 'it''s late'", overlap=True)
    assert [j.id for j in cron.jobs(ctx, "cron-app")] == sorted(
        [job.id, other.id], key=lambda i: cron.jobs(ctx, "cron-app")[0].id != i
    )
    assert cron.remove(ctx, "cron-app", job.id).command == "python manage.py cleanup"
    assert [j.id for j in cron.jobs(ctx, "cron-app")] == [other.id]
    with pytest.raises(NotFound, match="has no cron job"):
        cron.remove(ctx, "cron-app", job.id)
    with pytest.raises(NotFound, match="has no cron job"):
        cron.remove(ctx, "cron-app", "../app")


def test_a_job_removed_during_a_run_goes_once_the_run_is_recorded(ctx: Context) -> None:
    job = cron.add(ctx, "cron-app", "* * * * *", "sleep 100")
    key = cron.m.job_key("cron-app", job.id)
    doc = ctx.store.docs.get(key)
    assert doc is not None
    running = job.with_run(CronRun(5, "2026-11-30T19:47Z", 1, "i-a", "running"))
    ctx.store.docs.update(key, running.to_dict(), doc.etag)
    cron.remove(ctx, "cron-app", job.id)
    assert cron.jobs(ctx, "cron-app") == []  # gone for the user
    kept = ctx.store.docs.get(key)
    assert kept is not None and kept.data["removed"] is True  # kept for the controller
    with pytest.raises(NotFound):
        cron.remove(ctx, "cron-app", job.id)


def test_bad_input_is_refused_and_nothing_is_written(ctx: Context) -> None:
    with pytest.raises(ValidationError, match="expected five fields"):
        cron.add(ctx, "cron-app", "* * *", "true")
    with pytest.raises(ValidationError, match="must be one line"):
        cron.add(ctx, "cron-app", "* * * * *", "true\nrm -rf /")
    with pytest.raises(NotFound):
        cron.add(ctx, "no-such-app", "* * * * *", "true")
    assert cron.jobs(ctx, "cron-app") == []


def test_app_json_jobs_follow_each_deploy_and_keep_their_runs(ctx: Context) -> None:
    store = ctx.store
    mine = cron.add(ctx, "cron-app", "@hourly", "by hand")
    assert cron.sync_app_json(store, "cron-app", [("@daily", "a"), ("0 3 * * *", "b")]) == [
        f"added cron job {cron.m.app_json_job_id('0 3 * * *', 'b')} (0 3 * * *): b",
        f"added cron job {cron.m.app_json_job_id('@daily', 'a')} (@daily): a",
    ]
    kept = next(j for j in cron.jobs(ctx, "cron-app") if j.command == "a")
    key = cron.m.job_key("cron-app", kept.id)
    doc = store.docs.get(key)
    assert doc is not None
    ran = kept.with_run(CronRun(1, "2026-11-30T00:00Z", 1, "i-a", "succeeded", exit_status=0))
    store.docs.update(key, ran.to_dict(), doc.etag)
    assert cron.sync_app_json(store, "cron-app", [("@daily", "a")]) == [
        f"removed cron job {cron.m.app_json_job_id('0 3 * * *', 'b')} (0 3 * * *)"
    ]
    after = {j.command: j for j in cron.jobs(ctx, "cron-app")}
    assert set(after) == {"a", "by hand"} and after["by hand"].id == mine.id
    assert after["a"].runs == ran.runs  # the same entry keeps its history
    assert cron.sync_app_json(store, "cron-app", [("@daily", "a")]) == []


def test_a_runs_end_is_read_from_the_units_facts() -> None:
    run = CronRun(7, "2026-11-30T19:47Z", 3, "i-a", "running")
    assert (
        cron._ended(run, {"LoadState": "loaded", "ActiveState": "active", "SubState": "running"})
        is None
    )
    done = cron._ended(
        run,
        {
            "LoadState": "loaded",
            "ActiveState": "active",
            "SubState": "exited",
            "Result": "success",
            "ExecMainStatus": "0",
            "ExecMainStartTimestamp": "@1764532020",
            "ExecMainExitTimestamp": "@1764532023",
        },
    )
    assert done is not None and (done.state, done.exit_status, done.seconds) == (
        "succeeded",
        0,
        3.0,
    )
    failed = cron._ended(
        run,
        {
            "LoadState": "loaded",
            "ActiveState": "failed",
            "Result": "exit-code",
            "ExecMainStatus": "3",
        },
    )
    assert failed is not None and (failed.state, failed.exit_status) == ("failed", 3)
    lost = cron._ended(run, {"LoadState": "not-found"})
    assert lost is not None and lost.state == "lost"


def test_the_cron_commands(moto_cli) -> None:  # type: ignore[no-untyped-def]
    cli = moto_cli
    assert cli("apps:create", "shop")[0] == 0
    code, out, err = cli("cron:add", "-a", "shop", "*/10 * * * *", "--", "python", "x.py", "-v")
    job_id = out.strip()
    assert code == 0 and job_id.startswith("c") and "next run" in err, err
    code, _, err = cli("cron", "add", "-a", "shop", "* * 32 * *", "--", "true")
    assert code == 1 and "day of month must be within 1-31" in err and err.count("\n") == 1
    [job] = json.loads(cli("cron", "-a", "shop", "--json")[1])
    assert (job["id"], job["command"], job["last_run"], job["runs"]) == (
        job_id,
        "python x.py -v",
        None,
        [],
    )
    assert job["next_run"].endswith("0")
    table = cli("cron", "-a", "shop")[1]
    assert job_id in table and "never" in table
    assert cli("cron:remove", job_id, "-a", "shop")[0] == 0
    assert json.loads(cli("cron", "-a", "shop", "--json")[1]) == []
    code, _, err = cli("cron:remove", job_id, "-a", "shop")
    assert code == 1 and "has no cron job" in err
