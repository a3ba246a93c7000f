"""Metrics in CloudWatch, one code path for AWS and the local cloud.

The router's figures are the ALB's own (`AWS/ApplicationELB`, per target group and per minute):
`RequestCount`, `HTTPCode_Target_2XX_Count`..`5XX`, and `TargetResponseTime` with percentiles.
The local cloud's load balancer publishes the same from its request log (localcloud/lb.py), and
motofix teaches moto percentiles.

The dynos' figures are ours: the controller samples them every minute and publishes them to the
platform's namespace `dynoform/<platform>` (so that the controller's IAM policy can allow
PutMetricData to that namespace only), with the dimensions `App` and `Dyno`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from provisioner.plan.autoscale import Window
from provisioner.plan.metrics import PERIOD, Sample, Series, by_minute

NAMESPACE = "AWS/ApplicationELB"
METRIC = "TargetResponseTime"  # seconds, from the request leaving the LB to the response headers
# name -> (metric, statistic) of the router's figures (ALB metrics per target group)
ROUTER: dict[str, tuple[str, str]] = {
    "requests": ("RequestCount", "Sum"),
    "2xx": ("HTTPCode_Target_2XX_Count", "Sum"),
    "3xx": ("HTTPCode_Target_3XX_Count", "Sum"),
    "4xx": ("HTTPCode_Target_4XX_Count", "Sum"),
    "5xx": ("HTTPCode_Target_5XX_Count", "Sum"),
    "p50": (METRIC, "p50"),
    "p95": (METRIC, "p95"),
    "p99": (METRIC, "p99"),
    "samples": (METRIC, "SampleCount"),  # the requests a percentile is taken over
}
PER_MINUTE = ("requests", "2xx", "3xx", "4xx", "5xx", "p50", "p95", "p99")
# name -> (metric, unit, statistic per minute) of a dyno's figures
DYNO: dict[str, tuple[str, str, str]] = {
    "memory": ("MemoryRSS", "Bytes", "Maximum"),
    "limit": ("MemoryLimit", "Bytes", "Maximum"),
    "cpu": ("CPUUtilization", "Percent", "Average"),
    "restarts": ("Restarts", "Count", "Maximum"),
}
QUERIES_MAX = 500  # per GetMetricData call
DATUMS_MAX = 1000  # per PutMetricData call


def dyno_namespace(platform: str) -> str:
    return f"dynoform/{platform}"


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


def dyno_dimensions(app: str, dyno: str) -> list[dict[str, str]]:
    return [{"Name": "App", "Value": app}, {"Name": "Dyno", "Value": dyno}]


def _query(
    qid: str, namespace: str, metric: str, dims: list[dict[str, str]], stat: str, period: int
) -> dict[str, Any]:
    spec = {"Namespace": namespace, "MetricName": metric, "Dimensions": dims}
    return {"Id": qid, "MetricStat": {"Metric": spec, "Period": period, "Stat": stat}}


def fetch(
    cloudwatch: Any, queries: Sequence[dict[str, Any]], start: float, end: float
) -> dict[str, dict[float, float | None]]:
    """GetMetricData over [start, end) for every query, pages and batches followed: query id ->
    minute start -> value."""
    out: dict[str, dict[float, float | None]] = {q["Id"]: {} for q in queries}
    for i in range(0, len(queries), QUERIES_MAX):
        kwargs: dict[str, Any] = {
            "MetricDataQueries": list(queries[i : i + QUERIES_MAX]),
            "StartTime": datetime.fromtimestamp(start, UTC),
            "EndTime": datetime.fromtimestamp(end, UTC),
        }
        while True:
            answer = cloudwatch.get_metric_data(**kwargs)
            for result in answer.get("MetricDataResults", []):
                stamps = result.get("Timestamps", [])
                out[result["Id"]].update(by_minute(stamps, result.get("Values", [])))
            if not answer.get("NextToken"):
                break
            kwargs["NextToken"] = answer["NextToken"]
    return out


def router_series(
    cloudwatch: Any,
    lb_arn: str,
    tg_arn: str,
    start: float,
    end: float,
    names: Iterable[str] = PER_MINUTE,
    period: int = PERIOD,
) -> dict[str, Series]:
    """The router's figures `names` (keys of ROUTER) per `period` over [start, end); with the
    period the whole window, one value each (a percentile of the window, not of its minutes)."""
    dims = dimensions(lb_arn, tg_arn)
    queries = [
        _query(f"r_{name}", NAMESPACE, ROUTER[name][0], dims, ROUTER[name][1], period)
        for name in names
    ]
    return {
        q["Id"][2:]: series
        for q, series in zip(queries, fetch(cloudwatch, queries, start, end).values(), strict=True)
    }


def router_window(
    cloudwatch: Any, lb_arn: str, tg_arn: str, start: float, end: float
) -> dict[str, float | None]:
    """The percentiles of every request of [start, end) (whole minutes), in seconds."""
    period = max(PERIOD, int(end - start) // PERIOD * PERIOD)
    series = router_series(cloudwatch, lb_arn, tg_arn, start, end, ("p50", "p95", "p99"), period)
    return {name: next(iter(values.values()), None) for name, values in series.items()}


def response_times(
    cloudwatch: Any, lb_arn: str, tg_arn: str, now: float, minutes: int = 2
) -> list[Window]:
    """What autoscaling reads: the p95 and the request count of each of the last `minutes`
    minutes (the current one included, partial), oldest first; minutes without requests are
    left out. Two metrics per call (CloudWatch bills GetMetricData per metric)."""
    end = (int(now) // PERIOD + 1) * PERIOD  # whole minutes, as CloudWatch prefers them
    series = router_series(
        cloudwatch, lb_arn, tg_arn, end - minutes * PERIOD, end, ("p95", "samples")
    )
    p95, counts = series["p95"], series["samples"]
    return [
        Window(at, _ms(p95.get(at)), int(counts.get(at) or 0))
        for at in sorted(set(p95) | set(counts))
    ]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


# the dynos -----------------------------------------------------------------------------------
def dyno_datums(
    samples: Iterable[Sample], cpu: Mapping[str, float | None], at: float
) -> list[dict[str, Any]]:
    """PutMetricData datums of the samples taken at `at`; `cpu` is unit -> percent (None: no
    earlier sample to take a rate from)."""
    stamp = datetime.fromtimestamp(at, UTC)
    datums = []
    for s in samples:
        values = {
            "memory": s.memory_bytes,
            "limit": s.memory_limit_bytes,
            "cpu": cpu.get(s.unit),
            "restarts": s.restarts,
        }
        for name, value in values.items():
            if value is None:
                continue
            metric, unit, _ = DYNO[name]
            datums.append(
                {
                    "MetricName": metric,
                    "Dimensions": dyno_dimensions(s.app, s.dyno),
                    "Timestamp": stamp,
                    "Value": float(value),
                    "Unit": unit,
                }
            )
    return datums


def put_dyno_metrics(cloudwatch: Any, platform: str, datums: Sequence[dict[str, Any]]) -> None:
    for i in range(0, len(datums), DATUMS_MAX):
        cloudwatch.put_metric_data(
            Namespace=dyno_namespace(platform), MetricData=list(datums[i : i + DATUMS_MAX])
        )


def dyno_names(cloudwatch: Any, platform: str, app: str) -> list[str]:
    """The app's dynos that have memory figures (CloudWatch lists metrics of the last two
    weeks: those without data in a window are left out by the reader)."""
    names = set()
    for page in cloudwatch.get_paginator("list_metrics").paginate(
        Namespace=dyno_namespace(platform),
        MetricName=DYNO["memory"][0],
        Dimensions=[{"Name": "App", "Value": app}],
    ):
        for metric in page.get("Metrics", []):
            dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            if dims.get("App") == app and "Dyno" in dims:
                names.add(dims["Dyno"])
    return sorted(names)


def dyno_series(
    cloudwatch: Any, platform: str, app: str, dynos: Sequence[str], start: float, end: float
) -> dict[str, dict[str, Series]]:
    """Each dyno's figures (keys of DYNO) per minute over [start, end)."""
    queries = [
        _query(
            f"d{i}_{name}",
            dyno_namespace(platform),
            metric,
            dyno_dimensions(app, dyno),
            stat,
            PERIOD,
        )
        for i, dyno in enumerate(dynos)
        for name, (metric, _, stat) in DYNO.items()
    ]
    fetched = fetch(cloudwatch, queries, start, end)
    out: dict[str, dict[str, Series]] = {dyno: {} for dyno in dynos}
    for qid, series in fetched.items():
        index, _, name = qid[1:].partition("_")
        out[dynos[int(index)]][name] = series
    return out
