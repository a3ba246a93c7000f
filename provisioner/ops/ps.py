"""Dynos: list them, scale, resize, restart and stop them; maintenance mode.

A formation change is recorded before the fleet converges to it, under the app's lease: a
command killed half-way is finished by the repair (ops/repair.py), one that fails is undone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from provisioner.context import Context
from provisioner.errors import DynoformError, NotFound
from provisioner.model.app import App
from provisioner.model.formation import Formation, apply_resize, apply_scale
from provisioner.ops import metrics, repair, router
from provisioner.ops.rollout import Observed, open_rollout
from provisioner.plan import autoscale
from provisioner.plan.controller import PLACEMENT_KEY, placement_from_dict, stranded
from provisioner.plan.units import DynoState
from provisioner.store import CONTROLLER_OPERATION


@dataclass(frozen=True)
class Dyno:
    """One dyno as `dynoform ps` shows it."""

    name: str  # web.1
    type: str
    state: str  # up, crashed, starting, stopping, or systemd's word
    host: str
    release: str  # v3
    since: str | None  # when it entered its state (ISO 8601, UTC)
    restarts: int
    memory_mb: float | None
    size: str
    port: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dyno_of(state: DynoState) -> Dyno:
    inst = state.instance
    if state.active == "active" and state.sub == "running":
        label = "up"
    elif state.sub == "auto-restart" or state.active == "failed":
        label = "crashed"
    elif state.active in ("activating", "reloading"):
        label = "starting"
    elif state.active == "deactivating":
        label = "stopping"
    else:
        label = state.active or "unknown"
    since = (
        datetime.fromtimestamp(state.since, UTC).isoformat(timespec="seconds")
        if state.since
        else None
    )
    memory = round(state.memory_bytes / 2**20, 1) if state.memory_bytes else None
    return Dyno(
        name=inst.name,
        type=inst.type,
        state=label,
        host=inst.host,
        release=f"v{inst.release}",
        since=since,
        restarts=state.restarts,
        memory_mb=memory,
        size=inst.size,
        port=inst.port,
    )


def list_dynos(ctx: Context, app: str) -> list[Dyno]:
    """The app's dynos that run or try to (an idle app left half-way is repaired first), and
    those of hosts that went away (`lost`) until they run elsewhere."""
    repair.settle(ctx, app)
    ctx.store.app(app)
    rollout = open_rollout(ctx)
    observed = rollout.observe()
    states = observed.of_app(app)
    if _strays(ctx, app, states) and repair.settle_strays(ctx, app):
        observed = rollout.observe()
        states = observed.of_app(app)
    states = metrics.with_memory(rollout, observed, app, states)
    ordered = sorted(states, key=lambda s: (s.instance.type, s.instance.index, s.instance.release))
    dynos = [d for d in map(dyno_of, ordered) if d.state != "inactive"]
    return dynos + lost_dynos(ctx, app, observed, {d.name for d in dynos})


def _strays(ctx: Context, app: str, states: list[DynoState]) -> bool:
    """Are dynos of a failed release loaded, running or crashed? (The old release's dynos
    draining after a deploy belong to a release that succeeded: they are no strays.)"""
    store = ctx.store
    current = store.current_release(app)
    versions = {
        s.instance.release for s in states if s.active != "inactive" and not s.instance.is_oneoff
    } - {current.version if current else 0}
    for version in sorted(versions):
        try:
            if store.release(app, version).status == "failed":
                return True
        except NotFound:
            continue
    return False


def lost_dynos(ctx: Context, app: str, observed: Observed, running: set[str]) -> list[Dyno]:
    """The app's dynos the controller last saw on hosts that no longer answer or were lost."""
    seen = {h.id for h in observed.hosts}
    doc = ctx.store.docs.get(PLACEMENT_KEY)  # the controller's record (ops/controller.py)
    where = placement_from_dict(doc.data) if doc else {}
    return [
        Dyno(d.name, d.name.split(".")[0], "lost", host, f"v{d.release}", None, 0, None, "", None)
        for host, d in stranded(where, set(where) - seen, app)
        if d.name not in running
    ]


