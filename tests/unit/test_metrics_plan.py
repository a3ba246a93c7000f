"""Metrics, the pure parts: sampling the dynos of a host, the datums the controller publishes,
and CloudWatch's answers turned into `dynoform metrics --json` (a golden file)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from provisioner.aws import metrics as cw
from provisioner.errors import ValidationError
from provisioner.ops.metrics import Sampler
from provisioner.plan import metrics as plan

GOLDEN = Path(__file__).parent / "golden" / "metrics"
LB_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/dynoform-p/50dc6c495c0c9188"
TG_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/dynoform-p-shop/73e2d6bc24d8a067"
T0 = 1796065440.0  # 2026-11-30T19:04:00Z, a whole minute

# `systemctl show` on a cgroup v2 host (AWS): systemd has every figure.
ON_V2 = """\
Id=dyno-shop.v3.web.1.service
ActiveState=active
MemoryCurrent=73400320
MemoryMax=536870912
CPUUsageNSec=4200000000
NRestarts=2

Id=dyno-shop.v3-1.worker.1.service
ActiveState=active
MemoryCurrent=1048576
MemoryMax=infinity
CPUUsageNSec=10
NRestarts=0

Id=dyno-shop.v3.run.4.service
ActiveState=active
MemoryCurrent=5
MemoryMax=536870912
CPUUsageNSec=1
NRestarts=0

Id=dyno-shop.v2.web.1.service
ActiveState=inactive
MemoryCurrent=[not set]
MemoryMax=536870912
CPUUsageNSec=[not set]
NRestarts=0

#procs
"""

# The local cloud's containers (cgroup v1, no memory or CPU controller): from the processes.
ON_V1 = """\
Id=dyno-shop.v3.web.1.service
ActiveState=active
MemoryCurrent=[not set]
MemoryMax=536870912
CPUUsageNSec=[not set]
NRestarts=0

