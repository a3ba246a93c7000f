"""Make the local cloud's moto behave like AWS where dynoform depends on it.

1. Targets: AWS identifies a registered target by (Id, Port), so one host can hold several web
   dynos (and, during a preboot, the old and the new dyno side by side). moto 5 keys targets by
   Id alone: registering 10.0.0.5:20002 silently replaces 10.0.0.5:20001, and deregistering the
   old one then removes the new one. We key them by (Id, Port).
2. Target health: moto reports every registered target healthy. The local cloud's HAProxy runs
   the real health checks, so its view is fed back here and describe_target_health tells the
   truth: `initial` until HAProxy has the target up, `unhealthy` when its checks fail.

Applied in the daemon's process only (moto serves from there); tests with `mock_aws` keep
moto's own behaviour.
"""

from __future__ import annotations

import csv
import io
import threading
from typing import Any

_health: dict[tuple[str, str, int], str] = {}
_lock = threading.Lock()
_applied = False

# HAProxy `show stat` server status -> ELBv2 target health state.
_STATES = {
    "UP": "healthy",
    "no check": "healthy",
    "NOLB": "healthy",
    "DRAIN": "draining",
    "MAINT": "initial",
    "DOWN": "unhealthy",
}
_REASONS = {
    "initial": ("Elb.RegistrationInProgress", "Target registration is in progress"),
    "unhealthy": ("Target.FailedHealthChecks", "Health checks failed"),
    "draining": ("Target.DeregistrationInProgress", "Target deregistration is in progress"),
}


def key(target: dict[str, Any], default_port: Any) -> str:
    return f"{target['Id']}:{target.get('Port', default_port)}"


def health_state(status: str, last_check: str = "") -> str:
    """ELBv2 state of one HAProxy server from its `show stat` status (e.g. `DOWN 1/2`)."""
    if status.startswith("DOWN ") and "/" in status:
        return "initial"  # going up: rise checks in progress, like ALB's `initial`
    if status.startswith("UP ") and "/" in status:
        return "healthy"  # still up while failing fall checks
    return _STATES.get(status, "initial")


def parse_show_stat(text: str) -> dict[tuple[str, str], str]:
    """(backend, server) -> ELBv2 state, from HAProxy's `show stat` CSV."""
    lines = text.lstrip("# ").splitlines()
    result: dict[tuple[str, str], str] = {}
    for row in csv.DictReader(io.StringIO("\n".join(lines))):
        server = row.get("svname", "")
        if server in ("FRONTEND", "BACKEND", ""):
            continue
        result[(row.get("pxname", ""), server)] = health_state(row.get("status", ""))
    return result


def set_health(states: dict[tuple[str, str, int], str]) -> None:
    """Replace the known health of targets: (target group arn, id, port) -> state."""
    with _lock:
        _health.clear()
        _health.update(states)


def apply() -> None:
    """Patch moto's target groups (idempotent)."""
    global _applied
    if _applied:
        return
    from moto.elbv2.exceptions import InvalidTargetError
    from moto.elbv2.models import FakeHealthStatus, FakeTargetGroup

    def register(self: Any, targets: list[dict[str, Any]]) -> None:
        from moto.elbv2.exceptions import TargetNotRunning

        for target in targets:
            if instance := self.ec2_backend.get_instance_by_id(target["Id"]):
                if instance.state != "running":
                    raise TargetNotRunning(instance_id=target["Id"])
            entry = {"Id": target["Id"], "Port": target.get("Port", self.port)}
            self.targets[key(entry, self.port)] = entry
            self.deregistered_targets.pop(key(entry, self.port), None)

    def deregister(self: Any, targets: list[dict[str, Any]]) -> None:
        for target in targets:
            k = key(target, self.port)
            found = self.targets.pop(k, None)
            if found is None:
                raise InvalidTargetError()
            self.deregistered_targets[k] = found

    def deregister_terminated_instances(self: Any, instance_ids: list[str]) -> None:
        for k, target in list(self.targets.items()):
            if target["Id"] in instance_ids:
                self.terminated_targets[k] = self.targets.pop(k)

    def health_for(self: Any, target: dict[str, Any], ec2_backend: Any) -> Any:
        port = int(target.get("Port", self.port))
        k = key({"Id": target["Id"], "Port": port}, self.port)
        if k not in self.targets:
            state = "draining" if k in self.terminated_targets else "unused"
            reason = _REASONS.get(state, ("Target.NotRegistered", "Target is not registered"))
            return FakeHealthStatus(target["Id"], str(port), self.health_check_port, state, *reason)
        with _lock:
            state = _health.get((self.arn, target["Id"], port), "initial")
        if state == "healthy":
            return FakeHealthStatus(target["Id"], str(port), self.health_check_port, "healthy")
        reason = _REASONS.get(state, _REASONS["initial"])
        return FakeHealthStatus(target["Id"], str(port), self.health_check_port, state, *reason)

    FakeTargetGroup.register = register  # type: ignore[method-assign]
    FakeTargetGroup.deregister = deregister  # type: ignore[method-assign]
    FakeTargetGroup.deregister_terminated_instances = deregister_terminated_instances  # type: ignore[method-assign]
    FakeTargetGroup.health_for = health_for  # type: ignore[method-assign]
    _applied = True


def feed_from(lbs: Any) -> None:
    """Read HAProxy's server states through the load balancers' runtime API into moto."""
    model = lbs.model
    if not model.target_groups:
        set_health({})
        return
    stats = parse_show_stat(lbs.show_stat())
    states: dict[tuple[str, str, int], str] = {}
    for group in model.target_groups:
        for target in group.targets:
            state = stats.get((group.backend, target.server_name))
            if state is not None:
                states[(group.arn, target.id, int(target.port))] = state
    set_health(states)
