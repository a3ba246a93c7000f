"""Autoscaling: the policy users set (`ps:autoscale:enable`), and the controller's duty that
follows it (`tick`, every EVERY seconds on the leader).

Each tick reads, per autoscaled app, the router's response times of the last minutes from
CloudWatch (the ALB's `TargetResponseTime`; the local cloud's router publishes the same), asks
plan/autoscale.py what to do, and scales through `ps.scale` under the app's lease like
`ps:scale` (never waiting: when a command holds the lease, the next tick tries again). Each
decision is an event of source `autoscale` with the numbers behind it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from provisioner import events
from provisioner.context import Context
from provisioner.errors import DynoformError, NotFound
from provisioner.model.formation import default_formation
from provisioner.ops import metrics, ps
from provisioner.ops.rollout import open_rollout
from provisioner.plan import autoscale as plan
from provisioner.store import CONTROLLER_OPERATION, LeaseBusy

SOURCE = "autoscale"
EVERY = 10.0  # seconds between ticks: CONFIRM_SECONDS is two of them
OPERATION = f"{CONTROLLER_OPERATION}: autoscale"


@dataclass(frozen=True)
class Autoscaling:
    """`ps:autoscale`: the app's policy (None: not autoscaled), the type's quantity now, and
    the last decisions, oldest first."""

    app: str
    policy: plan.Policy | None
    quantity: int | None
    decisions: list[plan.Decision] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "policy": self.policy.to_dict() if self.policy else None,
            "quantity": self.quantity,
            "decisions": [d.to_dict() for d in self.decisions],
        }


# the policy ----------------------------------------------------------------------------------
def policy_of(ctx: Context, app: str) -> plan.Policy | None:
    doc = ctx.store.docs.get(plan.policy_key(app))
    return plan.Policy.from_dict(doc.data) if doc else None


def enable(
    ctx: Context,
    app: str,
    process_type: str,
    low: int,
    high: int,
    p95_ms: int,
    scale_in_after: float = plan.DEFAULT_SCALE_IN_AFTER,
) -> plan.Policy:
    """Set (or replace) the app's policy; the controller follows it from its next tick."""
    policy = plan.make_policy(process_type, low, high, p95_ms, scale_in_after)
    ctx.store.app(app)  # NotFound for an unknown app
    ctx.store.docs.put(plan.policy_key(app), policy.to_dict())
    events.record(ctx.store.docs, SOURCE, f"enabled: {policy.summary()}", app)
    return policy


def disable(ctx: Context, app: str, process_type: str = "web") -> plan.Policy:
    """Remove the policy; the type keeps its current quantity and is scaled by hand again."""
    plan.check_type(process_type)
    policy = policy_of(ctx, app)
    if policy is None or policy.type != process_type:
        raise NotFound(f"{process_type} of {app} is not autoscaled")
    ctx.store.docs.delete(plan.policy_key(app))
    ctx.store.docs.delete(plan.state_key(app))
    events.record(ctx.store.docs, SOURCE, f"disabled for {process_type}", app)
    return policy


def status(ctx: Context, app: str) -> Autoscaling:
    ctx.store.app(app)
    policy = policy_of(ctx, app)
    if policy is None:
        return Autoscaling(app, None, None)
    return Autoscaling(app, policy, _quantity(ctx, app, policy), list(_state(ctx, app).decisions))


# the controller's duty -----------------------------------------------------------------------
def tick(ctx: Context, guard: Callable[[], None]) -> None:
    """Follow every app's policy once; one app's failure is said and the others go on."""
    for app in ctx.store.apps():
        try:
            policy = policy_of(ctx, app)
            if policy is not None:
                follow(ctx, app, policy, guard)
        except Exception as exc:  # noqa: BLE001 - the next tick tries again
            message = exc.message if isinstance(exc, DynoformError) else repr(exc)
            ctx.say(f"{app}: autoscaling failed: {message}")


def follow(
    ctx: Context, app: str, policy: plan.Policy, guard: Callable[[], None], now: float = 0.0
) -> plan.Decision | None:
    """One tick for one app: read, decide, scale, say. Returns the decision taken, if any (a
    hold for the same reason as the last one is taken again but not said again)."""
    now = now or time.time()
    quantity = _quantity(ctx, app, policy)
    if quantity is None:
        return None  # not deployed yet, or its Procfile has no such type
    state = _state(ctx, app)
    reading = plan.read(policy, _windows(ctx, app, now), now, state.changed_at)
    seen = plan.observe(state, reading, now)
    decision = plan.decide(policy, seen, quantity, reading, now)
    if decision is not None and decision.action == "out":
        decision = _with_room(ctx, app, policy, decision)
    after = seen
    if decision is not None:
        try:
            after, decision = _carry_out(ctx, app, policy, seen, decision, guard, now)
        except LeaseBusy:
            decision = None  # a command is changing the app: the next tick decides again
        except NotFound:
            return None  # destroyed meanwhile: an event or a state would bring records back
    if after != state:
        ctx.store.docs.put(plan.state_key(app), after.to_dict())
    return decision


def _carry_out(
    ctx: Context,
    app: str,
    policy: plan.Policy,
    seen: plan.State,
    decision: plan.Decision,
    guard: Callable[[], None],
    now: float,
) -> tuple[plan.State, plan.Decision]:
    """Scale when the decision says so; say it (a hold once per reason); the state after."""
    if decision.scales:
        guard()
        try:
            ps.scale(ctx, app, {policy.type: decision.after}, autoscaling=True)
        except LeaseBusy:
            raise  # not a failure: the next tick decides again
        except DynoformError as exc:
            if isinstance(exc, NotFound) and not ctx.store.app_exists(app):
                raise  # destroyed meanwhile
            decision = plan.failed(decision, exc.message)
    said = plan.said(seen, decision, now)
    if said is None:
        return seen, decision
    events.record(ctx.store.docs, SOURCE, decision.message, app)
    ctx.say(f"{app}: {decision.message}")
    return said, decision


def _quantity(ctx: Context, app: str, policy: plan.Policy) -> int | None:
    current = ctx.store.current_release(app)
    if current is None or not current.slug_key or policy.type not in current.process_types:
        return None
    stored, _ = ctx.store.formation(app)
    return default_formation(list(current.process_types), stored)[policy.type].quantity


def _state(ctx: Context, app: str) -> plan.State:
    doc = ctx.store.docs.get(plan.state_key(app))
    return plan.State.from_dict(doc.data) if doc else plan.State()


def _windows(ctx: Context, app: str, now: float) -> list[plan.Window]:
    return metrics.router_windows(ctx, app, now)


def _with_room(
    ctx: Context, app: str, policy: plan.Policy, decision: plan.Decision
) -> plan.Decision:
    """The scale out, or a hold when placement finds no host with memory for one more dyno."""
    current = ctx.store.current_release(app)
    stored, _ = ctx.store.formation(app)
    formation = default_formation(list(current.process_types) if current else [], stored)
    pf = formation[policy.type]
    formation[policy.type] = replace(pf, quantity=decision.after)
    rollout = open_rollout(ctx)
    try:
        rollout.placement(rollout.observe(), app, formation)
    except DynoformError as exc:
        return plan.no_room(decision, exc.message)
    return decision
