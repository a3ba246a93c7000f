"""Cron jobs (Heroku Scheduler, Dokku's app.json `cron`): records, and the controller's duty
that runs them.

Each run is a one-off dyno `scheduler.N` of the app's current release and config, started by
the leading controller. Exactly once per scheduled minute across the fleet: the run's minute is
claimed in the job's record with a conditional write before its dyno starts, so two controllers
(a change-over) cannot both take it; a claimed run whose starter died is started by the next
leader under the same unit name, which systemd refuses to start twice. A minute missed while no
controller was alive is run late, once. The dyno's unit stays loaded after it exits
(RemainAfterExit) until the duty has read its exit status and recorded it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from provisioner import events
from provisioner.aws import instances
from provisioner.aws.state import StaleWrite
from provisioner.context import Context
from provisioner.errors import DynoformError, NotFound, ValidationError
from provisioner.model import cron as m
from provisioner.ops.rollout import Observed, open_rollout
from provisioner.plan import cron as plan
from provisioner.plan.units import DynoInstance
from provisioner.remote.fanout import fan_out
from provisioner.render import run_dyno_argv
from provisioner.store import DESTROY_OPERATION, Store, now_iso

SOURCE = "scheduler"
TICK_SECONDS = 1.0
REACH_SECONDS = 3.0  # a host that takes longer to answer is passed over for a run
# Starts the run's unit unless it is loaded already (a run claimed by a controller that died
# while starting it): as root, sh -c START sh UNIT SYSTEMD-RUN-ARGV...
# A start that fails because the unit appeared meanwhile (two starters at once) is one too.
START = (
    'u=$1; shift; loaded() { [ "$(systemctl show -p LoadState --value -- "$u")" = loaded ]; }; '
    'if loaded; then echo "started before"; exit 0; fi; "$@" && exit 0; s=$?; '
    'if loaded; then echo "started meanwhile"; exit 0; fi; exit "$s"'
)
COLLECT = 'systemctl stop -- "$1"; systemctl reset-failed -- "$1" 2>/dev/null; true'
STATUS_PROPERTIES = (
    "LoadState,ActiveState,SubState,Result,ExecMainStatus,"
    "ExecMainStartTimestamp,ExecMainExitTimestamp"
)


# records ------------------------------------------------------------------------------------------
def add(ctx: Context, app: str, schedule: str, command: str, overlap: bool = False) -> m.CronJob:
    """A new job; it first runs at its first scheduled minute from now."""
    ctx.store.app(app)  # NotFound for an unknown app
    job = _new_job(schedule, command, overlap, "cli", m.new_job_id())
    ctx.store.docs.create(m.job_key(app, job.id), job.to_dict())
    return job


def _new_job(schedule: str, command: str, overlap: bool, source: str, job_id: str) -> m.CronJob:
    parsed = plan.parse_schedule(schedule)
    if not command.strip():
        raise ValidationError("cron command", "is empty")
    if "\n" in command or "\0" in command:
        raise ValidationError("cron command", "must be one line")
    now = datetime.now(UTC)
    return m.CronJob(
        id=job_id,
        schedule=parsed.text,
        command=command,
        created_at=now_iso(),
        last_minute=plan.minute_key(now),
        overlap=overlap,
        source=source,
    )


def jobs(ctx: Context, app: str) -> list[m.CronJob]:
    ctx.store.app(app)
    return _jobs(ctx.store, app)


def _jobs(store: Store, app: str) -> list[m.CronJob]:
    return [job for job, _ in _job_docs(store, app) if not job.removed]


def _job_docs(store: Store, app: str) -> list[tuple[m.CronJob, str]]:
    """Every job record of the app (removed ones too) with its ETag."""
    docs = store.docs
    found = []
    for key in sorted(docs.keys(m.jobs_prefix(app))):
        doc = docs.get(key)
        if doc is not None:
            found.append((m.CronJob.from_dict(doc.data), doc.etag))
    return sorted(found, key=lambda pair: (pair[0].created_at, pair[0].id))


def remove(ctx: Context, app: str, job_id: str) -> m.CronJob:
    """The job goes; a run of it that is under way finishes (and is recorded and collected
    by the controller, which then deletes the record)."""
    key = m.job_key(app, job_id)
    doc = ctx.store.docs.get(key) if job_id.isalnum() else None
    job = m.CronJob.from_dict(doc.data) if doc is not None else None
    if doc is None or job is None or job.removed:
        raise NotFound(f"{app} has no cron job {job_id!r}", f"see `dynoform cron -a {app}`")
    _drop(ctx.store, key, job, doc.etag)
    return job


def _drop(store: Store, key: str, job: m.CronJob, etag: str) -> None:
    if job.running():
        store.docs.update(key, replace(job, removed=True).to_dict(), etag)
    else:
        store.docs.delete(key)


def check_app_json(entries: list[tuple[str, str]]) -> None:
    """Before a deploy changes anything: every app.json cron entry is valid."""
    for schedule, command in entries:
        _new_job(schedule, command, False, "app.json", "check")


def sync_app_json(store: Store, app: str, entries: list[tuple[str, str]]) -> list[str]:
    """Make the app's app.json jobs those of `entries` (schedule, command); what changed."""
    wanted = {m.app_json_job_id(s, c): (s, c) for s, c in entries}
    have = {j.id: (j, etag) for j, etag in _job_docs(store, app) if j.source == "app.json"}
    changes = []
    for job_id in sorted(set(have) - set(wanted)):
        job, etag = have[job_id]
        if not job.removed:
            _drop(store, m.job_key(app, job_id), job, etag)
            changes.append(f"removed cron job {job_id} ({job.schedule})")
    for job_id, (schedule, command) in sorted(wanted.items()):
        key = m.job_key(app, job_id)
        try:
            if job_id not in have:
                new = _new_job(schedule, command, False, "app.json", job_id)
                store.docs.create(key, new.to_dict())
            elif have[job_id][0].removed:  # back before its last run ended: it stays
                store.docs.update(
                    key, replace(have[job_id][0], removed=False).to_dict(), have[job_id][1]
                )
            else:
                continue
        except StaleWrite:
            continue  # changed by a deploy or the controller at the same moment
        changes.append(f"added cron job {job_id} ({schedule}): {command}")
    return changes


