"""Autoscaling figures: an app whose requests take 0.3 s, a p95 goal of 100 ms (min 1, max 2),
and about 12 requests a second from 4 clients through the router. Measured from the outside:

- out_s: from the decision's first evidence (the first slow response: it makes the p95 of its
  minute window exceed the goal as soon as the router has published it) until a response comes
  from web.2 (target: 45 s);
- decision_s: from that evidence until the autoscaler's decision (its event's time);
- in_s: from the load's end until `ps` shows one web dyno again (scale-in after 10 s quiet).

Runs on the `local` platform with its controller resumed for the while (tests keep it paused).
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.deploys import Router, cli, cli_json, destroy, new_app
from bench.heal import until

TARGET_S = 45.0
SLOW_APP = """\
import json, os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(0.3)
        body = json.dumps({"dyno": os.environ.get("DYNO", "")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""


@dataclass
class Clients:
    """`count` clients, each about `rate` requests a second; when each dyno first answered."""

    router: Router
    count: int = 4
    rate: float = 5.0
    first: dict[str, float] = field(default_factory=dict)  # dyno -> wall-clock time
    failed: int = 0
    ok: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(self.count)]
        for thread in threads:
            thread.start()
        return threads

    def stop(self, threads: list[threading.Thread]) -> None:
        self._stop.set()
        for thread in threads:
            thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                status, body = self.router.get(timeout=5.0)
                dyno = json.loads(body).get("dyno", "") if status == 200 else ""
            except (OSError, ValueError):
                status, dyno = 0, ""
            with self._lock:
                if status == 200:
                    self.ok += 1
                    self.first.setdefault(dyno, time.time())
                else:
                    self.failed += 1
            self._stop.wait(max(0.0, 1 / self.rate - (time.monotonic() - started)))


def web_up(app: str) -> int:
    return sum(1 for d in cli_json("ps", "-a", app) if d["type"] == "web" and d["state"] == "up")


def scale_out_and_in(app: str) -> dict[str, Any]:
    source = Path(tempfile.mkdtemp(prefix="bench-autoscale-"))
    (source / "app.py").write_text(SLOW_APP)
    (source / "Procfile").write_text("web: python3 app.py\n")
    cli("deploy", "-a", app, str(source))
    cli("ps:autoscale:enable", "web", "--min", "1", "--max", "2", "--p95", "100",
        "--scale-in-after", "10", "-a", app)  # fmt: skip
    clients = Clients(Router.of(app))
    threads = clients.start()
    try:
        served = until(lambda: "web.2" in clients.first, 180)
    finally:
        clients.stop(threads)
    scaled_in = until(lambda: web_up(app) == 1, 240, 2)
    evidence = clients.first.get("web.1")
    decisions = cli_json("ps:autoscale", "-a", app)["decisions"]
    out = next((d for d in decisions if d["action"] == "out"), None)
    figures: dict[str, Any] = {
        "out_s": "not in 180 s"
        if served is None or evidence is None
        else round(clients.first["web.2"] - evidence, 1),
        "out_target_s": TARGET_S,
        "decision_s": round(out["at"] - evidence, 1) if out and evidence else "no decision",
        "decision": out["message"] if out else "none",
        "in_s": round(scaled_in, 1) if scaled_in is not None else "not in 240 s",
        "requests": clients.ok + clients.failed,
        "failed": clients.failed,
    }
    return figures


def run() -> dict[str, Any]:
    """The autoscaling figures on the `local` platform (the controller resumed meanwhile)."""
    paused = bool(cli_json("controller:status")["paused"])
    if paused:
        cli("controller:resume")
    app = new_app()
    try:
        return {"autoscale": scale_out_and_in(app)}
    finally:
        destroy(app)
        if paused:
            cli("controller:pause")
