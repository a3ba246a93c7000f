"""The local router when a web dyno's target dies while requests flow: none of them fails.

A dead host answers nothing (its address takes no connection and refuses none); a stopped dyno
refuses at once. The router gives a connection 500 ms, sends the request on to another server,
and takes the dead one out after `fall` failed connections in a row (2 for dynoform's target
groups), without waiting for its health checks; once those pass again it is back.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from e2e_support import EXAMPLES, Background, Url, cli, cli_json, get

from provisioner.aws.session import Aws

pytestmark = pytest.mark.cloud

TABLE = "dynoform_test_failover"  # the nftables table this test adds on a host (and deletes)
MAX_SECONDS = 1.5  # no request may take longer (it took 5 s per request before)


@dataclass
class Timed(Background):
    """Requests one after the other through the router, each one's time and outcome kept."""

    url: Url
    answers: list[tuple[float, float, str]] = field(default_factory=list)  # (at, seconds, dyno)
    failures: list[str] = field(default_factory=list)

    def _loop(self) -> None:
        end = time.monotonic() + 120
        while not self._stop.is_set() and time.monotonic() < end:
            start = time.monotonic()
            try:
                status, body = get(self.url, timeout=10)
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            else:
                if status == 200:
                    seconds = time.monotonic() - start
                    self.answers.append((start, seconds, json.loads(body)["dyno"]))
                else:
                    self.failures.append(f"HTTP {status}: {body[:120]!r}")
            self._stop.wait(0.05)

    def dynos_since(self, moment: float) -> set[str]:
        return {dyno for at, _, dyno in self.answers if at >= moment}

    def slow(self) -> list[float]:
        return [seconds for _, seconds, _ in self.answers if seconds > 0.4]


def web_targets(aws: Aws, app: str) -> list[tuple[str, int]]:
    """The (IP, port) of each of the app's web dynos, as the router has them."""
    pages = aws.elbv2.get_paginator("describe_target_groups").paginate()
    groups = [g for page in pages for g in page["TargetGroups"]]
    (group,) = [g for g in groups if g["TargetGroupName"].startswith(f"df-{app[:20]}-")]
    health = aws.elbv2.describe_target_health(TargetGroupArn=group["TargetGroupArn"])
    return sorted(
        (d["Target"]["Id"], int(d["Target"]["Port"])) for d in health["TargetHealthDescriptions"]
    )


def host_with_ip(ip: str) -> str:
    rows = cli_json("hosts")
    assert isinstance(rows, list)
    return next(str(h["id"]) for h in rows if h["private_ip"] == ip)


@contextmanager
def silenced(host: str, port: int) -> Iterator[None]:
    """The host drops every packet to the dyno's port, as a dead host answers nothing."""
    rules = (
        f"add table inet {TABLE}; "
        f"add chain inet {TABLE} input {{ type filter hook input priority -10; }}; "
        f"add rule inet {TABLE} input tcp dport {port} drop"
    )
    try:
        cli("hosts:exec", host, "--", "sudo", "nft", rules)
        yield
    finally:
        cli("hosts:exec", host, "--", "sudo", "nft", f"delete table inet {TABLE}", check=False)


@contextmanager
def stopped(host: str, unit: str) -> Iterator[None]:
    """The dyno's unit stopped: its port refuses connections at once."""
    try:
        cli("hosts:exec", host, "--", "sudo", "systemctl", "stop", unit)
        yield
    finally:
        cli("hosts:exec", host, "--", "sudo", "systemctl", "start", unit, check=False)


def both_dynos_answer(url: Url, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while time.monotonic() < deadline:
        status, body = get(url)
        if status == 200:
            seen.add(json.loads(body)["dyno"])
        if seen == {"web.1", "web.2"}:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("death", ["silent", "refusing"])
def test_requests_go_on_when_a_web_target_dies(app_name: str, local_cloud: Aws, death: str) -> None:
    cli("deploy", "-a", app_name, str(EXAMPLES / "python"))
    cli("ps:scale", "web=2", "-a", app_name)
    requests_go_on(app_name, local_cloud, death, Url.of_app(app_name))


def requests_go_on(app: str, aws: Aws, death: str, url: Url) -> None:
    """One web dyno's target dies while requests flow through the router at `url`."""
    assert both_dynos_answer(url)
    ip, port = web_targets(aws, app)[-1]
    host = host_with_ip(ip)
    rows = cli_json("ps", "-a", app)
    assert isinstance(rows, list)

    with Timed(url) as timed:
        time.sleep(1.0)
        if death == "silent":
            failing = silenced(host, port)
        else:
            # The dyno behind that target: the web dyno on that host whose unit has the port.
            unit = next(
                f"dyno-{app}.{r['release']}.{r['name']}.service"
                for r in rows
                if r["type"] == "web" and r["host"] == host and _listens(host, r, app, port)
            )
            failing = stopped(host, unit)
        with failing:
            dead_at = time.monotonic()
            time.sleep(4.0)
            survivors = timed.dynos_since(dead_at + 1.0)
        time.sleep(0.5)
    assert timed.failures == [], timed.failures[:5]
    assert len(timed.answers) > 30
    assert max(seconds for _, seconds, _ in timed.answers) < MAX_SECONDS, timed.slow()
    # Passive health: after 2 failed connections the target is out, not after 2 failed
    # checks 5 s apart (each request that met it took up to 500 ms more).
    assert len(timed.slow()) <= 2, timed.slow()
    assert len(survivors) == 1, survivors
    # The active checks bring it back once it answers again.
    assert both_dynos_answer(url)


def _listens(host: str, row: dict[str, object], app: str, port: int) -> bool:
    """Whether the dyno's unit on that host serves the port (its unit sets PORT)."""
    unit = f"dyno-{app}.{row['release']}.{row['name']}.service"
    env = cli("hosts:exec", host, "--", "systemctl", "show", "-p", "Environment", "--value", unit)
    return f"PORT={port}" in env.stdout.split()
