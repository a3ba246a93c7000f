"""The router's response times from CloudWatch: the ALB's `AWS/ApplicationELB`
`TargetResponseTime` per target group, per minute (p95 and the number of requests).

The same calls serve AWS and the local cloud: its load balancer publishes this metric from its
own request log to moto's CloudWatch (localcloud/lb.py), and motofix teaches moto percentiles.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from provisioner.plan.autoscale import Window

NAMESPACE = "AWS/ApplicationELB"
METRIC = "TargetResponseTime"  # seconds, from the request leaving the LB to the response headers
PERIOD = 60  # the ALB publishes per minute


def lb_dimension(lb_arn: str) -> str:
    """`arn:...:loadbalancer/app/NAME/ID` -> `app/NAME/ID` (the LoadBalancer dimension)."""
    return lb_arn.partition(":loadbalancer/")[2]


def tg_dimension(tg_arn: str) -> str:
    """`arn:...:targetgroup/NAME/ID` -> `targetgroup/NAME/ID` (the TargetGroup dimension)."""
    return tg_arn.rpartition(":")[2]


def dimensions(lb_arn: str, tg_arn: str) -> list[dict[str, str]]:
    return [
        {"Name": "TargetGroup", "Value": tg_dimension(tg_arn)},
        {"Name": "LoadBalancer", "Value": lb_dimension(lb_arn)},
    ]


def _query(qid: str, stat: str, dims: list[dict[str, str]]) -> dict[str, Any]:
    metric = {"Namespace": NAMESPACE, "MetricName": METRIC, "Dimensions": dims}
    return {"Id": qid, "MetricStat": {"Metric": metric, "Period": PERIOD, "Stat": stat}}


def response_times(
    cloudwatch: Any, lb_arn: str, tg_arn: str, now: float, minutes: int = 2
) -> list[Window]:
    """The p95 and the request count of each of the last `minutes` minutes (the current one
    included, partial), oldest first; minutes without requests are left out. Two metrics per
    call (CloudWatch bills GetMetricData per metric)."""
    end = (int(now) // PERIOD + 1) * PERIOD  # whole minutes, as CloudWatch prefers them
    dims = dimensions(lb_arn, tg_arn)
    answer = cloudwatch.get_metric_data(
        MetricDataQueries=[_query("p95", "p95", dims), _query("n", "SampleCount", dims)],
        StartTime=datetime.fromtimestamp(end - minutes * PERIOD, UTC),
        EndTime=datetime.fromtimestamp(end, UTC),
    )
    series = {r["Id"]: _by_minute(r) for r in answer.get("MetricDataResults", [])}
    p95, counts = series.get("p95", {}), series.get("n", {})
    return [
        Window(at, _ms(p95.get(at)), int(counts.get(at) or 0))
        for at in sorted(set(p95) | set(counts))
    ]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def _by_minute(result: dict[str, Any]) -> dict[float, float | None]:
    stamps: Iterable[datetime] = result.get("Timestamps", [])
    return {
        float(int(t.timestamp()) // PERIOD * PERIOD): v
        for t, v in zip(stamps, result.get("Values", []), strict=False)
    }
