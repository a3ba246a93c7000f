"""Each benchmark figure that has a target, beside it: met or not (issue 23's table)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Goal:
    label: str
    path: str  # dotted keys into the figures
    target: float
    at_most: bool = True  # else at least
    unit: str = ""


GOALS = (
    Goal(
        "warm deploy (2 web dynos on 2 hosts, settled), median",
        "deploy_warm_s.median",
        1.5,
        unit=" s",
    ),
    Goal("cold deploy", "deploy_cold_s.median", 4.0, unit=" s"),
    Goal("warm deploy, 8 hosts / 1 host", "deploy_hosts_ratio", 1.3, unit="x"),
    Goal(
        "router HTTP / direct HTTP, C-speed target (loopback)",
        "router_vs_direct.rps_ratio",
        0.9,
        at_most=False,
    ),
    Goal(
        "... p50 added, one connection (loopback)", "router_vs_direct.p50_added_ms", 0.3, unit=" ms"
    ),
    Goal(
        "... p50 added, 16 connections (loopback)",
        "router_vs_direct.p50_added_16conn_ms",
        0.3,
        unit=" ms",
    ),
    Goal(
        "router HTTP / direct HTTP, C-speed keep-alive target (loopback)",
        "router_vs_direct_keepalive.rps_ratio",
        0.9,
        at_most=False,
    ),
    Goal(
        "... p50 added, 16 connections (keep-alive target)",
        "router_vs_direct_keepalive.p50_added_16conn_ms",
        0.3,
        unit=" ms",
    ),
    Goal("POSTs failed, idle-close race (target keep-alive 6 s)", "idle_race.failed", 0),
    Goal("... idle connections the target had to close", "idle_race.closed_by_target", 0),
    Goal("router HTTP / direct HTTP, python dyno", "router_overhead.rps_ratio", 0.9, False),
    Goal("... p50 added (python dyno)", "router_overhead.p50_added_ms", 0.3, unit=" ms"),
    Goal(
        "router, 100 apps: last app's rule / first app's rule", "router_rules.rps_ratio", 0.9, False
    ),
    Goal(
        "router with 100 apps / with 1 app (measured in turn)", "router_apps_100_vs_1", 0.9, False
    ),
    Goal("placing 10,000 dynos on 500 hosts", "placement_10k_s.median", 0.5, unit=" s"),
    Goal("one command on a reused SSH connection", "ssh_reused_command_ms.median", 10, unit=" ms"),
    Goal("CLI memory during a deploy (max RSS)", "deploy_cli_max_rss_mb", 150, unit=" MB"),
)


def dig(figures: dict[str, Any], path: str) -> Any:
    value: Any = figures
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def check_targets(figures: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, target, measured, met) for every goal whose figure was measured."""
    rows = []
    for goal in GOALS:
        value = dig(figures, goal.path)
        if not isinstance(value, int | float):
            continue
        met = value <= goal.target if goal.at_most else value >= goal.target
        sign = "<=" if goal.at_most else ">="
        rows.append(
            (
                goal.label,
                f"{sign} {goal.target:g}{goal.unit}",
                f"{value:g}{goal.unit}",
                "met" if met else "NOT MET",
            )
        )
    return rows


def print_targets(rows: list[tuple[str, str, str, str]]) -> None:
    if not rows:
        return
    heads = ("figure", "target", "measured", "")
    widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(4)]
    sys.stdout.write("\n")
    for row in [heads, *rows]:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        sys.stdout.write("\n")
