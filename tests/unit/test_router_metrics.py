"""The local router's response times as CloudWatch datums (what the ALB publishes on AWS)."""

from __future__ import annotations

from datetime import UTC, datetime

from provisioner.aws import metrics
from provisioner.localcloud import haproxy as hx
from provisioner.localcloud.motofix import _percentile_of
from provisioner.plan.autoscale import percentile

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


def answered(at: str, status: int, service: str = "12", dyno: str = "198.18.0.4:20000") -> str:
    return (
        line(at, service)
        .replace("status=200", f"status={status}")
        .replace("dyno=198.18.0.4:20000", f"dyno={dyno}")
    )


def test_parse_answer():
    at = "2026-11-30T19:04:01.250000+00:00"
    assert hx.parse_answer(answered(at, 503, "-1")) == hx.Answer(
        1796065441.25, "dynoform-p", "tg-dynoform-p-shop", 503, by_target=False
    )  # the target did not answer: the router's 503
    assert hx.parse_answer(answered(at, 404)).by_target  # type: ignore[union-attr]
    assert hx.parse_answer(answered(at, 503, "-1", dyno="<NOSRV>")) is None  # no target chosen
    assert hx.parse_answer("[NOTICE] server up") is None


def test_count_data_counts_requests_and_the_targets_answers_by_class():
    lines = [
        answered("2026-11-30T19:04:01.100000+00:00", 200),
        answered("2026-11-30T19:04:01.500000+00:00", 201),
        answered("2026-11-30T19:04:01.900000+00:00", 302),
        answered("2026-11-30T19:04:01.900000+00:00", 404),
        answered("2026-11-30T19:04:01.900000+00:00", 500),
        answered("2026-11-30T19:04:01.950000+00:00", 504, "-1"),  # timed out: counted, no class
        answered("2026-11-30T19:04:02.000000+00:00", 200),
        line("2026-11-30T19:04:02.000000+00:00", "5", backend="tg-other"),  # unknown: left out
    ]
    answers = [a for a in map(hx.parse_answer, lines) if a]
    datums = hx.count_data(answers, MODEL, metrics.dimensions)
    dims = metrics.dimensions(LB_ARN, TG_ARN)
    one = datetime(2026, 11, 30, 19, 4, 1, tzinfo=UTC)
    two = datetime(2026, 11, 30, 19, 4, 2, tzinfo=UTC)
    assert [(d["Timestamp"], d["MetricName"], d["Value"]) for d in datums] == [
        (one, "HTTPCode_Target_2XX_Count", 2.0),
        (one, "HTTPCode_Target_3XX_Count", 1.0),
        (one, "HTTPCode_Target_4XX_Count", 1.0),
        (one, "HTTPCode_Target_5XX_Count", 1.0),
        (one, "RequestCount", 6.0),
        (two, "HTTPCode_Target_2XX_Count", 1.0),
        (two, "RequestCount", 1.0),
    ]
    assert all(d["Dimensions"] == dims and d["Unit"] == "Count" for d in datums)
    assert {metrics.ROUTER[k][0] for k in ("requests", "2xx", "3xx", "4xx", "5xx")} == {
        d["MetricName"] for d in datums
    }  # what the reader asks for


def test_old_values_are_merged_per_minute_and_keep_their_statistics():
    from moto.cloudwatch.models import MetricDatum

    from provisioner.localcloud import motofix

    dims = metrics.dimensions(LB_ARN, TG_ARN)
    minute = datetime(2026, 11, 30, 19, 4, tzinfo=UTC)
    t0 = minute.timestamp()

    def datum(value: float, seconds: int, unit: str = "Seconds", count: int = 1) -> MetricDatum:
        stamp = datetime.fromtimestamp(t0 + seconds, UTC)
        made = MetricDatum("AWS/ApplicationELB", "TargetResponseTime", value, dims, stamp, unit)
        if count > 1:
            made.count = count  # type: ignore[attr-defined]
        return made

    def expanded(data: list[MetricDatum]) -> list[float]:
        return sorted(m.value for m in data for _ in range(getattr(m, "count", 1)))

    old = [datum((v % 10 + 1) / 1000, v % 60) for v in range(100)]  # 10 values, 10 times each
    old.append(datum(0.004, 30, count=5))  # put with a count (weighted_values)
    lonely = [datum(0.004, 70)]  # the next minute: not merged with the one before
    count = [datum(3.0, 5, "Count")]  # another unit: its own kind
    recent = [datum(0.004, 200)]  # after `before`: left alone
    kept = motofix.compact_timings(old + lonely + count + recent, t0, t0 + 180)
    first_minute = [m for m in kept if m.unit == "Seconds" and _epoch(m) < t0 + 60]
    assert len(first_minute) == 10
    assert expanded(first_minute) == expanded(old)
    assert percentile(expanded(first_minute), 95) == percentile(expanded(old), 95)
    assert kept[-3:] == lonely + count + recent  # the same objects, in their order
    assert all(not hasattr(m, "count") for m in old[:100])  # merged copies, nothing changed


def _epoch(m: object) -> float:
    return m.timestamp.timestamp()  # type: ignore[attr-defined]
