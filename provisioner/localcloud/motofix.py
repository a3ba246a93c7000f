"""Make the local cloud's moto behave like AWS where dynoform depends on it.

1. Targets: AWS identifies a registered target by (Id, Port), so one host can hold several web
   dynos (and, during a preboot, the old and the new dyno side by side). moto 5 keys targets by
   Id alone: registering 10.0.0.5:20002 silently replaces 10.0.0.5:20001, and deregistering the
   old one then removes the new one. We key them by (Id, Port).
2. Target health: moto reports every registered target healthy. The local cloud's HAProxy runs
   the real health checks, so its view is fed back here and describe_target_health tells the
   truth: `initial` until HAProxy has the target up, `unhealthy` when its checks fail.
3. Requested certificates: moto signs them with a made-up "Amazon" issuer no client trusts and
   keeps them pending for a minute. The local cloud has no DNS to validate through, so its ACM
   issues them at once from the local CA (`dynoform local trust` makes clients trust it).
4. Private keys: ACM never hands out the key of a certificate it holds; the load balancer uses
   it. The local load balancer is part of the local cloud, so it reads the key (and the chain
   the user imported) from moto's ACM, in this process (`acm_key`).
5. Change signal: every ELBv2 call that changes something sets `elb_changed`, so the daemon
   brings HAProxy in line at once instead of polling ELBv2 several times a second; and it
   notes which target groups' targets changed, so that the daemon reads only those when
   nothing else did (`take_target_changes`).
6. Conditional writes: S3 checks If-Match / If-None-Match and writes in one step; moto checks,
   then writes, and its server answers on many threads, so two writers could both pass the
   check (two releases numbered alike, two holders of a lease, a cron minute claimed twice).
   PutObject runs under a lock (`atomic_conditional_writes`).
7. Percentiles: moto's CloudWatch keeps every value put with PutMetricData but answers `p95`
   (a GetMetricData Stat, as autoscaling asks) with nothing. CloudWatch computes percentiles
   from the values it was given; so do we (nearest rank, over the values of each period).
   moto stores a value put with a count as that many values (the router's response times: a
   value per request, and 2 s of the daemon's CPU a minute to prune them after a benchmark);
   here it is stored once with its count (`weighted_values`), which every statistic counts.
   moto also keeps every value forever: those older than METRICS_KEPT are dropped, and the
   equal values of a metric within a minute older than COMPACT_AFTER are merged into one.
8. Metric reads: moto's GetMetricData scans every value of the window once per period and
   query, so a day of one-minute points took minutes; it reads each query's own values once
   and groups them by period (`fast_metric_reads`), with the same answers.
9. What moto hides (`imitate_aws`): EC2 is eventually consistent, so a new instance or
   security group is unknown for a moment to calls that name it (InvalidInstanceID.NotFound,
   InvalidGroup.NotFound); AWS answers in pages (listener rules, target groups, hosted zones,
   tagged resources); S3 answers a conditional write racing another with 409
   ConditionalRequestConflict. moto does none of this: here a new instance or group stays
   unknown for `visible_after` seconds, those calls answer `page_size` items a page unless
   the caller asks for a page size (the local load balancer does), and the
   next `conflicts` conditional writes get a 409. The daemon turns the first two on; moto
   tests turn them on with the `like_aws` fixture (tests/aws/conftest.py).
10. Quotas: AWS refuses a 101st rule on a load balancer (its listeners together, default
    rules not counted), a 101st target group behind one load balancer, a 6th condition value
    in a rule, a 26th certificate on a listener (its default one not counted), a 1001st
    target in a target group or behind one load balancer, and a 51st Application Load Balancer
    in a region;
    moto refuses none of them (and counts a listener's default certificate among its 25).
    `quotas` makes it refuse them as AWS does, with AWS's error codes, so tests meet the same
    walls.
11. Dispatch: moto's server lists its own package directory (a stat of each of ~150 entries)
    on every request to tell a service name from a host; that list cannot change while the
    daemon runs, so it is read once (`fast_dispatch`). It was ~10 % of the daemon's CPU
    during a deploy.
12. Old versions: a versioned bucket keeps every write as a noncurrent version, and the
    platform's lifecycle rules (aws/state.py) expire them after days; moto keeps each one in
    memory and runs no lifecycle rules, so the daemon grew without bound (leases and the
    controllers' records are rewritten every few seconds; an hour of tests and benchmarks left
    it at 11 GB and every call slower). Here a noncurrent version goes VERSIONS_KEPT seconds
    after it stopped being current (`prune_versions`, once a minute).

Applied in the daemon's process only (moto serves from there); tests with `mock_aws` keep
moto's own behaviour, but for 6 to 8 and 10 (tests/aws/conftest.py applies them too; 9 with
its `like_aws` fixture).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

from provisioner.plan.shards import AWS as AWS_QUOTAS
from provisioner.plan.shards import Quotas

_health: dict[tuple[str, str, int], str] = {}
_lock = threading.Lock()
# Set by every ELBv2 call that changes something (targets, rules, listeners, target groups):
# the daemon syncs HAProxy at once instead of polling ELBv2 often.
elb_changed = threading.Event()
# What changed since the daemon last asked (take_target_changes): the target groups whose
# targets alone changed (RegisterTargets, DeregisterTargets), or None once anything else did.
# With 100 apps, reading all of ELBv2 takes ~200 calls and over a second; a target change
# needs one call.
_target_changes: set[str] | None = set()
TARGET_ACTIONS = ("RegisterTargets", "DeregisterTargets")
_applied = False
# Reads HAProxy's server states into _health (the daemon sets it): called right before moto
# answers describe_target_health, so a deploy waiting for its new targets sees a passing check
# at once rather than at the next periodic feed.
_feeder: Callable[[], None] | None = None
METRICS_KEPT = 25 * 3600.0  # seconds of CloudWatch values kept in moto (AWS: 15 days per minute)
COMPACT_AFTER = 3600.0  # values older than this are merged per minute (compact_timings)
_compacted: dict[tuple[str, str], float] = {}  # (account, region) -> merged up to that minute
VERSIONS_KEPT = 600.0  # seconds a noncurrent S3 version stays in moto (S3: the lifecycle's days)

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


def waiting() -> bool:
    """Whether any target is not (yet) healthy: its state is worth feeding back often."""
    with _lock:
        return any(state != "healthy" for state in _health.values())


def set_feeder(feeder: Callable[[], None] | None) -> None:
    global _feeder
    _feeder = feeder


def note_change(action: str, target_group_arn: str | None) -> None:
    """Remember one ELBv2 change for take_target_changes(), then signal it."""
    global _target_changes
    with _lock:
        if _target_changes is not None and action in TARGET_ACTIONS and target_group_arn:
            _target_changes.add(target_group_arn)
        else:
            _target_changes = None
    elb_changed.set()


def take_target_changes() -> set[str] | None:
    """The target groups whose targets alone changed since the last call; None when something
    else changed too (the whole of ELBv2 must be read); empty when nothing changed."""
    global _target_changes
    with _lock:
        taken, _target_changes = _target_changes, set()
    return taken


def set_health(states: dict[tuple[str, str, int], str]) -> None:
    """Replace the known health of targets: (target group arn, id, port) -> state."""
    with _lock:
        _health.clear()
        _health.update(states)


def acm_key(arn: str) -> tuple[bytes, bytes] | None:
    """The private key and the imported chain (without moto's made-up root) of a certificate
    moto's ACM holds in this process; None when there is no such certificate."""
    from moto.acm.models import AWS_ROOT_CA, acm_backends

    parts = arn.split(":")
    if len(parts) < 6 or parts[2] != "acm":
        return None
    region, account = parts[3], parts[4]
    try:
        bundle = acm_backends[account][region]._certificates.get(arn)
    except KeyError:
        return None
    if bundle is None:
        return None
    chain = bytes(bundle.chain).replace(AWS_ROOT_CA, b"").strip()
    return bytes(bundle.key), (chain + b"\n" if chain else b"")


def _issue_from_local_ca(ca_dir: Path | None) -> None:
    """Make moto's ACM issue requested certificates from the local CA, at once."""
    from moto.acm.models import CertBundle

    from provisioner import authority
    from provisioner.localcloud import ca

    original = CertBundle.generate_cert.__func__  # type: ignore[attr-defined]

    def generate_cert(
        cls: Any,
        domain_name: str,
        account_id: str,
        region: str,
        sans: list[str] | None = None,
        cert_authority_arn: str | None = None,
    ) -> Any:
        if cert_authority_arn is not None:  # a private CA's certificate: moto's own
            return original(cls, domain_name, account_id, region, sans, cert_authority_arn)
        root = authority.ensure_ca(ca_dir or ca.ca_dir())
        issued = authority.issue(root, list(dict.fromkeys([domain_name, *(sans or [])])))
        return cls(
            certificate=issued.cert_pem,
            private_key=issued.key_pem,
            chain=root.cert_pem,
            cert_type="AMAZON_ISSUED",
            cert_status="ISSUED",
            account_id=account_id,
            region=region,
        )

    CertBundle.generate_cert = classmethod(generate_cert)  # type: ignore[method-assign,assignment]


def atomic_conditional_writes() -> None:
    """PutObject's condition check and write in one step, as on S3 (idempotent)."""
    from moto.s3.responses import S3Response

    put_object = S3Response.put_object
    if getattr(put_object, "atomic", False):
        return
    put_lock = threading.Lock()

    def atomic_put_object(self: Any) -> Any:
        with put_lock:
            return put_object(self)

    atomic_put_object.atomic = True  # type: ignore[attr-defined]
    S3Response.put_object = atomic_put_object  # type: ignore[method-assign]


def apply(ca_dir: Path | None = None) -> None:
    """Patch moto's target groups, ACM and S3 writes (idempotent)."""
    global _applied
    if _applied:
        return
    _issue_from_local_ca(ca_dir)
    atomic_conditional_writes()
    percentiles()
    weighted_values()
    fast_metric_reads()
    imitate_aws()
    quotas()
    fast_dispatch()
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
        note_change("TerminateInstances", None)  # an EC2 call, not an ELBv2 one

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

    from moto.elbv2.responses import ELBV2Response

    call_action = ELBV2Response.call_action

    def signalling_call_action(self: Any) -> Any:
        try:
            return call_action(self)
        finally:
            action = self._get_action()
            if not action.startswith("Describe"):
                note_change(action, self._get_param("TargetGroupArn"))

    describe_target_health = ELBV2Response.describe_target_health

    def fed_describe_target_health(self: Any) -> Any:
        feeder = _feeder
        if feeder is not None:
            feeder()
        return describe_target_health(self)

    ELBV2Response.call_action = signalling_call_action  # type: ignore[method-assign]
    ELBV2Response.describe_target_health = fed_describe_target_health  # type: ignore[method-assign]
    FakeTargetGroup.register = register  # type: ignore[method-assign]
    FakeTargetGroup.deregister = deregister  # type: ignore[method-assign]
    FakeTargetGroup.deregister_terminated_instances = deregister_terminated_instances  # type: ignore[method-assign]
    FakeTargetGroup.health_for = health_for  # type: ignore[method-assign]
    _applied = True


def fast_dispatch() -> None:
    """moto's service directories, listed once (moto.backends.list_of_moto_modules)."""
    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]


