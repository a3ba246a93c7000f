"""Metrics on the local cloud, as a user sees them: requests to an app are counted by status
class with their p95 by `dynoform metrics`, each dyno has a memory figure (sampled by the
controller's metrics duty), `ps` shows memory too, and `--png` draws the charts.

Runs on the `controlled` platform (conftest): the duty needs a controller at work.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import Controlled, Url, get, wait_for

pytestmark = pytest.mark.cloud

APP = """\
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/slow":
            time.sleep(0.25)
        status = 404 if self.path == "/missing" else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""


@pytest.fixture
def app(controlled: Controlled, tmp_path: Path) -> Iterator[tuple[str, Url]]:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "Procfile").write_text("web: python3 app.py\n")
    with controlled.deployed("mt", tmp_path) as deployed:
        yield deployed


def test_requests_are_counted_with_their_p95_and_dynos_have_memory(
    controlled: Controlled, app: tuple[str, Url], tmp_path: Path
) -> None:
    name, url = app
    paths = ["/"] * 16 + ["/missing"] * 2 + ["/slow"] * 2
    assert sorted(get(url, p)[0] for p in paths) == [200] * 18 + [404] * 2
    ps = controlled.json("ps", "-a", name)
    assert [d["name"] for d in ps] == ["web.1"] and ps[0]["memory_mb"] > 1, ps

    def counted() -> dict[str, Any] | None:
        shown = controlled.json("metrics", "-a", name, "--since", "10m")
        print("router", shown["router"], "dynos", shown["dynos"])  # shown when it fails
        done = shown["router"]["requests"] >= 20 and shown["dynos"]
        return shown if done else None

    # the router publishes every 5 s; the controller samples the dynos every 60 s
    shown = wait_for(
        "20 requests and a memory figure in `metrics --json` (a local cloud daemon of older "
        "code publishes no RequestCount: restart it)",
        counted,
        80,
        3,
    )
    router = shown["router"]
    assert router["requests"] == 20, router
    assert router["responses"] == {"2xx": 18, "3xx": 0, "4xx": 2, "5xx": 0}
    assert router["errors_5xx"] == 0
    assert 250 <= router["p99_ms"] < 1000 and router["p50_ms"] < 250, router
    assert router["p95_ms"] >= 250, router  # the 19th of 20 (nearest rank): a slow one
    dyno = shown["dynos"][0]
    assert dyno["name"] == "web.1" and 1 < dyno["memory_mb"] < dyno["memory_limit_mb"], dyno
    assert "cpu_percent" in dyno and dyno["restarts"] == 0, dyno  # CPU: from a second sample
    assert sum(p["requests"] for p in shown["points"]) == 20

    png = tmp_path / "metrics.png"
    drawn = controlled.cli("metrics", "-a", name, "--since", "10m", "--png", str(png))
    assert "router: 20 requests" in drawn.stdout
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
