"""Autoscaling, as pure functions: a policy, the router's response times per minute, a decision.

The router's response times come as minute windows (the ALB publishes TargetResponseTime to
CloudWatch per minute; the local cloud's router publishes the same metric). Each tick the
controller reads the windows of the current and the previous minute and judges the newest one
with enough requests (`reading`):

- out: its p95 is above the goal, has stayed above for CONFIRM_SECONDS (two ticks), and the
  window began after the last change (it measures the formation as it is now): one more dyno;
- in: its p95 is below half the goal, or the app had fewer than MIN_SAMPLES requests in the two
  minutes ("quiet"), for `scale_in_after` seconds, and the last change is as old: one dyno less;
- never beyond the policy's bounds (a formation outside them is brought inside at once), nor
  beyond what the fleet's memory holds (the caller asks placement, then `no_room`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from provisioner.errors import DynoformError, ValidationError
from provisioner.model.formation import MAX_QUANTITY

AUTOSCALED_TYPES = ("web",)  # as on Heroku: the router's response times measure web dynos only
DEFAULT_SCALE_IN_AFTER = 300.0
MIN_SAMPLES = 10  # fewer requests in a minute say too little about its p95
CONFIRM_SECONDS = 10.0  # the p95 stays above the goal this long (two ticks) before a scale out
WELL_BELOW = 0.5  # "well below the goal": under half of it
KEEP_DECISIONS = 10
_REQUEST_RE = re.compile(r"([A-Za-z0-9_-]+)(?:=|\+|-)\d+(?::[a-z0-9-]+)?")  # as apply_scale's


def policy_key(app: str) -> str:
    """Written by users (ps:autoscale:enable/disable); removed with the app."""
    return f"apps/{app}/autoscale.json"


def state_key(app: str) -> str:
    """Written by the controller only: what it has seen and decided."""
    return f"apps/{app}/autoscale-state.json"


@dataclass(frozen=True)
class Policy:
    type: str
    min: int
    max: int
    p95_ms: int  # the goal
    scale_in_after: float = DEFAULT_SCALE_IN_AFTER

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        return make_policy(
            str(data["type"]),
            int(data["min"]),
            int(data["max"]),
            int(data["p95_ms"]),
            float(data.get("scale_in_after", DEFAULT_SCALE_IN_AFTER)),
        )

    def summary(self) -> str:
        return (
            f"{self.type}: {self.min}..{self.max} dynos, p95 goal {self.p95_ms} ms, "
            f"scale in after {self.scale_in_after:g} s"
        )


def check_type(process_type: str) -> str:
    if process_type not in AUTOSCALED_TYPES:
        raise ValidationError(
            f"process type {process_type!r}",
            "only web dynos can be autoscaled (as on Heroku): the router's response times "
            "measure web dynos alone",
        )
    return process_type


def make_policy(
    process_type: str,
    low: int,
    high: int,
    p95_ms: int,
    scale_in_after: float = DEFAULT_SCALE_IN_AFTER,
) -> Policy:
    """A validated policy; every error names its option."""
    check_type(process_type)
    if not 1 <= low <= MAX_QUANTITY:
        raise ValidationError("--min", f"must be between 1 and {MAX_QUANTITY}, got {low}")
    if not low <= high <= MAX_QUANTITY:
        raise ValidationError("--max", f"must be between --min ({low}) and {MAX_QUANTITY}")
    if p95_ms < 1:
        raise ValidationError("--p95", f"must be a positive number of milliseconds, got {p95_ms}")
    if scale_in_after < 0:
        raise ValidationError(
            "--scale-in-after", f"must be 0 or more seconds, not {scale_in_after}"
        )
    return Policy(process_type, low, high, p95_ms, float(scale_in_after))


def owned_error(app: str, policy: Policy) -> DynoformError:
    """What a manual `ps:scale` of an autoscaled type says."""
    return DynoformError(
        f"{policy.type} of {app} is autoscaled ({policy.min}..{policy.max} dynos, p95 goal "
        f"{policy.p95_ms} ms): autoscaling owns its quantity",
        f"dynoform ps:autoscale:disable {policy.type} -a {app}, then scale",
    )


def scaled_types(requests: Sequence[str]) -> set[str]:
    """The process types `ps:scale` requests name (`web+1` -> web); apply_scale checks the
    rest of each request."""
    found = (_REQUEST_RE.fullmatch(text) for text in requests)
    return {match.group(1) for match in found if match}


# what the router measured ---------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """One minute of the router's response times for an app's target group."""

    start: float  # epoch seconds, on a whole minute
    p95_ms: float | None
    requests: int


@dataclass(frozen=True)
class Reading:
    verdict: str  # above, steady, below, quiet, or unknown (nothing to judge since the change)
    p95_ms: float | None = None
    requests: int = 0
    window: float | None = None  # the start of the minute judged

    def evidence(self) -> str:
        if self.p95_ms is None or self.window is None:
            return f"{self.requests} requests in the last two minutes"
        minute = datetime.fromtimestamp(self.window, UTC).strftime("%H:%M")
        return f"{self.requests} requests in the minute from {minute} UTC"


def read(policy: Policy, windows: Sequence[Window], now: float, since: float | None) -> Reading:
    """Judge the newest window of the current and previous minute that has MIN_SAMPLES
    requests and began after the last change (`since`)."""
    recent = [w for w in windows if now - 120 < w.start <= now]
    fresh = [w for w in recent if since is None or w.start >= since]
    busy = [w for w in fresh if w.requests >= MIN_SAMPLES and w.p95_ms is not None]
    if busy:
        w = max(busy, key=lambda x: x.start)
        p95 = float(w.p95_ms or 0.0)
        if p95 > policy.p95_ms:
            verdict = "above"
        elif p95 < policy.p95_ms * WELL_BELOW:
            verdict = "below"
        else:
            verdict = "steady"
        return Reading(verdict, p95, w.requests, w.start)
    total = sum(w.requests for w in recent)
    return Reading("quiet" if total < MIN_SAMPLES else "unknown", None, total)


# what the controller remembers and decides ----------------------------------------------------
@dataclass(frozen=True)
class Decision:
    at: float
    action: str  # out, in, bounds (scaled); failed; at-max, no-room (said once, not scaled)
    type: str
    before: int
    after: int
    p95_ms: float | None
    goal_ms: int
    requests: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        p95 = data.get("p95_ms")
        return cls(
            float(data["at"]),
            str(data["action"]),
            str(data["type"]),
            int(data["before"]),
            int(data["after"]),
            None if p95 is None else float(p95),
            int(data["goal_ms"]),
            int(data["requests"]),
            str(data["message"]),
        )

    @property
    def scales(self) -> bool:
        return self.after != self.before


@dataclass(frozen=True)
class State:
    above_since: float | None = None
    below_since: float | None = None  # well below the goal, or quiet
    changed_at: float | None = None  # the last scale by the autoscaler
    held: str = ""  # why it last held (said once until the reason changes)
    decisions: tuple[Decision, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["decisions"] = [d.to_dict() for d in self.decisions]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> State:
        def stamp(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        return cls(
            stamp("above_since"),
            stamp("below_since"),
            stamp("changed_at"),
            str(data.get("held", "")),
            tuple(Decision.from_dict(d) for d in data.get("decisions", ())),
        )


def observe(state: State, reading: Reading, now: float) -> State:
    """Since when the p95 has been above the goal, or well below it (quiet counts as below)."""
    above = reading.verdict == "above"
    below = reading.verdict in ("below", "quiet")
    return replace(
        state,
        above_since=(state.above_since or now) if above else None,
        below_since=(state.below_since or now) if below else None,
        held=state.held if above else "",
    )


def decide(
    policy: Policy, state: State, quantity: int, reading: Reading, now: float
) -> Decision | None:
    """What to do now, given `state` as `observe` left it and the type's current quantity."""
    if quantity < policy.min or quantity > policy.max:
        after = min(max(quantity, policy.min), policy.max)
        bound = "minimum" if quantity < policy.min else "maximum"
        return _decision(now, "bounds", policy, quantity, after, reading, f"the policy's {bound}")
    if state.above_since is not None and now - state.above_since >= CONFIRM_SECONDS:
        why = (
            f"p95 {_ms(reading.p95_ms)} > goal {policy.p95_ms} ms "
            f"({reading.evidence()}), above it for {now - state.above_since:.0f} s"
        )
        if quantity >= policy.max:
            return _decision(
                now,
                "at-max",
                policy,
                quantity,
                quantity,
                reading,
                f"{why}; {quantity} is the maximum",
            )
        return _decision(now, "out", policy, quantity, quantity + 1, reading, why)
    waited = state.changed_at is None or now - state.changed_at >= policy.scale_in_after
    if (
        state.below_since is not None
        and now - state.below_since >= policy.scale_in_after
        and waited
        and quantity > policy.min
    ):
        if reading.verdict == "quiet":
            why = f"quiet ({reading.evidence()})"
        else:
            why = (
                f"p95 {_ms(reading.p95_ms)} < {policy.p95_ms * WELL_BELOW:g} ms, half the goal "
                f"({reading.evidence()})"
            )
        why += f", for {now - state.below_since:.0f} s"
        return _decision(now, "in", policy, quantity, quantity - 1, reading, why)
    return None