#procs
dyno-shop.v3.web.1.service 31457280 2500000000
dyno-shop.v2.web.1.service garbage 1
"""


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, f"{name} differs from its golden file"


def test_sample_argv() -> None:
    assert plan.sample_argv("shop") == [
        "python3",
        "-c",
        plan.SAMPLE_SCRIPT,
        "Id,ActiveState,MemoryCurrent,MemoryMax,CPUUsageNSec,NRestarts",
        "dyno-shop.*.service",
    ]
    assert plan.sample_argv()[-1] == "dyno-*.service"
    assert f'print("{plan.PROCS_MARK}")' in plan.SAMPLE_SCRIPT
    with pytest.raises(ValidationError):
        plan.sample_argv("Shop;rm")


def test_parse_sample_from_systemd() -> None:
    """Running formation dynos only: one-offs (a new metric per run) and stopped units left out."""
    assert plan.parse_sample(ON_V2) == [
        plan.Sample("shop", "web.1", "dyno-shop.v3.web.1.service", 73400320, 536870912, 4200000000, 2),
        plan.Sample("shop", "worker.1", "dyno-shop.v3-1.worker.1.service", 1048576, None, 10, 0),
    ]  # fmt: skip


def test_parse_sample_from_the_processes_where_systemd_has_no_figure() -> None:
    assert plan.parse_sample(ON_V1) == [
        plan.Sample("shop", "web.1", "dyno-shop.v3.web.1.service", 31457280, 536870912, 2500000000, 0),
    ]  # fmt: skip
    assert plan.parse_sample("") == []


def test_cpu_percent_needs_an_earlier_sample_of_the_same_run() -> None:
    assert plan.cpu_percent((100.0, 1_000_000_000), 160.0, 31_000_000_000) == 50.0
    assert plan.cpu_percent((100.0, 0), 160.0, 120_000_000_000) == 200.0  # two cores
    assert plan.cpu_percent(None, 160.0, 5) is None
    assert plan.cpu_percent((100.0, 10), 160.0, 5) is None  # restarted: the counter went back
    assert plan.cpu_percent((100.0, 10), 100.0, 20) is None
    assert plan.cpu_percent((100.0, 10), 160.0, None) is None


def test_the_sampler_publishes_cpu_from_its_second_round() -> None:
    sampler = Sampler()
    web = plan.parse_sample(ON_V2)[0]
    first = sampler.datums([(T0, [web])])
    assert [d["MetricName"] for d in first] == ["MemoryRSS", "MemoryLimit", "Restarts"]
    later = plan.Sample(**{**web.__dict__, "cpu_nsec": web.cpu_nsec + 30_000_000_000})
    second = sampler.datums([(T0 + 60, [later])])
    assert second[2] == {
        "MetricName": "CPUUtilization",
        "Dimensions": [{"Name": "App", "Value": "shop"}, {"Name": "Dyno", "Value": "web.1"}],
        "Timestamp": datetime(2026, 11, 30, 19, 5, tzinfo=UTC),
        "Value": 50.0,
        "Unit": "Percent",
    }
    assert second[0]["Value"] == 73400320.0 and second[0]["Unit"] == "Bytes"


def test_parse_since() -> None:
    assert [plan.parse_since(t) for t in ("90s", "30m", "1h", "24H", "2d", "600")] == [
        90,
        1800,
        3600,
        86400,
        172800,
        600,
    ]
    for bad in ("", "h", "0m", "1.5h", "-1h", "1w"):
        with pytest.raises(ValidationError, match="a duration such as"):
            plan.parse_since(bad)


class FakeCloudWatch:
    """GetMetricData as boto3 answers it, from canned values per (metric, stat, period, dyno
    dimension or ""), over two pages; records the queries asked."""

    def __init__(self, values: dict[tuple[str, str, int, str], list[tuple[float, float]]]) -> None:
        self.values = values
        self.asked: list[dict[str, Any]] = []

    def get_metric_data(self, **kwargs: Any) -> dict[str, Any]:
        self.asked.append(kwargs)
        results = []
        for q in kwargs["MetricDataQueries"]:
            stat = q["MetricStat"]
            dims = {d["Name"]: d["Value"] for d in stat["Metric"]["Dimensions"]}
            key = (stat["Metric"]["MetricName"], stat["Stat"], stat["Period"], dims.get("Dyno", ""))
            points = self.values.get(key, [])
            page = points[:1] if "NextToken" not in kwargs else points[1:]
            results.append(
                {
                    "Id": q["Id"],
                    "Timestamps": [datetime.fromtimestamp(t, UTC) for t, _ in page],
                    "Values": [v for _, v in page],
                }
            )
        return {
            "MetricDataResults": results,
            **({} if "NextToken" in kwargs else {"NextToken": "2"}),
        }


def test_cloudwatch_answers_become_the_json() -> None:
    """Three minutes: requests in the first and the third, one dyno sampled in the last two."""
    window = 180
    fake = FakeCloudWatch(
        {
            ("RequestCount", "Sum", 60, ""): [(T0, 10.0), (T0 + 120, 4.0)],
            ("HTTPCode_Target_2XX_Count", "Sum", 60, ""): [(T0, 9.0), (T0 + 120, 3.0)],
            ("HTTPCode_Target_5XX_Count", "Sum", 60, ""): [(T0, 1.0), (T0 + 120, 1.0)],
            ("TargetResponseTime", "p50", 60, ""): [(T0, 0.0101), (T0 + 120, 0.02)],
            ("TargetResponseTime", "p95", 60, ""): [(T0, 0.3), (T0 + 120, 0.05)],
            ("TargetResponseTime", "p99", 60, ""): [(T0, 0.31), (T0 + 120, 0.06)],
            ("TargetResponseTime", "p50", window, ""): [(T0, 0.012)],
            ("TargetResponseTime", "p95", window, ""): [(T0, 0.29)],
            ("TargetResponseTime", "p99", window, ""): [(T0, 0.31)],
            ("MemoryRSS", "Maximum", 60, "web.1"): [(T0 + 60, 73400320.0), (T0 + 120, 75497472.0)],
            ("MemoryLimit", "Maximum", 60, "web.1"): [
                (T0 + 60, 536870912.0),
                (T0 + 120, 536870912.0),
            ],
            ("CPUUtilization", "Average", 60, "web.1"): [(T0 + 120, 12.345)],
            ("Restarts", "Maximum", 60, "web.1"): [(T0 + 60, 1.0), (T0 + 120, 2.0)],
        }
    )
    start, end = T0, T0 + window
    router = cw.router_series(fake, LB_ARN, TG_ARN, start, end)
    percentiles = cw.router_window(fake, LB_ARN, TG_ARN, start, end)
    dynos = cw.dyno_series(fake, "p", "shop", ["web.1", "web.2"], start, end)
    result = plan.app_metrics("shop", window, start, end, router, percentiles, dynos)
    check_golden("app-metrics.json", json.dumps(result.to_json(), indent=2) + "\n")
    data = result.to_json()
    assert data["router"]["requests"] == 14 and data["router"]["errors_5xx"] == 2
    assert data["router"]["p95_ms"] == 290.0
    assert [d["name"] for d in data["dynos"]] == ["web.1"]  # web.2: nothing in the window
    first = fake.asked[0]
    assert first["StartTime"] == datetime(2026, 11, 30, 19, 4, tzinfo=UTC)
    dims = first["MetricDataQueries"][0]["MetricStat"]["Metric"]["Dimensions"]
    assert dims == cw.dimensions(LB_ARN, TG_ARN)
    dyno_query = fake.asked[-2]["MetricDataQueries"][0]["MetricStat"]["Metric"]
    assert dyno_query["Namespace"] == "dynoform/p"
