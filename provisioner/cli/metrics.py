"""`metrics`: an app's router and dyno figures per minute, from CloudWatch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from provisioner.cli.common import AppOption, emit_json, g, out, print_table, resolve_app, status
from provisioner.ops import metrics as ops
from provisioner.plan.metrics import AppMetrics, parse_since


def metrics(
    since: str = typer.Option("1h", "--since", help="The window: 30m, 1h, 24h, 2d (at most 15d)."),
    png: Path | None = typer.Option(
        None, "--png", help="Also draw response times, throughput and memory into this PNG file."
    ),
    app: str = AppOption,
) -> None:
    """Router requests, responses by status, p50/p95/p99, and each dyno's memory, CPU and
    restarts. Example: dynoform metrics -a myapp --since 24h --png myapp.png"""
    figures = ops.app_metrics(g().ctx, resolve_app(app), parse_since(since))
    if png is not None:
        draw(figures, png)
        status(f"drew {png}")
    if g().json:
        emit_json(figures.to_json())
        return
    r = figures.router
    out.print(f"{figures.app} from {figures.start} to {figures.end}", markup=False)
    codes = "  ".join(f"{k}: {v}" for k, v in r.responses.items())
    out.print(f"router: {r.requests} requests  {codes}", markup=False)
    out.print(f"response time: p50 {_ms(r.p50_ms)}  p95 {_ms(r.p95_ms)}  p99 {_ms(r.p99_ms)}")
    rows = [d.__dict__ for d in figures.dynos]
    print_table(
        rows,
        ["name", "memory_mb", "memory_limit_mb", "cpu_percent", "restarts"],
        "dynos: none sampled in the window",
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g} ms"


def draw(figures: AppMetrics, path: Path) -> None:
    """Three charts, one above the other: response times, requests per minute, memory per dyno.
    matplotlib is imported here only: the other commands stay quick to start."""
    import matplotlib.pyplot as plt

    fig = chart(figures)
    fig.savefig(path, format="png", dpi=80)
    plt.close(fig)


def chart(figures: AppMetrics) -> Any:
    """The figure `draw` saves (a matplotlib Figure)."""
    import matplotlib

    matplotlib.use("Agg")
    from datetime import datetime

    import matplotlib.pyplot as plt

    times = [datetime.fromisoformat(p.at) for p in figures.points]
    fig, (rt, rate, mem) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        _plot(rt, times, [_nan(getattr(p, key)) for p in figures.points], key[:3])
    rt.set_ylabel("response time (ms)")
    rt.legend(loc="upper left")
    for code in ("2xx", "3xx", "4xx", "5xx"):
        rate.plot(times, [p.responses[code] for p in figures.points], label=code)
    rate.plot(times, [p.requests for p in figures.points], label="requests", color="black")
    rate.set_ylabel("per minute")
    rate.legend(loc="upper left")
    for dyno in figures.dynos:
        _plot(mem, times, [_dyno_mb(p.dynos, dyno.name) for p in figures.points], dyno.name)
    mem.set_ylabel("memory (MB)")
    if figures.dynos:
        mem.legend(loc="upper left")
    fig.suptitle(f"{figures.app}: {figures.start} to {figures.end}")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def _plot(axes: Any, times: list[Any], values: list[float], label: str) -> None:
    """A line through the values, and a dot on each lone one (no value a minute before or
    after it): a line needs two neighbours, so a dyno sampled once, or a request every few
    minutes, would show nothing."""
    lone = sorted(lone_points(values))
    axes.plot(times, values, label=label, marker="o" if lone else "", markersize=4, markevery=lone)


def lone_points(values: list[float]) -> set[int]:
    """The indexes of the values (not NaN) whose neighbours are both NaN or absent."""
    known = [v == v for v in values]  # NaN != NaN
    return {
        i
        for i, here in enumerate(known)
        if here and not (i > 0 and known[i - 1]) and not (i + 1 < len(known) and known[i + 1])
    }


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _dyno_mb(dynos: dict[str, Any], name: str) -> float:
    point = dynos.get(name)
    return _nan(point.memory_mb if point else None)


def register(root: typer.Typer) -> None:
    root.command("metrics")(metrics)