def next_run(job: m.CronJob, now: datetime | None = None) -> datetime | None:
    return plan.parse_schedule(job.schedule).next_after(now or datetime.now(UTC))


# the duty ---------------------------------------------------------------------------------------
def tick(ctx: Context, guard: Callable[[], None]) -> None:
    """Check every app's jobs: record runs that ended, start runs that are due."""
    now = datetime.now(UTC)
    docs = ctx.store.docs
    work = []
    for app in ctx.store.apps():
        mine = []
        for key in docs.keys(m.jobs_prefix(app)):
            doc = docs.get(key)
            if doc is None:
                continue
            job = m.CronJob.from_dict(doc.data)
            if job.running() or job.removed or plan.due(_schedule(job), _last(job), now):
                mine.append(_JobWork(ctx, guard, app, key, job, doc.etag))
        if mine and not _renaming_or_destroying(ctx, app):
            work += mine
    for outcome in fan_out(work, lambda w: w.advance(now), timeout=120):
        if not outcome.ok:
            ctx.say(f"cron {outcome.item.app}/{outcome.item.job.id}: {outcome.error}")


def _renaming_or_destroying(ctx: Context, app: str) -> bool:
    """While an app is renamed its jobs exist under both names: neither runs them (a minute
    that passes meanwhile runs late, once, under the new name). While it is destroyed, a run
    would put its user and files back on a host the destroy has cleaned."""
    holder = ctx.store.lease_holder(app)
    return holder is not None and holder.operation.startswith(("rename", DESTROY_OPERATION))


def _schedule(job: m.CronJob) -> plan.Schedule:
    return plan.parse_schedule(job.schedule)


def _last(job: m.CronJob) -> datetime:
    return plan.parse_minute_key(job.last_minute)