def no_room(decision: Decision, detail: str) -> Decision:
    """A scale out the fleet's memory cannot hold becomes a hold that says why."""
    why = decision.message.partition(": ")[2]
    return replace(
        decision,
        action="no-room",
        after=decision.before,
        message=f"{decision.type} stays at {decision.before}: {why}; the fleet's memory holds "
        f"no more ({detail})",
    )


def failed(decision: Decision, error: str) -> Decision:
    """A scale that failed is said with its error; like a change, the next decision waits for
    a minute that began after it (no retry every tick)."""
    return replace(decision, action="failed", message=f"{decision.message}; failed: {error}")


def said(state: State, decision: Decision, now: float) -> State | None:
    """The state after the decision was carried out; None when it need not be said again (a
    hold for the same reason as the last one)."""
    if not decision.scales:
        if state.held == decision.action:
            return None
        return replace(state, held=decision.action, decisions=_keep(state, decision))
    return replace(
        state,
        above_since=None,
        below_since=now if state.below_since is not None else None,
        changed_at=now,
        held="",
        decisions=_keep(state, decision),
    )


def _keep(state: State, decision: Decision) -> tuple[Decision, ...]:
    return (*state.decisions, decision)[-KEEP_DECISIONS:]


def _decision(
    now: float, action: str, policy: Policy, before: int, after: int, reading: Reading, why: str
) -> Decision:
    head = (
        f"{policy.type} {before} -> {after}"
        if after != before
        else f"{policy.type} stays at {before}"
    )
    return Decision(
        now,
        action,
        policy.type,
        before,
        after,
        None if reading.p95_ms is None else round(reading.p95_ms, 1),
        policy.p95_ms,
        reading.requests,
        f"{head}: {why}",
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (None for no values): what the local cloud computes for pNN."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return float(ordered[int(rank) - 1])
