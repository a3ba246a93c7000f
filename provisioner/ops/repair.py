"""Repair: an app's records and fleet brought back to one truth after an interrupted command.

Operations record what they are about to do before doing it: a release stays `pending` until
its rollout is proven, a build `pending` until it ends, and the app's lease is held all along.
A command killed half-way (kill -9, a lost connection, Ctrl-C during cleanup) leaves these
records. The next command that takes the app's lease repairs the app first when its lease was
taken over from a dead holder or its newest release is pending; read-only commands (`apps:info`,
`releases`, `ps`) do the same when the app is idle; `dynoform apps:repair` does it on demand:

- pending releases are judged by what runs (plan/recovery.py); one that serves is `succeeded`
  and the app's config becomes its config (a config change whose rollout finished is kept);
- the app's dynos converge to the release that serves (strays of failed releases stop, missing
  dynos start);
- the app's target group holds exactly its web dynos (a target with no dyno behind it goes:
  its port may later belong to another app);
- builds that never finished are marked failed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from provisioner.aws.router import RouterTarget
from provisioner.context import Context
from provisioner.errors import DynoformError
from provisioner.model.formation import default_formation
from provisioner.ops import builds
from provisioner.ops.rollout import Observed, Rollout, open_rollout
from provisioner.plan.recovery import judge_pending
from provisioner.plan.rollout import RolloutPlan
from provisioner.plan.units import RUNNING_STATES, DynoInstance
from provisioner.store import Lease, LeaseBusy, Store

INTERRUPTED = "interrupted: the command that ran it stopped before it ended"


def needs_repair(store: Store, app: str) -> bool:
    """The cheap test: is the app's newest release pending?"""
    versions = store.release_versions(app)
    return bool(versions) and store.release(app, versions[-1]).status == "pending"


@contextmanager
def changing(
    ctx: Context,
    app: str,
    operation: str,
    wait: bool = False,
    patient: bool = True,
    exists: bool = True,
) -> Iterator[Lease]:
    """The app's lease for a command that changes it; what an interrupted command left half-way
    is repaired first (when the lease was taken over from a dead holder, or the newest release
    is pending). A command is `patient` with the controller's repairs; the controller is not.

    The app must still exist once the lease is ours (NotFound else): a command or a heal that
    waited on an `apps:destroy` finds it gone instead of starting its dynos again. `exists`
    False: the name is being claimed (a rename's new name)."""
    with ctx.store.lease(app, operation, wait=wait, patient=patient) as lease:
        if exists:
            ctx.store.app(app)
        _repair_if_needed(ctx, app, lease)
        yield lease


def _repair_if_needed(ctx: Context, app: str, lease: Lease) -> None:
    if lease.took_over is None and not needs_repair(ctx.store, app):
        return
    try:
        if lease.took_over is not None:
            ctx.say(
                f"{app}: {lease.took_over.operation} by {lease.took_over.holder} ended without "
                "releasing its lease; repairing first"
            )
        for line in repair(open_rollout(ctx), app):
            ctx.say(f"{app}: {line}")
        lease.repaired = True
    except DynoformError as exc:  # the command goes on; a later one (or apps:repair) retries
        ctx.say(f"warning: repairing {app} failed: {exc.message} (`dynoform apps:repair`)")


def settle(ctx: Context, app: str) -> None:
    """For read-only commands: repair an idle app whose newest release is pending.

    If another command holds the lease, its release is pending because it is in progress.
    """
    if not needs_repair(ctx.store, app):
        return
    try:
        with changing(ctx, app, "repair"):
            pass
    except LeaseBusy:
        return


def settle_strays(ctx: Context, app: str) -> bool:
    """For `ps`: dynos of a failed release run (a start that outran an interrupted command's
    undo): the idle app is repaired, which stops them. False when another command holds it."""
    try:
        with changing(ctx, app, "repair") as lease:
            if not lease.repaired:
                for line in repair(open_rollout(ctx), app):
                    ctx.say(f"{app}: {line}")
        return True
    except LeaseBusy:
        return False


