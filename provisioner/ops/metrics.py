"""Metrics: `dynoform metrics` (app_metrics), and the controller's duty that samples the dynos.

Everything is read from CloudWatch, on AWS and in the local cloud alike: the router's figures
are the load balancer's own metrics, the dynos' are published by the `metrics` duty (every
EVERY seconds on the leader: one `python3 -c` over SSH per runner, see plan/metrics.py).
CloudWatch keeps one-minute points for 15 days; the local cloud keeps them for 25 hours.
Autoscaling reads the router's figures through the same functions (aws/metrics.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from provisioner.aws import instances
from provisioner.aws import metrics as cw
from provisioner.context import Context
from provisioner.errors import ValidationError
from provisioner.ops.rollout import Observed, Rollout
from provisioner.ops.router import app_shard
from provisioner.plan import metrics as plan
from provisioner.plan.autoscale import Window
from provisioner.plan.units import RUNNING_STATES, DynoState
from provisioner.remote.fanout import fan_out

SOURCE = "metrics"
EVERY = 60.0  # seconds between samples: CloudWatch's points are per minute
MAX_SINCE = 15 * 86400  # CloudWatch keeps one-minute points for 15 days
AppMetrics = plan.AppMetrics


def app_metrics(ctx: Context, app: str, since_s: int = 3600, now: float = 0.0) -> AppMetrics:
    """The app's router and dyno figures of the last `since_s` seconds (whole minutes, the
    current one included), per minute and for the whole window."""
    if not 60 <= since_s <= MAX_SINCE:
        raise ValidationError(f"--since {since_s}s", "from 1m to 15d (CloudWatch keeps 15 days)")
    ctx.store.app(app)  # NotFound for an unknown app
    end = (int(now or time.time()) // plan.PERIOD + 1) * plan.PERIOD
    start = end - -(-since_s // plan.PERIOD) * plan.PERIOD
    cloudwatch = ctx.aws.client("cloudwatch")
    platform = ctx.platform(create=False)
    router: dict[str, plan.Series] = {}
    window: dict[str, float | None] = {}
    tg_arn = ctx.router().target_group_arn(app)
    if tg_arn is not None:
        lb_arn = app_shard(ctx, app).lb_arn  # the load balancer of the app's shard
        router = cw.router_series(cloudwatch, lb_arn, tg_arn, start, end)
        window = cw.router_window(cloudwatch, lb_arn, tg_arn, start, end)
    names = cw.dyno_names(cloudwatch, platform.name, app)
    dynos = cw.dyno_series(cloudwatch, platform.name, app, names, start, end) if names else {}
    return plan.app_metrics(app, since_s, start, end, router, window, dynos)


def router_windows(ctx: Context, app: str, now: float) -> list[Window]:
    """What autoscaling judges: the p95 and requests of the app's last two minutes."""
    tg_arn = ctx.router().target_group_arn(app)
    if tg_arn is None:
        return []
    cloudwatch = ctx.aws.client("cloudwatch")
    return cw.response_times(cloudwatch, app_shard(ctx, app).lb_arn, tg_arn, now)


# sampling ------------------------------------------------------------------------------------
class Sampler:
    """The controller's `metrics` duty: each tick samples every dyno of every ready runner and
    publishes the figures. It remembers each unit's last CPU counter for the next rate (a new
    leader publishes CPU from its second tick on)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cpu: dict[str, tuple[float, int]] = {}  # unit -> (when, CPU nanoseconds)

    def tick(self, ctx: Context, guard: Callable[[], None]) -> None:
        fleet = ctx.fleet()
        taken: list[tuple[float, list[plan.Sample]]] = []

        def sample(host: instances.Host) -> tuple[float, list[plan.Sample]]:
            result = fleet.connect(host).run(plan.sample_argv(), timeout=30)
            return time.time(), plan.parse_sample(result.stdout)

        for outcome in fan_out(fleet.ready(), sample, timeout=45):
            if outcome.ok and outcome.value is not None:
                taken.append(outcome.value)
            else:
                ctx.say(f"metrics: host {outcome.item.id} not sampled: {outcome.error}")
        datums = self.datums(taken)
        if datums:
            guard()  # one leader publishes
            cw.put_dyno_metrics(ctx.aws.client("cloudwatch"), ctx.target.platform, datums)

    def datums(self, taken: Sequence[tuple[float, list[plan.Sample]]]) -> list[dict[str, Any]]:
        """The datums of samples taken on hosts at their times; CPU rates from the last ones."""
        out = []
        with self._lock:
            before, self._cpu = self._cpu, {}
            for at, samples in taken:
                cpu = {
                    s.unit: plan.cpu_percent(before.get(s.unit), at, s.cpu_nsec) for s in samples
                }
                self._cpu.update(
                    {s.unit: (at, s.cpu_nsec) for s in samples if s.cpu_nsec is not None}
                )
                out += cw.dyno_datums(samples, cpu, at)
        return out


sampler = Sampler()


def tick(ctx: Context, guard: Callable[[], None]) -> None:
    sampler.tick(ctx, guard)


def with_memory(
    rollout: Rollout[Any], observed: Observed, app: str, states: list[DynoState]
) -> list[DynoState]:
    """The states, memory filled in from the dynos' processes where systemd has no figure
    (cgroup v1 without a memory controller: the local cloud's hosts). One command per host."""
    hosts = sorted(
        {s.instance.host for s in states if s.memory_bytes is None and s.active in RUNNING_STATES}
    )
    if not hosts:
        return states

    def sample(host: str) -> list[plan.Sample]:
        result = rollout.conn(host, observed).run(plan.sample_argv(app), timeout=30)
        return plan.parse_sample(result.stdout)

    memory = {}
    for outcome in fan_out(hosts, sample, timeout=45):
        for s in outcome.value or []:
            memory[(outcome.item, s.unit)] = s.memory_bytes
    return [
        replace(s, memory_bytes=memory.get((s.instance.host, s.instance.unit)))
        if s.memory_bytes is None
        else s
        for s in states
    ]
