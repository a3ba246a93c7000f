"""Autoscaling on the local cloud, as a user sees it: an app whose requests take 0.3 s, with a
p95 goal of 100 ms, gets a second web dyno under bounded load and goes back to one after it.
The controller reads the router's response times from (moto's) CloudWatch, where the local
router publishes them as the ALB does on AWS.

Runs on the `controlled` platform (conftest): the shared platform's controller is paused.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import Controlled, Load, Url, wait_for

from provisioner.aws import metrics
from provisioner.aws.router import target_group_name

pytestmark = pytest.mark.cloud

SLOW_APP = """\
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(0.3)
        body = json.dumps(
            {"dyno": os.environ.get("DYNO", ""), "release": os.environ.get("DYNOFORM_RELEASE", "")}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""


@pytest.fixture
def slow_app(controlled: Controlled, tmp_path: Path) -> Iterator[tuple[str, Url]]:
    (tmp_path / "app.py").write_text(SLOW_APP)
    (tmp_path / "Procfile").write_text("web: python3 app.py\n")
    with controlled.deployed("as", tmp_path) as deployed:
        yield deployed


def web_up(controlled: Controlled, app: str) -> int:
    dynos = controlled.json("ps", "-a", app)
    return sum(1 for d in dynos if d["type"] == "web" and d["state"] == "up")


def published(controlled: Controlled, app: str) -> bool:
    """Whether the local router's response times for the app reach CloudWatch."""
    elbv2 = controlled.aws.elbv2
    name = target_group_name(controlled.platform, app)
    arn = elbv2.describe_target_groups(Names=[name])["TargetGroups"][0]["TargetGroupArn"]
    found = controlled.aws.client("cloudwatch").list_metrics(
        Namespace=metrics.NAMESPACE,
        MetricName=metrics.METRIC,
        Dimensions=[{"Name": "TargetGroup", "Value": metrics.tg_dimension(arn)}],
    )
    return bool(found["Metrics"])


def test_slow_requests_scale_web_out_and_quiet_scales_it_back_in(
    controlled: Controlled, slow_app: tuple[str, Url]
) -> None:
    app, url = slow_app
    controlled.cli(
        "ps:autoscale:enable", "web", "--min", "1", "--max", "2", "--p95", "100",
        "--scale-in-after", "10", "-a", app,
    )  # fmt: skip
    refused = controlled.cli("ps:scale", "web=2", "-a", app, check=False)
    assert refused.returncode == 1 and "autoscaling owns its quantity" in refused.stderr
    clients = [Load(url, rate=5.0, max_seconds=150) for _ in range(4)]  # about 12 requests/s
    started = time.monotonic()
    for client in clients:
        client.__enter__()
    try:
        wait_for(
            "the router's response times in CloudWatch (a local cloud daemon of older code "
            "publishes none: restart it)",
            lambda: published(controlled, app),
            20,
        )
        wait_for("a second web dyno up", lambda: web_up(controlled, app) == 2, 120, 2)
        print(f"web=2 up {time.monotonic() - started:.1f} s after the load began")
    finally:
        for client in clients:
            client.__exit__()
    assert [f for c in clients for f in c.failures] == []
    assert sum(c.ok for c in clients) > 100
    stopped = time.monotonic()
    wait_for("back to one web dyno", lambda: web_up(controlled, app) == 1, 240, 3)
    print(f"web=1 {time.monotonic() - stopped:.1f} s after the load stopped")
    decisions = controlled.json("ps:autoscale", "-a", app)["decisions"]
    # at 2 dynos the requests stay slow: a hold at the maximum may be said in between
    scaled = [(d["action"], d["before"], d["after"]) for d in decisions if d["action"] != "at-max"]
    assert scaled == [("out", 1, 2), ("in", 2, 1)]
    assert decisions[0]["p95_ms"] > 100 and decisions[0]["goal_ms"] == 100
    logs = controlled.cli("logs", "-a", app, "--source", "dynoform", "-n", "50").stdout
    lines = [line for line in logs.splitlines() if "dynoform[autoscale]" in line]
    assert any("web 1 -> 2: p95" in line and "> goal 100 ms" in line for line in lines), logs
    assert any("web 2 -> 1: quiet" in line for line in lines), logs