def scale(
    ctx: Context,
    app: str,
    requests: Mapping[str, int] | Iterable[str],
    wait: bool = False,
    autoscaling: bool = False,
) -> Formation:
    """Set how many dynos of each type run: `{"web": 2}`, or requests as `ps:scale` takes them
    (`web=3`, `web+1`, `worker-1`, `web=2:standard-2x`). A type autoscaling owns is scaled only
    by autoscaling (`autoscaling=True`: the controller's duty, which never waits for the lease)."""
    texts = [f"{k}={n}" for k, n in requests.items()] if isinstance(requests, Mapping) else requests
    wanted = list(texts)
    if not autoscaling:
        _refuse_autoscaled(ctx, app, wanted)
    return _change_formation(
        ctx,
        app,
        lambda f, known: apply_scale(f, wanted, known),
        f"{CONTROLLER_OPERATION}: autoscale" if autoscaling else "scaled",
        wait,
        patient=not autoscaling,
    )


def _refuse_autoscaled(ctx: Context, app: str, requests: list[str]) -> None:
    doc = ctx.store.docs.get(autoscale.policy_key(app))
    if doc is None:
        return
    policy = autoscale.Policy.from_dict(doc.data)
    if policy.type in autoscale.scaled_types(requests):
        raise autoscale.owned_error(app, policy)


def resize(ctx: Context, app: str, requests: Iterable[str], wait: bool = False) -> Formation:
    """Change dyno sizes: `web=standard-2x` (`ps:type`)."""
    wanted = list(requests)
    return _change_formation(
        ctx, app, lambda f, known: apply_resize(f, wanted, known), "resized", wait
    )


def restart(ctx: Context, app: str, target: str | None = None, wait: bool = False) -> Formation:
    """Restart a type (`web`: rolling, with preboot), one dyno (`web.1`), or all of them."""
    release = ctx.store.current_release(app)
    known = set(release.process_types) if release else set()
    targets = [target] if target else sorted(known)
    return _change_formation(ctx, app, lambda f, _known: f, "restarted", wait, targets)


def stop(ctx: Context, app: str, dyno: str) -> list[str]:
    """Stop a dyno (`worker.1`) or every dyno of a type; returns the names of the dynos stopped.
    A dyno of the formation is started again by the controller (as Heroku's dyno manager does),
    or by the next deploy, restart or scale while it is paused; a one-off dyno stays stopped."""
    rollout = open_rollout(ctx)
    observed = rollout.observe()
    stopped = []
    for state in observed.of_app(app):
        inst = state.instance
        if dyno in (inst.name, inst.type) and state.active != "inactive":
            rollout.conn(inst.host, observed).run(
                ["systemctl", "stop", inst.unit], sudo=True, check=True
            )
            stopped.append(inst.name)
    if not stopped:
        raise NotFound(f"no running dyno {dyno} of {app}", "see `dynoform ps`")
    return stopped


def set_maintenance(ctx: Context, app: str, on: bool) -> App:
    """Maintenance mode: the router answers 503 with a page instead of the app."""
    record = ctx.store.update_app(app, lambda a: replace(a, maintenance=on))
    router.sync_rules(ctx, record)
    return record


def _change_formation(
    ctx: Context,
    app: str,
    change: Callable[[Formation, set[str]], Formation],
    operation: str,  # what the lease says is going on: "scaled", ...
    wait: bool,
    restart: Iterable[str] = (),
    patient: bool = True,
) -> Formation:
    store = ctx.store
    with repair.changing(ctx, app, operation, wait=wait, patient=patient):
        release = store.current_release(app)
        if release is None or not release.slug_key:
            raise DynoformError(f"{app} has no deployed release", "deploy first: dynoform deploy")
        formation, etag = store.formation(app)
        new = change(formation, set(release.process_types))
        config = store.release_config(app, release.version)
        # The wish is recorded first: a command killed half-way is finished by the repair.
        store.save_formation(app, new, etag)
        try:
            open_rollout(ctx).converge(app, release, config, new, restart)
        except BaseException:
            store.save_formation(app, formation, store.formation(app)[1])  # undone: as before
            raise
    return new
