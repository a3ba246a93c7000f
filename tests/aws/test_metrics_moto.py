"""`dynoform metrics` against moto: what the ALB (or the local router) and the controller's
metrics duty publish to CloudWatch is read back through app_metrics and the CLI."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from cli_support import platform_cli

from provisioner.aws import metrics
from provisioner.context import Context
from provisioner.ops import metrics as ops
from provisioner.plan import metrics as plan
from provisioner.targets import get_target

LB_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/dynoform-p/50dc6c495c0c9188"
TG_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/dynoform-p-shop/73e2d6bc24d8a067"


def _router_datums(dims: list[dict[str, str]], at: float) -> list[dict[str, object]]:
    stamp = datetime.fromtimestamp(at, UTC)
    counts = {
        "RequestCount": 20.0,
        "HTTPCode_Target_2XX_Count": 18.0,
        "HTTPCode_Target_4XX_Count": 1.0,
        "HTTPCode_Target_5XX_Count": 1.0,
    }
    return [
        {"MetricName": name, "Dimensions": dims, "Timestamp": stamp, "Value": n, "Unit": "Count"}
        for name, n in counts.items()
    ] + [
        {
            "MetricName": metrics.METRIC,
            "Dimensions": dims,
            "Timestamp": stamp,
            "Values": [0.01, 0.3],
            "Counts": [18.0, 2.0],
            "Unit": "Seconds",
        }
    ]


def _publish_router_minutes(ctx: Context, app: str, minutes: tuple[int, ...]) -> None:
    """The load balancer's figures of the app for each minute: 20 requests each."""
    tg_arn = ctx.router().ensure_target_group(app)
    dims = metrics.dimensions(ctx.platform().lb_arn, tg_arn)
    for at in minutes:
        ctx.aws.client("cloudwatch").put_metric_data(
            Namespace=metrics.NAMESPACE, MetricData=_router_datums(dims, at + 1)
        )


def test_published_points_are_read_back(tmp_path, monkeypatch, capsys):
    with platform_cli(tmp_path, monkeypatch, capsys) as call:
        assert call("apps:create", "shop")[0] == 0
        ctx = Context(get_target("t1"))
        now = time.time()
        minute = int(now) // 60 * 60
        _publish_router_minutes(ctx, "shop", (minute - 120, minute))  # 20 requests each
        # The metrics duty's two rounds, a minute apart: memory both times, CPU the second.
        sampler = ops.Sampler()
        web = plan.Sample("shop", "web.1", "dyno-shop.v1.web.1.service", 50 * 2**20, 2**29, 0, 1)
        other = plan.Sample("shop-two", "web.1", "dyno-shop-two.v1.web.1.service", 1, 2, 0, 0)
        busy = plan.Sample(**{**web.__dict__, "memory_bytes": 60 * 2**20, "cpu_nsec": 15 * 10**9})
        for at, samples in ((minute - 59.0, [web, other]), (minute + 1.0, [busy])):
            datums = sampler.datums([(at, samples)])
            metrics.put_dyno_metrics(ctx.aws.client("cloudwatch"), ctx.platform().name, datums)

        result = ops.app_metrics(ctx, "shop", 3600, now)

        assert result.router == plan.RouterSummary(
            40, {"2xx": 36, "3xx": 0, "4xx": 2, "5xx": 2}, 2, 10.0, 300.0, 300.0
        )  # nearest rank: the 40 requests' p95 is the 38th, 0.3 s
        assert result.dynos == [plan.DynoSummary("web.1", 60.0, 512.0, 25.0, 1)]  # not shop-two's
        assert len(result.points) == 60
        last, earlier = result.points[-1], result.points[-3]
        assert (last.requests, last.p95_ms, earlier.requests) == (20, 300.0, 20)
        assert result.points[-2].requests == 0 and result.points[-2].p95_ms is None
        assert last.dynos == {"web.1": plan.DynoPoint(60.0, 25.0)}
        assert result.points[-2].dynos == {"web.1": plan.DynoPoint(50.0, None)}

        code, out, err = call("metrics", "-a", "shop", "--since", "10m", "--json")
        assert code == 0, err
        shown = json.loads(out)
        assert (shown["since_s"], len(shown["points"])) == (600, 10)
        assert shown["router"]["requests"] == 40 and shown["router"]["p95_ms"] == 300.0
        assert shown["dynos"][0]["memory_mb"] == 60.0
        code, out, err = call("metrics", "-a", "shop")
        assert code == 0, err
        assert "router: 40 requests  2xx: 36  3xx: 0  4xx: 2  5xx: 2" in out
        assert "p50 10 ms  p95 300 ms  p99 300 ms" in out
        assert "web.1" in out
        code, _, err = call("metrics", "-a", "shop", "--since", "16d")
        assert (code, err) == (
            1,
            "error: --since 1382400s: from 1m to 15d (CloudWatch keeps 15 days)\n",
        )


