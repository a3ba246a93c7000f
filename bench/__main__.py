"""Run the benchmarks and print a table: `python -m bench [--quick] [--json PATH] [--plot PATH]`.

Needs root and the local cloud (started if needed). Creates its own app (and hosts when fewer
than it needs) and removes them after. Benchmarks print figures; they assert nothing.
"""

from __future__ import annotations

import argparse
import json
import platform as pyplatform
import sys
import time
from pathlib import Path
from typing import Any

from bench import autoscale, core, heal
from bench import cron as cron_bench
from bench import deploys as plat


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="fewer runs, 1-2-4 hosts")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--plot", type=Path, default=Path("bench/results/curves.png"))
    parser.add_argument(
        "--only",
        choices=["core", "platform", "heal", "cron", "autoscale"],
        help="one part only",
    )
    args = parser.parse_args()
    figures: dict[str, Any] = {
        "machine": machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    runs = 2 if args.quick else 5
    if args.only == "heal":
        figures |= run_heal()
    elif args.only == "cron":
        figures |= run_cron()
    elif args.only == "autoscale":
        figures |= run_autoscale()
    else:
        figures |= core.placement(runs)
        figures |= core.state_ops(1.0 if args.quick else 3.0)
    if args.only not in ("core", "heal", "cron", "autoscale"):
        figures |= run_platform(args.quick, runs)
    print_table(figures)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    if "deploy_vs_hosts" in figures:
        plot(figures, args.plot)


def run_platform(quick: bool, runs: int) -> dict[str, Any]:
    from provisioner.localcloud import control

    started_cloud = control.daemon_pid() is None
    control.up()
    counts = [1, 2, 4] if quick else [1, 2, 4, 8]
    before = {h["id"] for h in plat.cli_json("hosts")}
    plat.ensure_hosts(max(counts))
    app = plat.new_app()
    figures: dict[str, Any] = {}
    try:
        figures |= plat.deploys(app, runs)
        figures |= plat.scale(app, 2 if quick else 3)
        figures |= plat.failed_requests(app)
        figures |= plat.router_overhead(app, 3 if quick else 10)
        figures |= plat.deploy_vs_hosts(app, counts, 2 if quick else 3)
        figures |= plat.ssh_fanout(counts, 10 if quick else 30)
        figures |= heal.host_loss(app)  # last: it kills hosts (the controller replaces them)
    finally:
        plat.destroy(app)
        now = [h["id"] for h in plat.cli_json("hosts") if h["role"] == "runner"]
        extra = [h for h in now if h not in before][: max(0, len(now) - len(before))]
        for host in extra:  # as many as were added, replacements of killed hosts kept
            plat.cli("hosts:remove", host, "--force", "--confirm", host, check=False)
        if started_cloud:
            control.down()
    return figures


def run_heal() -> dict[str, Any]:
    """Only the host-loss figures: two hosts, one app with web=2."""
    from provisioner.localcloud import control

    control.up()
    plat.ensure_hosts(2)
    app = plat.new_app()
    try:
        return heal.host_loss(app)
    finally:
        plat.destroy(app)


def run_cron() -> dict[str, Any]:
    """Only the cron figures: an every-minute job for three minutes."""
    from provisioner.localcloud import control

    control.up()
    plat.ensure_hosts(2)
    app = plat.new_app()
    try:
        plat.timed_deploy(app, 1)
        return cron_bench.start_delays(app)
    finally:
        plat.destroy(app)


def run_autoscale() -> dict[str, Any]:
    """Only the autoscaling figures: two hosts, one slow app, its controller resumed."""
    from provisioner.localcloud import control

    control.up()
    plat.ensure_hosts(2)
    return autoscale.run()


def machine() -> dict[str, Any]:
    import os

    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": pyplatform.release(),
        "python": pyplatform.python_version(),
    }


def print_table(figures: dict[str, Any]) -> None:
    rows: list[tuple[str, str]] = []
    for key, value in figures.items():
        if key in ("machine", "started"):
            continue
        flatten(key, value, rows)
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        sys.stdout.write(f"{key:<{width}}  {value}\n")


def flatten(prefix: str, value: Any, rows: list[tuple[str, str]]) -> None:
    if isinstance(value, dict) and "median" in value:
        rows.append(
            (
                prefix,
                f"median {value['median']}  min {value['min']}  max {value['max']}  (n={value['runs']})",
            )
        )
    elif isinstance(value, dict):
        for key, inner in value.items():
            flatten(f"{prefix}.{key}", inner, rows)
    else:
        rows.append((prefix, str(value)))


def plot(figures: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.stderr.write("matplotlib is not installed: no plot (pip install matplotlib)\n")
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    curve = figures["deploy_vs_hosts"]
    xs = sorted(int(k) for k in curve)
    left.plot(xs, [curve[str(x)]["median"] for x in xs], marker="o")
    left.set(title="warm deploy vs hosts", xlabel="hosts (one web dyno each)", ylabel="seconds")
    left.set_ylim(bottom=0)
    fan = figures.get("ssh_fanout_ms", {})
    fx = sorted(int(k) for k in fan)
    right.plot(fx, [fan[str(x)]["median"] for x in fx], marker="o", color="tab:orange")
    right.set(title="one command on N hosts (pooled SSH)", xlabel="hosts", ylabel="ms")
    right.set_ylim(bottom=0)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    sys.stderr.write(f"plot written to {path}\n")


if __name__ == "__main__":
    main()
