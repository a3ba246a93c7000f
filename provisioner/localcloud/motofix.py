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
   brings HAProxy in line at once instead of polling ELBv2 several times a second.
6. Conditional writes: S3 checks If-Match / If-None-Match and writes in one step; moto checks,
   then writes, and its server answers on many threads, so two writers could both pass the
   check (two releases numbered alike, two holders of a lease, a cron minute claimed twice).
   PutObject runs under a lock (`atomic_conditional_writes`).
7. Percentiles: moto's CloudWatch keeps every value put with PutMetricData but answers `p95`
   (a GetMetricData Stat, as autoscaling asks) with nothing. CloudWatch computes percentiles
   from the values it was given; so do we (nearest rank, over the values of each period).
   moto also keeps every value forever: those older than METRICS_KEPT are dropped, and the
   response times older than COMPACT_AFTER are thinned to one in KEEP_EVERY.
8. Metric reads: moto's GetMetricData scans every value of the window once per period and
   query, so a day of one-minute points took minutes; it reads each query's own values once
   and groups them by period (`fast_metric_reads`), with the same answers.

Applied in the daemon's process only (moto serves from there); tests with `mock_aws` keep
moto's own behaviour, but for 6 to 8 (tests/aws/conftest.py applies them too).
"""

from __future__ import annotations

import csv
import io
import threading
from datetime import UTC
from pathlib import Path
from typing import Any

_health: dict[tuple[str, str, int], str] = {}
_lock = threading.Lock()
# Set by every ELBv2 call that changes something (targets, rules, listeners, target groups):
# the daemon syncs HAProxy at once instead of polling ELBv2 often.
elb_changed = threading.Event()
_applied = False
METRICS_KEPT = 25 * 3600.0  # seconds of CloudWatch values kept in moto (AWS: 15 days per minute)
COMPACT_AFTER = 3600.0  # response times older than this are thinned (compact_timings)
KEEP_EVERY = 10
_compacted: dict[tuple[str, str], float] = {}  # (account, region) -> thinned up to that minute

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
    fast_metric_reads()
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
        elb_changed.set()  # an EC2 call (terminate_instances), not an ELBv2 one

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
            if not self._get_action().startswith("Describe"):
                elb_changed.set()

    ELBV2Response.call_action = signalling_call_action  # type: ignore[method-assign]
    FakeTargetGroup.register = register  # type: ignore[method-assign]
    FakeTargetGroup.deregister = deregister  # type: ignore[method-assign]
    FakeTargetGroup.deregister_terminated_instances = deregister_terminated_instances  # type: ignore[method-assign]
    FakeTargetGroup.health_for = health_for  # type: ignore[method-assign]
    _applied = True


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
    thin the response times older than COMPACT_AFTER (see compact_timings)."""
    from moto.cloudwatch.models import cloudwatch_backends

    dropped = 0
    for account in list(cloudwatch_backends):
        for region in list(cloudwatch_backends[account]):
            backend = cloudwatch_backends[account][region]
            fresh = [m for m in backend.metric_data if _epoch(m.timestamp) >= now - kept]
            before = (now - COMPACT_AFTER) // 60 * 60
            since = _compacted.get((account, region), 0.0)
            if before > since:
                fresh = compact_timings(fresh, since, before)
                _compacted[(account, region)] = before
            dropped += len(backend.metric_data) - len(fresh)
            backend.metric_data = fresh
    return dropped


def compact_timings(data: list[Any], since: float, before: float) -> list[Any]:
    """moto keeps one value per request of a response-time metric (values with counts are
    spread out): a day of a busy app would be millions. Of the values of unit Seconds taken in
    [since, before), each minute of each metric keeps every KEEP_EVERY-th by rank (at least
    one), so its percentiles stay within a few ranks and the minutes keep their weight in a
    longer period's; their sums and sample counts (read for the last minutes only) do not
    survive. Other values are kept as they are."""
    groups: dict[tuple[Any, ...], list[Any]] = {}
    out = []
    for m in data:
        at = _epoch(m.timestamp)
        if m.unit == "Seconds" and since <= at < before and hasattr(m, "value"):
            dims = tuple(sorted((d.name, d.value) for d in m.dimensions))
            groups.setdefault((m.namespace, m.name, dims, at // 60), []).append(m)
        else:
            out.append(m)
    for values in groups.values():
        ranked = sorted(values, key=lambda m: m.value)
        out += ranked[KEEP_EVERY - 1 :: KEEP_EVERY] or ranked[-1:]
    return out


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
