"""`metrics --png`: what the charts draw (matplotlib's figure, read back before it is saved)."""

from __future__ import annotations

import math
from pathlib import Path

from provisioner.cli import metrics as cli
from provisioner.plan import metrics as plan

T0 = 1796065440.0  # 2026-11-30T19:04:00Z, a whole minute
NAN = math.nan


def _figures() -> plan.AppMetrics:
    """Five minutes: one request in the second, web.1 sampled once, in the fourth."""
    router: dict[str, plan.Series] = {
        "requests": {T0 + 60: 1.0},
        "2xx": {T0 + 60: 1.0},
        "p50": {T0 + 60: 0.004},
        "p95": {T0 + 60: 0.004},
        "p99": {T0 + 60: 0.004},
    }
    dynos = {"web.1": {"memory": {T0 + 180: 64 * 2.0**20}}}
    return plan.app_metrics("shop", 300, T0, T0 + 300, router, {}, dynos)


def _marked(line: object) -> list[float]:
    """The y values a line shows as dots."""
    every = line.get_markevery()  # type: ignore[attr-defined]
    if line.get_marker() in ("", "None", None) or not every:  # type: ignore[attr-defined]
        return []
    ys = line.get_ydata()  # type: ignore[attr-defined]
    return [float(ys[i]) for i in every]


def test_a_lone_minute_is_a_dot() -> None:
    """A dyno sampled once and a minute with requests between empty ones: as a line alone,
    matplotlib draws nothing for them."""
    import matplotlib.pyplot as plt

    fig = cli.chart(_figures())
    try:
        rt, _, mem = fig.axes
        assert [_marked(line) for line in rt.get_lines()] == [[4.0], [4.0], [4.0]]
        assert [_marked(line) for line in mem.get_lines()] == [[64.0]]
    finally:
        plt.close(fig)


def test_lone_points() -> None:
    assert cli.lone_points([]) == set()
    assert cli.lone_points([NAN, 1.0, NAN, 2.0, 3.0, NAN, 4.0]) == {1, 6}
    assert cli.lone_points([5.0]) == {0}
    assert cli.lone_points([1.0, 2.0]) == set()


def test_the_png_is_a_png(tmp_path: Path) -> None:
    cli.draw(_figures(), tmp_path / "m.png")
    data = (tmp_path / "m.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
