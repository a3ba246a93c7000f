"""Logs end to end: every dyno and the router merged in time order, --tail, crash events."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import threading
import time

import pytest
from e2e_support import EXAMPLES, Url, cli, cli_json, get

pytestmark = pytest.mark.cloud
STAMP = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00) (app\[[\w.-]+\]|router|dynoform\[[\w.-]+\]): "
)


def test_logs_merge_dynos_and_router_in_time_order(app_name: str) -> None:
    cli("deploy", "-a", app_name, str(EXAMPLES / "python"))
    cli("ps:scale", "web=2", "-a", app_name)
    hosts = {r["host"] for r in cli_json("ps", "-a", app_name) if r["type"] == "web"}  # type: ignore[union-attr,index]
    assert len(hosts) == 2
    url = Url.of_app(app_name)
    tokens = [secrets.token_hex(4) for _ in range(12)]
    for token in tokens:
        assert get(url, f"/t-{token}")[0] == 200
    time.sleep(1.5)
    lines = cli("logs", "-a", app_name, "-n", "200").stdout.splitlines()
    stamps = []
    for line in lines:
        match = STAMP.match(line)
        assert match, line
        stamps.append(match.group(1))
    assert stamps == sorted(stamps)
    for token in tokens:
        app_lines = [line for line in lines if token in line and " app[web." in line]
        router_lines = [line for line in lines if token in line and " router: " in line]
        assert len(app_lines) == 1 and len(router_lines) == 1, token
        dyno = re.search(r"app\[(web\.\d)\]", app_lines[0]).group(1)  # type: ignore[union-attr]
        assert f"dyno={dyno}" in router_lines[0]
    assert {
        re.search(r"app\[(web\.\d)\]", x).group(1) for x in lines if " app[web." in x and "/t-" in x
    } == {"web.1", "web.2"}  # type: ignore[union-attr]
    only_router = cli("logs", "-a", app_name, "--source", "router", "-n", "50").stdout.splitlines()
    assert only_router and all(" router: " in line for line in only_router)
    web1 = cli("logs", "-a", app_name, "--ps", "web.1", "--source", "app").stdout.splitlines()
    assert web1 and all(" app[web.1]: " in line for line in web1)


def test_tail_follows_new_requests_and_new_hosts_and_shows_crashes(app_name: str) -> None:
    cli("deploy", "-a", app_name, str(EXAMPLES / "python"))
    url = Url.of_app(app_name)
    tail = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "provisioner",
            "-t",
            "local",
            "logs",
            "-a",
            app_name,
            "--tail",
            "-n",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    seen: list[tuple[float, str]] = []

    def read() -> None:
        assert tail.stdout is not None
        for line in tail.stdout:
            seen.append((time.monotonic(), line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        time.sleep(4)  # the tail connects to every host
        token = secrets.token_hex(4)
        sent = time.monotonic()
        get(url, f"/t-{token}")
        assert wait_seen(seen, token, 10, " app[")
        delay = next(t for t, line in seen if token in line and " app[" in line) - sent
        assert delay < 2.0, delay

        cli("ps:scale", "web=2", "-a", app_name)
        web2 = next(r for r in cli_json("ps", "-a", app_name) if r["name"] == "web.2")  # type: ignore[union-attr,index]
        web1 = next(r for r in cli_json("ps", "-a", app_name) if r["name"] == "web.1")  # type: ignore[union-attr,index]
        assert web2["host"] != web1["host"]
        time.sleep(4)  # the tail picks up the new dyno's host
        tokens = [secrets.token_hex(4) for _ in range(6)]
        for t in tokens:
            get(url, f"/t-{t}")
        assert all(wait_seen(seen, t, 10, " app[") for t in tokens)
        assert any(" app[web.2]: " in line and any(t in line for t in tokens) for _, line in seen)

        unit = f"dyno-{app_name}.v1.web.1.service"
        pid = cli(
            "hosts:exec",
            str(web1["host"]),
            "--",
            "systemctl",
            "show",
            "-p",
            "MainPID",
            "--value",
            unit,
        ).stdout.strip()
        cli("hosts:exec", str(web1["host"]), "--", "sudo", "kill", "-9", pid)
        assert wait_seen(seen, "dynoform[web.1]: Process killed by signal KILL", 15)
        assert wait_seen(seen, "dynoform[web.1]: Restarting", 15)
    finally:
        tail.terminate()
        tail.wait(timeout=10)


def wait_seen(seen: list[tuple[float, str]], text: str, timeout: float, also: str = "") -> bool:
    """Whether a line with text (and also) arrives within timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text in line and also in line for _, line in list(seen)):
            return True
        time.sleep(0.1)
    return False
