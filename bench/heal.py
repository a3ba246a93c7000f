"""Healing figures: a host's machine killed outright while an app with web=2 serves ~10
requests a second. Measured from the outside: from the kill until `ps` shows both web dynos up
on live hosts, until `hosts` shows the fleet back at its declared size, and the requests that
failed meanwhile. Once with a host that is not the controller leader's, once with the leader's.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench.deploys import Load, Router, cli, cli_json, fresh_source
from provisioner import paths
from provisioner.localcloud.system import children


def runners() -> list[dict[str, Any]]:
    return [h for h in cli_json("hosts") if h["role"] == "runner"]


def web(app: str) -> list[dict[str, Any]]:
    return [d for d in cli_json("ps", "-a", app) if d["type"] == "web"]


def leader() -> str:
    holder = cli_json("controller:status")["leader"] or ""
    return str(holder).split(":")[0]


def kill_machine(host: str) -> None:
    """Pull the plug: SIGKILL to the container's PID 1 (the child of the nspawn the local cloud
    recorded for a host this benchmark uses) ends every process of the machine at once."""
    nspawn = int((paths.local_state_dir() / "hosts" / host / "nspawn.pid").read_text())
    for pid in children(nspawn):
        os.kill(pid, 9)


def until(check: Any, limit: float, step: float = 0.5) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if check():
            return time.monotonic() - started
        time.sleep(step)
    return None


def one_loss(app: str, router: Router, leaders: bool) -> dict[str, Any]:
    boss = leader()
    victim = boss if leaders else next(d["host"] for d in web(app) if d["host"] != boss)
    size = len([h for h in runners() if h["state"] == "running"])
    figures: dict[str, Any] = {"victim_ran_web": victim in [d["host"] for d in web(app)]}

    def lose_host() -> None:
        started = time.monotonic()
        kill_machine(victim)
        web_back = until(lambda: _serving(app, victim), 120)
        figures["web_back_s"] = round(web_back, 1) if web_back is not None else "not in 120 s"
        left = 240 - (time.monotonic() - started)
        fleet_back = until(lambda: _fleet_back(victim, size), left, 2)
        total = time.monotonic() - started
        figures["fleet_back_s"] = round(total, 1) if fleet_back is not None else "not in 240 s"

    load = Load(router, rate=10).run(lose_host)
    figures["requests"] = load["requests"]
    figures["failed"] = load["failed"]
    figures["failed_pct"] = round(100 * load["failed"] / max(1, load["requests"]), 2)
    figures["errors"] = load["errors"]
    return figures


def _serving(app: str, gone: str) -> bool:
    dynos = web(app)
    return len(dynos) == 2 and all(d["state"] == "up" and d["host"] != gone for d in dynos)


def _fleet_back(gone: str, size: int) -> bool:
    ready = [h for h in runners() if h["state"] == "running" and h["bootstrapped"]]
    return len(ready) >= size and gone not in [h["id"] for h in ready]


def host_loss(app: str) -> dict[str, Any]:
    """Kill a host that is not the leader's, then the leader's (the controller resumed for it
    and left as it was)."""
    paused = cli_json("controller:status")["paused"]
    cli("controller:resume")
    try:
        if not cli_json("apps:info", "-a", app)["release"]:
            cli("deploy", "-a", app, str(fresh_source("heal")))
        cli("ps:scale", "web=2", "-a", app)
        router = Router.of(app)
        until(lambda: _serving(app, ""), 60)
        figures = {"other_host": one_loss(app, router, leaders=False)}
        until(lambda: leader() != "", 30)
        figures["leaders_host"] = one_loss(app, router, leaders=True)
    finally:
        if paused:
            cli("controller:pause")
    return {"host_loss": figures}