@dataclass
class _JobWork:
    ctx: Context
    guard: Callable[[], None]
    app: str
    key: str
    job: m.CronJob
    etag: str

    def advance(self, now: datetime) -> None:
        try:
            for run in self.job.running():
                if run.state == m.CLAIMED:
                    self._start(run)
                else:
                    self._check(run)
            if self.job.removed:
                if not self.job.running():
                    self.guard()
                    self.ctx.store.docs.delete(self.key)
                return
            found = plan.due(_schedule(self.job), _last(self.job), now)
            if found is not None:
                self._begin(found, now)
        except StaleWrite:
            return  # removed, or changed by another controller: the next tick reads it anew

    # records ----------------------------------------------------------------------------------
    def _save(self, job: m.CronJob) -> None:
        self.etag = self.ctx.store.docs.update(self.key, job.to_dict(), self.etag)
        self.job = job

    def _event(self, message: str) -> None:
        events.record(self.ctx.store.docs, SOURCE, message, self.app)
        self.ctx.say(f"{self.app}: {message}")

    # a new run --------------------------------------------------------------------------------
    def _begin(self, found: plan.Due, now: datetime) -> None:
        minute = plan.minute_key(found.minute)
        n = plan.run_number(self.job.id, found.minute)
        job = replace(self.job, last_minute=minute)
        busy = self.job.running()
        if busy and not self.job.overlap:
            run = m.CronRun(n, minute, 0, "", "skipped", note=f"{busy[-1].dyno} still running")
            self.guard()
            self._save(job.with_run(run))
            self._event(f"cron {self.job.id}: {minute} skipped, {run.note} (see --overlap)")
            return
        release = self.ctx.store.current_release(self.app)
        if release is None or not release.slug_key:
            run = m.CronRun(n, minute, 0, "", "skipped", note="no deployed release")
            self.guard()
            self._save(job.with_run(run))
            self._event(f"cron {self.job.id}: {minute} skipped, the app has no deployed release")
            return
        host = self._pick_host(n)
        run = m.CronRun(n, minute, release.version, host.id, m.CLAIMED, late=found.late)
        self.guard()
        self._save(job.with_run(run))  # the claim: StaleWrite if another controller took it
        if found.late:
            lag = int((now - found.minute).total_seconds())
            missed = f", {found.missed} earlier missed" if found.missed else ""
            self._event(f"cron {self.job.id}: {run.dyno} for {minute} is late by {lag} s{missed}")
        self._start(run)

    def _pick_host(self, n: int) -> instances.Host:
        """A live runner that answers: they take turns by the run's number (N comes from the
        job and the minute), so jobs spread over the fleet."""
        fleet = self.ctx.fleet()
        hosts = sorted(fleet.ready(), key=lambda h: h.id)
        start = n % len(hosts) if hosts else 0
        for host in hosts[start:] + hosts[:start]:
            try:
                fleet.connect(host, retry_for=REACH_SECONDS)
                return host
            except DynoformError:
                continue
        raise DynoformError("no usable hosts for the cron run", "add some: dynoform hosts:add")

    def _start(self, run: m.CronRun) -> None:
        try:
            host = self._host(run.host)
            self._launch(run, host)
        except DynoformError as exc:
            self._save(self.job.with_run(replace(run, state="failed", note=exc.message)))
            self._event(f"cron {self.job.id}: {run.dyno} could not start: {exc.message}")
            return
        started = replace(run, state=m.RUNNING, started_at=time.time())
        self._save(self.job.with_run(started))
        self._event(
            f"cron {self.job.id}: {run.dyno} started for {run.minute} on {run.host} "
            f"(v{run.release}): {self.job.command}"
        )

    def _host(self, host_id: str) -> instances.Host:
        for host in self.ctx.fleet().ready():
            if host.id == host_id:
                return host
        raise DynoformError(f"host {host_id} is gone")

    def _launch(self, run: m.CronRun, host: instances.Host) -> None:
        store = self.ctx.store
        if _renaming_or_destroying(self.ctx, self.app) or not store.app_exists(self.app):
            raise DynoformError(f"{self.app} is being destroyed or renamed")  # since the tick
        release = store.release(self.app, run.release)
        config = store.release_config(self.app, run.release)
        rollout = open_rollout(self.ctx)
        observed = Observed([host])
        rollout.prepare_hosts(observed, self.app, release, config, {host.id})
        instance = DynoInstance(self.app, run.release, run.dyno, host.id)
        argv = run_dyno_argv(instance, self.job.command, detach=True, keep=True)
        conn = rollout.conn(host.id, observed)
        conn.run(["sh", "-c", START, "sh", instance.unit, *argv], sudo=True, check=True)

    # a run under way --------------------------------------------------------------------------
    def _check(self, run: m.CronRun) -> None:
        unit = DynoInstance(self.app, run.release, run.dyno, run.host).unit
        try:
            host = self._host(run.host)
            conn = self.ctx.fleet().connect(host, retry_for=REACH_SECONDS)
        except DynoformError as exc:
            if not _gone(exc):
                return  # not answering now: look again at the next tick
            self._end(replace(run, state="lost", note="its host was lost"))
            return
        argv = ["systemctl", "show", "--timestamp=unix", f"--property={STATUS_PROPERTIES}", unit]
        facts = _properties(conn.run(argv, timeout=15).stdout)
        ended = _ended(run, facts)
        if ended is None:
            return
        self._end(ended)
        conn.run(["sh", "-c", COLLECT, "sh", unit], sudo=True, timeout=30)

    def _end(self, run: m.CronRun) -> None:
        self.guard()
        self._save(self.job.with_run(run))
        if run.state == "lost":
            self._event(f"cron {self.job.id}: {run.dyno} was lost: {run.note}")
            return
        took = f" after {run.seconds:.1f} s" if run.seconds is not None else ""
        self._event(f"cron {self.job.id}: {run.dyno} exited with status {run.exit_status}{took}")


def _gone(exc: DynoformError) -> bool:
    return "is gone" in exc.message


def _properties(text: str) -> dict[str, str]:
    return dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)


def _ended(run: m.CronRun, facts: dict[str, str]) -> m.CronRun | None:
    """The run as recorded once its unit's facts say it ended; None while it runs."""
    if facts.get("LoadState") == "not-found":
        return replace(run, state="lost", note="its unit is gone (host restarted?)")
    active, sub = facts.get("ActiveState", ""), facts.get("SubState", "")
    if active in ("activating", "reloading") or (active == "active" and sub != "exited"):
        return None
    if active == "deactivating":
        return None
    status = int(facts.get("ExecMainStatus") or 0)
    # The controller's own clock when the start returned is finer than systemd's whole seconds.
    started = run.started_at or _stamp(facts.get("ExecMainStartTimestamp"))
    ended = _stamp(facts.get("ExecMainExitTimestamp")) or time.time()
    ok = status == 0 and facts.get("Result", "success") == "success"
    return replace(
        run,
        state="succeeded" if ok else "failed",
        exit_status=status,
        started_at=started,
        ended_at=ended,
        note="" if ok or status else facts.get("Result", ""),
    )


def _stamp(value: str | None) -> float | None:
    """systemd's `@1764529505` (with --timestamp=unix) to seconds; None when unset."""
    if not value or not value.startswith("@"):
        return None
    return float(value[1:])
