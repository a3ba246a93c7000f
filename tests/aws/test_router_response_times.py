"""The local router publishes what the ALB publishes: real requests through HAProxy become
`TargetResponseTime`, `RequestCount` and `HTTPCode_Target_2XX_Count` in (moto's) CloudWatch,
read back as autoscaling and `dynoform metrics` read them on AWS."""

from __future__ import annotations

import time

from test_lb_dataplane import Backend, Cloud, _client, backends, cloud, endpoint, get, wait_for

from provisioner.aws import metrics

__all__ = ["backends", "cloud", "endpoint"]  # the fixtures this test uses


def test_requests_through_the_router_are_read_back_as_p95(
    cloud: Cloud, backends: dict[str, Backend], endpoint: str
) -> None:
    cloud.register(cloud.web, backends["b1"])
    wait_for(cloud.port, "web.example.test", "b1")
    cloudwatch = _client(endpoint, "cloudwatch")
    cloud.lbs.publish_metrics(cloudwatch)  # from now on: what came before is not published
    for _ in range(18):
        assert get(cloud.port, "web.example.test")[0] == 200
    for _ in range(2):  # 1.5 s each: the p95 of 20 requests is the 19th
        assert get(cloud.port, "web.example.test", "/slow")[0] == 200
    published = 0
    deadline = time.monotonic() + 5
    while published < 20 and time.monotonic() < deadline:  # HAProxy's lines land at once
        published += cloud.lbs.publish_metrics(cloudwatch)
        time.sleep(0.1)
    assert published == 20
    windows = metrics.response_times(cloudwatch, cloud.lb_arn, cloud.web, time.time())
    assert sum(w.requests for w in windows) == 20
    newest = windows[-1]  # the slow ones came last (a minute may have begun in between)
    assert newest.p95_ms is not None and 1500 <= newest.p95_ms < 2500
    assert metrics.response_times(cloudwatch, cloud.lb_arn, cloud.api, time.time()) == []
    # and counted as the ALB counts them, by status class
    end = time.time() // 60 * 60 + 60
    series = metrics.router_series(cloudwatch, cloud.lb_arn, cloud.web, end - 120, end)
    assert sum(v or 0 for v in series["requests"].values()) == 20
    assert sum(v or 0 for v in series["2xx"].values()) == 20
    assert series["5xx"] == {}