def repair_app(ctx: Context, app: str, wait: bool) -> list[str]:
    """`apps:repair`: repair under the lease whether or not anything looks wrong."""
    with changing(ctx, app, "repair", wait=wait) as lease:
        if lease.repaired:
            return ["repaired"]
        return repair(open_rollout(ctx), app) or ["nothing to repair"]


def repair(rollout: Rollout, app: str) -> list[str]:
    """Converge records and fleet; returns what was changed, one line each. Hold the lease."""
    store = rollout.store
    notes = _finish_builds(store, app)
    observed = rollout.observe()
    running = [
        s.instance
        for s in observed.of_app(app)
        if s.active in RUNNING_STATES and not s.instance.is_oneoff
    ]
    notes += _judge(rollout, observed, app, running)
    notes += _converge(rollout, observed, app, running)
    return notes


def _finish_builds(store: Store, app: str) -> list[str]:
    notes = []
    for build in builds.list_builds(store, app):
        if build.get("status") in ("pending", "running"):
            builds.finish_build(store, app, str(build["id"]), status="failed", error=INTERRUPTED)
            notes.append(f"build {build['id']} never finished: marked failed")
    return notes


def _judge(
    rollout: Rollout, observed: Observed, app: str, running: list[DynoInstance]
) -> list[str]:
    store = rollout.store
    pending = [r for r in store.releases(app) if r.status == "pending"]
    if not pending:
        return []
    current = store.current_release(app)
    formation, _ = store.formation(app)
    healthy = _healthy_units(rollout, observed, app, running)
    judged = judge_pending(
        pending, formation, running, healthy, current.version if current else None
    )
    notes = []
    for version, status in sorted(judged.items()):
        store.set_release_status(app, version, status)
        notes.append(f"v{version} was left pending by an interrupted command: now {status}")
        if status == "succeeded":
            notes += _adopt_config(store, app, version)
    return notes


def _healthy_units(
    rollout: Rollout, observed: Observed, app: str, running: list[DynoInstance]
) -> set[str]:
    web = {RouterTarget(observed.address(d.host), int(d.port)): d.unit for d in running if d.port}
    health = rollout.router.health(app, web)
    return {unit for target, unit in web.items() if health.get(target) == "healthy"}


def _adopt_config(store: Store, app: str, version: int) -> list[str]:
    """The serving release's config is the app's config (its change was never saved)."""
    snapshot = store.release_config(app, version)
    config, etag = store.config(app)
    if config == snapshot:
        return []
    store.save_config(app, snapshot, etag)
    return [f"config vars set to those of v{version}"]


def _converge(
    rollout: Rollout, observed: Observed, app: str, running: list[DynoInstance]
) -> list[str]:
    plan, (added, removed) = converge_app(rollout, observed, app, running)
    notes = [f"stopped {d.name} of v{d.release}" for d in plan.stopped] if plan else []
    notes += [f"started {d.name} of v{d.release}" for d in plan.started] if plan else []
    notes += [f"router: removed target {t.ip}:{t.port} (no dyno of {app})" for t in removed]
    notes += [f"router: added target {t.ip}:{t.port}" for t in added]
    return notes


def converge_app(
    rollout: Rollout, observed: Observed, app: str, running: list[DynoInstance]
) -> tuple[RolloutPlan | None, tuple[set[RouterTarget], set[RouterTarget]]]:
    """Dynos to the serving release (or none), then the router to exactly its web dynos.
    Returns the rollout's plan (None: nothing to serve) and the targets (added, removed)."""
    store = rollout.store
    current = store.current_release(app)
    if current is not None and current.slug_key:
        stored, _ = store.formation(app)
        formation = default_formation(list(current.process_types), stored)
        config = store.release_config(app, current.version)
        plan = rollout.converge(app, current, config, formation, observed=observed)
    elif running:
        newest = store.release(app, max(d.release for d in running))
        plan = rollout.converge(app, newest, {}, {}, observed=observed)
    else:
        plan = None
    final = plan.final if plan else []
    wanted = {RouterTarget(observed.address(d.host), int(d.port)) for d in final if d.port}
    return plan, rollout.router.sync_targets(app, wanted)