def test_an_app_never_requested_has_empty_figures(tmp_path, monkeypatch, capsys):
    with platform_cli(tmp_path, monkeypatch, capsys) as call:
        assert call("apps:create", "calm")[0] == 0
        result = ops.app_metrics(Context(get_target("t1")), "calm", 120)
        assert result.router == plan.RouterSummary(
            0, {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0}, 0, None, None, None
        )
        assert (result.dynos, len(result.points)) == ([], 2)
        code, _, err = call("metrics", "-a", "nope")
        assert code == 1 and "nope" in err


def test_the_local_cloud_keeps_a_day_of_minutes(tmp_path, monkeypatch, capsys):
    """What the local cloud's daemon prunes once a minute (motofix.prune_metrics) leaves
    the points of 24 hours ago readable by `metrics --since 24h`, and drops older ones."""
    from provisioner.localcloud import motofix

    with platform_cli(tmp_path, monkeypatch, capsys) as call:
        assert call("apps:create", "shop")[0] == 0
        ctx = Context(get_target("t1"))
        now = time.time()
        minute = int(now) // 60 * 60
        # 23 h 59 min ago, and 26 h ago
        _publish_router_minutes(ctx, "shop", (minute - 86340, minute - 26 * 3600))
        sample = plan.Sample("shop", "web.1", "dyno-shop.v1.web.1.service", 50 * 2**20, 2**29, 0, 0)
        metrics.put_dyno_metrics(
            ctx.aws.client("cloudwatch"),
            ctx.platform().name,
            ops.Sampler().datums([(minute - 86340.0, [sample])]),
        )
        assert motofix.prune_metrics(now) > 0  # the 26 h old values went
        result = ops.app_metrics(ctx, "shop", 86400, now)
        assert len(result.points) == 1440
        assert (result.router.requests, result.points[0].requests) == (20, 20)
        assert result.router.p95_ms is not None
        assert result.dynos == [plan.DynoSummary("web.1", 50.0, 512.0, None, 0)]
        assert result.points[0].dynos == {"web.1": plan.DynoPoint(50.0, None)}


def test_values_put_with_counts_are_kept_once_and_counted(aws):
    """The router's response times, put per second as values with counts (a value per
    request in moto's own storage), are stored once per value and every statistic counts
    them (motofix.weighted_values)."""
    from moto.cloudwatch.models import cloudwatch_backends

    cloudwatch = aws.client("cloudwatch")
    backend = cloudwatch_backends["123456789012"]["us-east-1"]
    dims = metrics.dimensions(LB_ARN, TG_ARN)
    at = datetime(2026, 11, 30, 19, 4, 1, tzinfo=UTC)
    cloudwatch.put_metric_data(
        Namespace="AWS/ApplicationELB",
        MetricData=[
            {
                "MetricName": "TargetResponseTime",
                "Dimensions": dims,
                "Timestamp": at,
                "Values": [0.002, 0.010, 0.300],
                "Counts": [900.0, 90.0, 10.0],
                "Unit": "Seconds",
            },
            {"MetricName": "RequestCount", "Dimensions": dims, "Timestamp": at, "Value": 1000},
        ],
    )
    assert len(backend.metric_data) == 4  # moto alone: 1,001
    query = {"Namespace": "AWS/ApplicationELB", "MetricName": "TargetResponseTime"}
    query["Dimensions"] = dims

    def stat(name: str) -> float:
        answer = cloudwatch.get_metric_data(
            MetricDataQueries=[
                {"Id": "q", "MetricStat": {"Metric": query, "Period": 60, "Stat": name}}
            ],
            StartTime=datetime(2026, 11, 30, 19, 4, tzinfo=UTC),
            EndTime=datetime(2026, 11, 30, 19, 5, tzinfo=UTC),
        )
        return answer["MetricDataResults"][0]["Values"][0]

    assert stat("SampleCount") == 1000
    assert round(stat("Sum"), 6) == round(900 * 0.002 + 90 * 0.010 + 10 * 0.300, 6)
    assert (stat("p50"), stat("p95"), stat("p99"), stat("p99.5")) == (0.002, 0.010, 0.010, 0.3)
    assert (stat("Minimum"), stat("Maximum")) == (0.002, 0.3)
