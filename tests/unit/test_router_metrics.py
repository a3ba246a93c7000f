"""The local router's response times as CloudWatch datums (what the ALB publishes on AWS)."""

from __future__ import annotations

from datetime import UTC, datetime

from provisioner.aws import metrics
from provisioner.localcloud import haproxy as hx
from provisioner.localcloud.motofix import _percentile_of

LB_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/dynoform-p/50dc6c495c0c9188"
TG_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/dynoform-p-shop/73e2d6bc24d8a067"
MODEL = hx.Model(
    load_balancers=(hx.LoadBalancer(LB_ARN, "dynoform-p", "dns"),),
    target_groups=(hx.TargetGroup(TG_ARN, "dynoform-p-shop", hx.HealthCheck()),),
)


def line(at: str, service: str, backend: str = "tg-dynoform-p-shop", lb: str = "dynoform-p") -> str:
    return (
        f'{at} router[{lb}]: at=info method=GET path="/" host=shop.localhost '
        f'request_id=abc fwd="127.0.0.1" dyno=198.18.0.4:20000 backend={backend} '
        f"connect=0ms service={service}ms status=200 bytes=341 protocol=http"
    )


def test_parse_timing():
    timing = hx.parse_timing(line("2026-11-30T19:04:01.250000+00:00", "301"))
    assert timing == hx.Timing(1796065441.25, "dynoform-p", "tg-dynoform-p-shop", 301)
    assert hx.parse_timing(line("2026-11-30T19:04:01.250000+00:00", "-1")) is None  # no answer
    assert hx.parse_timing("[NOTICE] server up") is None
    assert hx.parse_timing(line("yesterday", "3")) is None


def test_dimensions_are_the_albs():
    assert metrics.dimensions(LB_ARN, TG_ARN) == [
        {"Name": "TargetGroup", "Value": "targetgroup/dynoform-p-shop/73e2d6bc24d8a067"},
        {"Name": "LoadBalancer", "Value": "app/dynoform-p/50dc6c495c0c9188"},
    ]


def test_metric_data_groups_values_per_second_with_counts():
    lines = [
        line("2026-11-30T19:04:01.100000+00:00", "300"),
        line("2026-11-30T19:04:01.500000+00:00", "300"),
        line("2026-11-30T19:04:01.900000+00:00", "12"),
        line("2026-11-30T19:04:02.000000+00:00", "5"),
        line("2026-11-30T19:04:02.000000+00:00", "5", backend="tg-other"),  # unknown: left out
        line("2026-11-30T19:04:02.000000+00:00", "5", lb="elsewhere"),
    ]
    timings = [t for t in map(hx.parse_timing, lines) if t]
    datums = hx.metric_data(timings, MODEL, metrics.dimensions)
    dims = metrics.dimensions(LB_ARN, TG_ARN)
    common = {"MetricName": "TargetResponseTime", "Dimensions": dims, "Unit": "Seconds"}
    assert datums == [
        {
            **common,
            "Timestamp": datetime(2026, 11, 30, 19, 4, 1, tzinfo=UTC),
            "Values": [0.012, 0.3],
            "Counts": [1.0, 2.0],
        },
        {
            **common,
            "Timestamp": datetime(2026, 11, 30, 19, 4, 2, tzinfo=UTC),
            "Values": [0.005],
            "Counts": [1.0],
        },
    ]


def test_many_distinct_values_are_split_at_cloudwatchs_limit():
    timings = [hx.Timing(1796065441.0, "dynoform-p", "tg-dynoform-p-shop", ms) for ms in range(200)]
    datums = hx.metric_data(timings, MODEL, metrics.dimensions)
    assert [len(d["Values"]) for d in datums] == [hx.METRIC_VALUES_MAX, 200 - hx.METRIC_VALUES_MAX]


def test_percentile_statistics_moto_is_taught():
    assert [_percentile_of(s) for s in ("p95", "p99.9", "p0", "p101", "Average", "pxx")] == [
        95.0,
        99.9,
        None,
        None,
        None,
        None,
    ]
