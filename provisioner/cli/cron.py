"""`cron`: jobs the controller runs on a schedule, each run a `scheduler.N` one-off dyno."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime

import typer

from provisioner.cli.common import AppOption, emit_json, g, out, print_table, resolve_app, status
from provisioner.model.cron import CronJob, CronRun
from provisioner.ops import cron as ops

group = typer.Typer(
    help="Cron jobs: one-off dynos on a schedule (UTC), run by the controller.\n\n"
    'Example: dynoform cron:add -a myapp "*/10 * * * *" -- python manage.py cleanup',
    invoke_without_command=True,
)


def row(job: CronJob) -> dict[str, object]:
    upcoming = ops.next_run(job)
    return {
        "id": job.id,
        "schedule": job.schedule,
        "command": job.command,
        "overlap": job.overlap,
        "source": job.source,
        "next_run": upcoming.isoformat(timespec="minutes") if upcoming else None,
        "last_run": run_row(job.last_run) if job.last_run else None,
        "runs": [run_row(r) for r in job.runs],
    }


def run_row(run: CronRun) -> dict[str, object]:
    return {
        "dyno": run.dyno,
        "minute": run.minute,
        "state": run.state,
        "late": run.late,
        "host": run.host or None,
        "release": f"v{run.release}" if run.release else None,
        "started_at": _when(run.started_at),
        "exit_status": run.exit_status,
        "seconds": run.seconds,
        "note": run.note,
    }


def _when(stamp: float | None) -> str | None:
    return (
        None if stamp is None else datetime.fromtimestamp(stamp, UTC).isoformat("T", "milliseconds")
    )


def _last_text(job: CronJob) -> str:
    last = job.last_run
    if last is None:
        return "never"
    if last.state in ("succeeded", "failed"):
        took = f", {last.seconds:.1f} s" if last.seconds is not None else ""
        text = f"{last.minute} exit {last.exit_status}{took}"
    else:
        text = f"{last.minute} {last.state}"
    return text + (" (late)" if last.late else "") + (f" {last.note}" if last.note else "")


@group.callback()
def list_jobs(ctx: typer.Context, app: str = AppOption) -> None:
    """List the app's cron jobs and their last runs. Example: dynoform cron -a myapp --json"""
    if ctx.invoked_subcommand is not None:
        return
    jobs = ops.jobs(g().ctx, resolve_app(app))
    if g().json:
        emit_json([row(j) for j in jobs])
        return
    rows = [
        {
            "id": j.id,
            "schedule": j.schedule,
            "command": j.command,
            "last run": _last_text(j),
            "next run": row(j)["next_run"],
        }
        for j in jobs
    ]
    print_table(rows, ["id", "schedule", "command", "last run", "next run"], empty="no cron jobs")


@group.command("add", context_settings={"allow_interspersed_args": False})
def add(
    schedule: str = typer.Argument(..., help='Five cron fields in UTC, e.g. "*/10 * * * *".'),
    command: list[str] = typer.Argument(..., help="The command, after --."),
    app: str = AppOption,
    overlap: bool = typer.Option(
        False, "--overlap", help="Start a run even while the previous one still runs."
    ),
) -> None:
    """Add a cron job; prints its id.

    Example: dynoform cron:add -a myapp "*/10 * * * *" -- python manage.py cleanup
    """
    if command[:1] == ["--"]:  # after the schedule, click keeps the separator as an argument
        command = command[1:]
    if not command:
        raise typer.BadParameter("no command given after --")
    line = command[0] if len(command) == 1 else shlex.join(command)
    job = ops.add(g().ctx, resolve_app(app), schedule, line, overlap)
    if g().json:
        emit_json(row(job))
        return
    out.print(job.id)
    status(f"added cron job {job.id} ({job.schedule}), next run {row(job)['next_run']} UTC")


@group.command("remove")
def remove(
    job_id: str = typer.Argument(..., help="The job's id (see `dynoform cron`)."),
    app: str = AppOption,
) -> None:
    """Remove a cron job (a run under way finishes). Example: dynoform cron:remove c1a2b3c4"""
    job = ops.remove(g().ctx, resolve_app(app), job_id)
    status(f"removed cron job {job.id} ({job.schedule}): {job.command}")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="cron")