def quotas(limits: Quotas = AWS_QUOTAS) -> None:
    """moto's ELBv2 refuses what AWS's default quotas refuse (idempotent)."""
    from moto.elbv2.exceptions import ELBClientError
    from moto.elbv2.models import ELBv2Backend

    if getattr(ELBv2Backend.create_rule, "quotas", False):
        return
    create_rule, modify_rule = ELBv2Backend.create_rule, ELBv2Backend.modify_rule
    register = ELBv2Backend.register_targets
    create_lb = ELBv2Backend.create_load_balancer

    def refuse(code: str, message: str) -> None:
        raise ELBClientError(code, message)

    def check_rule(backend: Any, listener: Any, conditions: Any, actions: Any, skip: str) -> None:
        values = sum(len(_condition_values(c)) for c in conditions or [])
        if values > limits.values:
            refuse("ValidationError", f"A rule can only have '{limits.values}' condition values")
        groups = _lb_target_groups(backend, listener.load_balancer_arn, skip)
        for action in actions or []:
            groups.update(backend._get_target_group_arns_from(action_data=action))
        if len(groups) > limits.target_groups:
            refuse(
                "TooManyUniqueTargetGroupsPerLoadBalancer",
                "You've reached the limit on the number of unique target groups per load "
                f"balancer across all listeners ({limits.target_groups})",
            )

    def checked_create_rule(
        self: Any, listener_arn: str, conditions: Any, priority: int, actions: Any, tags: Any = None
    ) -> Any:
        for listener in self.describe_listeners(None, [listener_arn]):
            # one quota for the load balancer's listeners together
            balancer = self.load_balancers.get(listener.load_balancer_arn)
            siblings = balancer.listeners.values() if balancer else [listener]
            if sum(len(ln._non_default_rules) for ln in siblings) >= limits.rules:
                refuse(
                    "TooManyRules",
                    "You've reached the limit on the number of rules per load balancer",
                )
            check_rule(self, listener, conditions, actions, "")
        return create_rule(self, listener_arn, conditions, priority, actions, tags)

    def checked_modify_rule(self: Any, rule_arn: str, conditions: Any, actions: Any) -> Any:
        for rule in self.describe_rules(listener_arn=None, rule_arns=[rule_arn]):
            listener = self.describe_listeners(None, [rule.listener_arn])[0]
            check_rule(self, listener, conditions, actions, rule_arn)
        return modify_rule(self, rule_arn, conditions, actions)

    def checked_add_certificates(self: Any, arn: str, certificates: Any) -> Any:
        listener = self.describe_listeners(load_balancer_arn=None, listener_arns=[arn])[0]
        held = set(listener.certificates) - {listener.certificate}
        wanted = {c["CertificateArn"] for c in certificates} - {listener.certificate}
        if len(held | wanted) > limits.certificates:
            refuse(
                "TooManyCertificates",
                "You've reached the limit on the number of certificates per load balancer",
            )
        listener.certificates.extend(sorted(wanted - held))
        return listener.certificates

    def checked_register(self: Any, target_group_arn: str, instances: Any) -> Any:
        group = self.target_groups.get(target_group_arn)
        if group is not None:
            new = {key(t, group.port) for t in instances}
            new -= set(group.targets) | {f"{k}:{group.port}" for k in group.targets}
            if len(group.targets) + len(new) > limits.targets:
                refuse("TooManyTargets", "You've reached the limit on the number of targets")
            for lb_arn in dict.fromkeys(group.load_balancer_arns):
                groups = _lb_target_groups(self, lb_arn, "")
                if target_group_arn not in groups:
                    continue  # no longer forwarded to from there
                held = sum(
                    len(self.target_groups[g].targets) for g in groups if g in self.target_groups
                )
                if held + len(new) > limits.lb_targets:
                    refuse("TooManyTargets", "You've reached the limit on the number of targets")
        return register(self, target_group_arn, instances)

    def checked_create_lb(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        # the quota is of Application Load Balancers: network ones have their own
        kind = kwargs.get("loadbalancer_type") or "application"
        held = [lb for lb in self.load_balancers.values() if lb.type == "application"]
        if kind == "application" and len(held) >= limits.load_balancers:
            refuse(
                "TooManyLoadBalancers",
                "You've reached the limit on the number of load balancers for your AWS account",
            )
        return create_lb(self, name, *args, **kwargs)

    checked_create_rule.quotas = True  # type: ignore[attr-defined]
    ELBv2Backend.create_rule = checked_create_rule  # type: ignore[method-assign]
    ELBv2Backend.modify_rule = checked_modify_rule  # type: ignore[method-assign]
    ELBv2Backend.add_listener_certificates = checked_add_certificates  # type: ignore[method-assign]
    ELBv2Backend.register_targets = checked_register  # type: ignore[method-assign]
    ELBv2Backend.create_load_balancer = checked_create_lb  # type: ignore[method-assign]


def _condition_values(condition: dict[str, Any]) -> list[Any]:
    """The values of one rule condition, in whichever form it was given."""
    for config in ("HostHeaderConfig", "PathPatternConfig", "HttpHeaderConfig"):
        if config in condition:
            return list(condition[config].get("Values") or [])
    return list(condition.get("Values") or [])


def _lb_target_groups(backend: Any, lb_arn: str, skip_rule: str) -> set[str]:
    """The target groups a load balancer's rules and default actions forward to (the rule
    `skip_rule` left out: it is being modified)."""
    groups: set[str] = set()
    balancer = backend.load_balancers.get(lb_arn)
    for listener in balancer.listeners.values() if balancer else []:
        for arn, rule in listener.rules.items():
            if arn == skip_rule:
                continue
            for action in rule.actions:
                data = action.data if hasattr(action, "data") else action
                groups.update(backend._get_target_group_arns_from(action_data=data))
    return groups


def percentiles() -> None:
    """`pNN` statistics from the values of a period, as CloudWatch computes them."""
    from moto.cloudwatch.models import Statistics

    from provisioner.plan.autoscale import percentile

    original = Statistics.get_statistics_for_type

    def get_statistics_for_type(self: Any, stat: str) -> Any:
        pct = _percentile_of(stat)
        if pct is None:
            return original(self, stat)
        return percentile(self.metric_single_values_list, pct)

    Statistics.get_statistics_for_type = get_statistics_for_type  # type: ignore[method-assign]


def weighted_values() -> None:
    """PutMetricData's `Values` with `Counts` kept as one datum per value with its `count`,
    where moto appends the value `count` times; each statistic counts a datum `count` times."""
    from moto.cloudwatch.models import CloudWatchBackend, MetricDatum, Statistics

    original = CloudWatchBackend.put_metric_data
    if getattr(original, "weighted", False):
        return

    def put_metric_data(self: Any, namespace: str, metric_data: list[dict[str, Any]]) -> None:
        for i, member in enumerate(metric_data):
            self._validate_parameters_put_metric_data(member, i + 1)
        counted = [m for m in metric_data if m.get("Values") and m.get("Counts")]
        for member in counted:
            for value, count in zip(member["Values"], member["Counts"], strict=False):
                if int(float(count)) < 1:
                    continue
                datum = MetricDatum(
                    namespace,
                    member["MetricName"],
                    float(value),
                    member.get("Dimensions", []),
                    member.get("Timestamp"),
                    member.get("Unit"),
                )
                datum.count = int(float(count))  # type: ignore[attr-defined]
                self.metric_data.append(datum)
        if rest := [m for m in metric_data if not (m.get("Values") and m.get("Counts"))]:
            original(self, namespace, rest)

    put_metric_data.weighted = True  # type: ignore[attr-defined]
    CloudWatchBackend.put_metric_data = put_metric_data  # type: ignore[method-assign]

    def single_values(self: Any) -> list[float]:
        return [
            m.value
            for m in self.metric_data or []
            if isinstance(m, MetricDatum)
            for _ in range(getattr(m, "count", 1))
        ]

    Statistics.metric_single_values_list = property(single_values)  # type: ignore[assignment,method-assign]


def fast_metric_reads() -> None:
    """GetMetricData of MetricStat queries: each query's values read once, grouped by period
    (moto's own, kept for metric math, scans the whole window for each period of each query).
    Dimensions match as a set, namespace included, as on AWS."""
    from moto.cloudwatch.models import CloudWatchBackend

    original = CloudWatchBackend.get_metric_data
    if getattr(original, "fast", False):
        return

    def get_metric_data(
        self: Any,
        queries: list[dict[str, Any]],
        start_time: Any,
        end_time: Any,
        scan_by: str = "TimestampAscending",
    ) -> list[dict[str, Any]]:
        start, end = start_time.replace(microsecond=0), end_time.replace(microsecond=0)
        if start >= end or any("MetricStat" not in q for q in queries):
            return original(self, queries, start_time, end_time, scan_by)  # its errors, its math
        found: dict[tuple[Any, ...], list[Any]] = {}
        for md in self.get_all_metrics():
            if start <= md.timestamp < end:
                dims = frozenset((d.name, d.value) for d in md.dimensions)
                found.setdefault((md.namespace, md.name, dims), []).append(md)
        return [_answer(q, found, start, scan_by) for q in queries if q.get("ReturnData", True)]

    get_metric_data.fast = True  # type: ignore[attr-defined]
    CloudWatchBackend.get_metric_data = get_metric_data  # type: ignore[method-assign]


def _answer(
    query: dict[str, Any], found: dict[tuple[Any, ...], list[Any]], start: Any, scan_by: str
) -> dict[str, Any]:
    from datetime import timedelta

    from moto.cloudwatch.models import Statistics

    stat = query["MetricStat"]
    metric, period, name = stat["Metric"], int(stat["Period"]), stat["Stat"]
    dims = frozenset((d["Name"], d["Value"]) for d in metric.get("Dimensions", []))
    data = found.get((metric["Namespace"], metric["MetricName"], dims), [])
    if stat.get("Unit"):
        data = [md for md in data if md.unit == stat["Unit"]]
    periods: dict[int, list[Any]] = {}
    for md in data:
        periods.setdefault(int((md.timestamp - start).total_seconds()) // period, []).append(md)
    timestamps, values = [], []
    for index in sorted(periods, reverse=scan_by == "TimestampDescending"):
        stats = Statistics([name], start + timedelta(seconds=index * period))
        stats.metric_data = periods[index]
        values.append(stats.get_statistics_for_type(name))
        timestamps.append(stats.timestamp)
    return {
        "id": query["Id"],
        "label": query.get("Label") or f"{metric['MetricName']} {name}",
        "values": values,
        "timestamps": timestamps,
        "status_code": "Complete",
    }


def _percentile_of(stat: str) -> float | None:
    """`p95` -> 95.0, `p99.9` -> 99.9; None for any other statistic."""
    if not stat.startswith("p"):
        return None
    try:
        pct = float(stat[1:])
    except ValueError:
        return None
    return pct if 0 < pct <= 100 else None


def prune_metrics(now: float, kept: float = METRICS_KEPT) -> int:
    """Drop the CloudWatch values older than `kept` seconds (each query scans them all), and
    merge the values older than COMPACT_AFTER (see compact_timings); how many datums went. In
    place: values that the endpoint's threads append meanwhile are kept."""
    from moto.cloudwatch.models import cloudwatch_backends

    dropped = 0
    for account in list(cloudwatch_backends):
        for region in list(cloudwatch_backends[account]):
            data = cloudwatch_backends[account][region].metric_data
            seen = len(data)
            fresh = [m for m in data[:seen] if _epoch(m.timestamp) >= now - kept]
            before = (now - COMPACT_AFTER) // 60 * 60
            since = _compacted.get((account, region), 0.0)
            if before > since:
                fresh = compact_timings(fresh, since, before)
                _compacted[(account, region)] = before
            dropped += seen - len(fresh)
            data[:seen] = fresh  # one step under the GIL: values appended since stay after it
    return dropped


def prune_versions(now: float, kept: float = VERSIONS_KEPT) -> int:
    """Drop the versions of versioned buckets' objects that stopped being current more than
    `kept` seconds ago (see 12 above); how many went. The current version always stays."""
    from moto.s3.models import s3_backends

    dropped = 0
    for account in list(s3_backends):
        for region in list(s3_backends[account]):
            for bucket in list(s3_backends[account][region].buckets.values()):
                if bucket.versioning_status is None:
                    continue  # never versioned: moto replaces and disposes on each write
                for name in list(bucket.keys.keys()):
                    dropped += _expire_old(bucket.keys.getlist(name) or [], now - kept)
    return dropped


def _expire_old(versions: list[Any], cutoff: float) -> int:
    """Remove, in place, the oldest versions of one key (oldest first in moto's list) whose
    successor was written before `cutoff`. In place: a write that appends a version to this
    very list meanwhile is kept. Their buffers are closed, as moto does for what it drops."""
    old = 0
    while old < len(versions) - 1 and _epoch(versions[old + 1].last_modified) < cutoff:
        old += 1
    gone = versions[:old]
    del versions[:old]
    for version in gone:
        if hasattr(version, "dispose"):  # a delete marker holds no buffer
            version.dispose()
    return old


def compact_timings(data: list[Any], since: float, before: float) -> list[Any]:
    """Of the single values (not statistic sets) taken in [since, before), the equal values
    of one metric within a minute are merged into one datum with their summed `count` (see
    weighted_values): each minute's statistics, percentiles included, stay what they were, and
    a busy minute of the router keeps about one datum per distinct millisecond. A merged datum
    takes the place of the first of its kind; the data's datums are not changed (the endpoint
    may be reading them)."""
    from moto.cloudwatch.models import MetricDatum

    groups: dict[tuple[Any, ...], list[Any]] = {}
    out: list[Any] = []
    for m in data:
        at = _epoch(m.timestamp)
        if not (isinstance(m, MetricDatum) and since <= at < before):
            out.append(m)
            continue
        dims = tuple(sorted((d.name, d.value) for d in m.dimensions))
        key = (m.namespace, m.name, dims, m.unit, at // 60, m.value)
        if key not in groups:
            groups[key] = []
            out.append(key)  # its place, filled below
        groups[key].append(m)
    return [_merged(groups[m]) if isinstance(m, tuple) else m for m in out]


def _merged(same: list[Any]) -> Any:
    if len(same) == 1:
        return same[0]
    one = copy.copy(same[0])
    one.count = sum(getattr(m, "count", 1) for m in same)
    return one


def _epoch(stamp: Any) -> float:
    """moto stores naive UTC datetimes (its own utcnow) or aware ones (parsed from requests)."""
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return float(stamp.timestamp())


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


# 8. What moto hides ------------------------------------------------------------------------------
VISIBLE_AFTER = 0.4  # seconds a new instance or security group stays unknown (daemon)
PAGE_SIZE = 5  # items per page of the calls dynoform pages through (daemon)
imitation: dict[str, float] = {"visible_after": 0.0, "page_size": 0, "conflicts": 0}
_born: dict[str, float] = {}  # instance or group id -> when it was made (monotonic)
_imitating = False


def imitate_aws(visible_after: float = VISIBLE_AFTER, page_size: int = PAGE_SIZE) -> None:
    """Turn on (or, with zeros, off) the imitation of EC2's delay and AWS's pages."""
    _install_imitation()
    imitation.update(visible_after=visible_after, page_size=page_size)


def _page(asked: int | None, default: int) -> int:
    """The page size: what the caller asked for, else AWS's default, or the imitation's small
    one (AWS's defaults differ by call; code that pages copes with any)."""
    if asked:
        return asked
    forced = int(imitation["page_size"])
    return forced if forced > 0 else default


def _born_now(ident: str) -> None:
    """Note when ident was made; those long visible are forgotten (the daemon runs for days)."""
    now = time.monotonic()
    for old in [k for k, t in _born.items() if now - t > 60]:
        _born.pop(old, None)
    _born[ident] = now


def _unseen(ids: Any) -> str | None:
    """The first of ids made less than `visible_after` seconds ago, if any."""
    now = time.monotonic()
    for ident in [ids] if isinstance(ids, str) else list(ids or []):
        born = _born.get(str(ident))
        if born is not None and now - born < imitation["visible_after"]:
            return str(ident)
    return None


def _install_imitation() -> None:
    global _imitating
    if _imitating:
        return
    _imitating = True
    _eventual_ec2()
    _small_pages()
    _s3_conflicts()


def _eventual_ec2() -> None:
    from moto.ec2.exceptions import InvalidInstanceIdError, InvalidSecurityGroupNotFoundError
    from moto.ec2.models.instances import InstanceBackend
    from moto.ec2.models.security_groups import SecurityGroupBackend

    run_instances = InstanceBackend.run_instances
    by_ids = InstanceBackend.get_reservations_by_instance_ids
    terminate = InstanceBackend.terminate_instances
    create_group = SecurityGroupBackend.create_security_group
    describe_groups = SecurityGroupBackend.describe_security_groups
    authorize = SecurityGroupBackend.authorize_security_group_ingress

    def hidden_group(ids: Any) -> None:
        if (young := _unseen(ids)) is not None:
            raise InvalidSecurityGroupNotFoundError(young)

    def hidden_instance(ids: Any) -> None:
        if (young := _unseen(ids)) is not None:
            raise InvalidInstanceIdError(young)

    def new_run_instances(self: Any, *args: Any, **kwargs: Any) -> Any:
        hidden_group(kwargs.get("security_group_ids"))
        reservation = run_instances(self, *args, **kwargs)
        for instance in reservation.instances:
            _born_now(instance.id)
        return reservation

    def new_by_ids(self: Any, instance_ids: list[str], filters: Any = None) -> Any:
        hidden_instance(instance_ids)
        return by_ids(self, instance_ids, filters)

    def new_terminate(self: Any, instance_ids: list[str]) -> Any:
        hidden_instance(instance_ids)
        return terminate(self, instance_ids)

    def new_create_group(self: Any, *args: Any, **kwargs: Any) -> Any:
        group = create_group(self, *args, **kwargs)
        _born_now(group.id)
        return group

    def new_describe_groups(self: Any, group_ids: Any = None, *args: Any, **kwargs: Any) -> Any:
        hidden_group(group_ids)
        return describe_groups(self, group_ids, *args, **kwargs)

    def new_authorize(self: Any, group_name_or_id: str, *args: Any, **kwargs: Any) -> Any:
        hidden_group(group_name_or_id)
        return authorize(self, group_name_or_id, *args, **kwargs)

    InstanceBackend.run_instances = new_run_instances  # type: ignore[method-assign]
    InstanceBackend.get_reservations_by_instance_ids = new_by_ids  # type: ignore[method-assign]
    InstanceBackend.terminate_instances = new_terminate  # type: ignore[method-assign]
    SecurityGroupBackend.create_security_group = new_create_group  # type: ignore[method-assign]
    SecurityGroupBackend.describe_security_groups = new_describe_groups  # type: ignore[method-assign]
    SecurityGroupBackend.authorize_security_group_ingress = new_authorize  # type: ignore[method-assign]


def _paged(items: list[Any], key: Any, marker: str | None, size: int) -> tuple[list[Any], Any]:
    """One page of items after the one whose key is marker, and the next marker (or None)."""
    keys = [key(item) for item in items]
    start = keys.index(marker) + 1 if marker in keys else 0
    page = items[start : start + size]
    more = len(items) > start + size
    return page, (key(page[-1]) if more and page else None)


def _small_pages() -> None:
    from moto.core.responses import ActionResult
    from moto.elbv2.responses import ELBV2Response
    from moto.resourcegroupstaggingapi.responses import ResourceGroupsTaggingAPIResponse
    from moto.route53.responses import Route53

    def describe_rules(self: Any) -> Any:
        rules = list(
            self.elbv2_backend.describe_rules(
                self._get_param("ListenerArn"), self._get_param("RuleArns")
            )
        )
        size = _page(self._get_int_param("PageSize"), 50)
        page, marker = _paged(rules, lambda r: r.arn, self._get_param("Marker"), size)
        return ActionResult({"Rules": page, "NextMarker": marker})

    def describe_target_groups(self: Any) -> Any:
        groups = list(
            self.elbv2_backend.describe_target_groups(
                self._get_param("LoadBalancerArn"),
                self._get_param("TargetGroupArns", []),
                self._get_param("Names", []),
            )
        )
        size = _page(self._get_int_param("PageSize"), 400)
        page, marker = _paged(groups, lambda g: g.arn, self._get_param("Marker"), size)
        return ActionResult({"TargetGroups": page, "NextMarker": marker})

    def list_hosted_zones(self: Any) -> Any:
        max_items = _page(self._get_int_param("MaxItems"), 100)
        marker = self._get_param("Marker")
        zones, next_marker = self.backend.list_hosted_zones(marker=marker, max_size=max_items)
        return ActionResult(
            {
                "HostedZones": zones,
                "Marker": marker,
                "IsTruncated": bool(next_marker),
                "NextMarker": next_marker,
                "MaxItems": max_items,
            }
        )

    def get_resources(self: Any) -> Any:
        token, found = self.backend.get_resources(
            pagination_token=self._get_param("PaginationToken"),
            tag_filters=self._get_param("TagFilters", []),
            resources_per_page=_page(self._get_int_param("ResourcesPerPage"), 50),
            tags_per_page=self._get_int_param("TagsPerPage", 100),
            resource_type_filters=self._get_param("ResourceTypeFilters", []),
        )
        return json.dumps({"ResourceTagMappingList": found, "PaginationToken": token})

    ELBV2Response.describe_rules = describe_rules  # type: ignore[method-assign]
    ELBV2Response.describe_target_groups = describe_target_groups  # type: ignore[method-assign]
    Route53.list_hosted_zones = list_hosted_zones  # type: ignore[method-assign]
    ResourceGroupsTaggingAPIResponse.get_resources = get_resources  # type: ignore[method-assign]


def _s3_conflicts() -> None:
    """The next `conflicts` conditional PutObjects answer 409 ConditionalRequestConflict."""
    from moto.s3.responses import S3Response

    put_object = S3Response.put_object

    def conflicting_put_object(self: Any) -> Any:
        conditional = "If-None-Match" in self.headers or "If-Match" in self.headers
        if conditional and imitation["conflicts"] > 0:
            imitation["conflicts"] -= 1
            body = (
                "<?xml version='1.0' encoding='UTF-8'?><Error>"
                "<Code>ConditionalRequestConflict</Code><Message>A conflicting conditional "
                "operation is currently in progress against this resource. Please try again."
                "</Message></Error>"
            )
            return 409, {}, body
        return put_object(self)

    conflicting_put_object.atomic = getattr(put_object, "atomic", False)  # type: ignore[attr-defined]
    S3Response.put_object = conflicting_put_object  # type: ignore[method-assign]
