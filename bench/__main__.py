"""Run the benchmarks and print a table: `python -m bench [--quick] [--json PATH] [--plots DIR]`.

Needs root and the local cloud (started if needed). Creates its own app (and hosts when fewer
than it needs) and removes them after. Benchmarks print figures; they assert nothing: a
second table puts each figure that has a target beside it, met or not. `--only router` runs
the router's figures on loopback (no hosts, no local cloud).
"""

from __future__ import annotations

import argparse
import json
import platform as pyplatform
import sys
import time
from pathlib import Path
from typing import Any

from bench import autoscale, core, heal, routerload
from bench import cron as cron_bench
from bench import deploys as plat
from bench.targets import check_targets, print_targets


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="fewer runs, 1-2-4 hosts")
    parser.add_argument(
        "--hosts",
        type=lambda text: [int(n) for n in text.split(",")],
        help="the host counts of the deploy-vs-hosts curve, e.g. 1,2,4,8 (default 1,2,4 with"
        " --quick, else 1,2,4,8)",
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--plots",
        type=Path,
        default=Path("bench/results"),
        help="where deploy-vs-hosts.png and router-vs-apps.png go",
    )
    parser.add_argument(
        "--only",
        choices=["core", "platform", "router", "heal", "cron", "autoscale"],
        help="one part only",
    )
    args = parser.parse_args()
    figures: dict[str, Any] = {
        "machine": machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    runs = 2 if args.quick else 5
    compile_bytecode()
    if args.only == "router":
        figures |= routerload.run(args.quick)
    elif args.only == "heal":
        figures |= run_heal()
    elif args.only == "cron":
        figures |= run_cron()
    elif args.only == "autoscale":
        figures |= run_autoscale()
    else:
        figures |= core.placement(runs)
        figures |= core.state_ops(1.0 if args.quick else 3.0)
    if args.only is None:
        figures |= routerload.run(args.quick)  # before the hosts: a quiet machine
    if args.only in (None, "platform"):
        figures |= run_platform(args.quick, runs, args.hosts)
    print_table(figures)
    print_targets(check_targets(figures))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    plot(figures, args.plots)


def compile_bytecode() -> None:
    """The package's bytecode, as `pip install` writes it: with PYTHONDONTWRITEBYTECODE set
    (this machine sets it) and a source checkout, every CLI run compiled the modules it
    imported again, ~0.15 s of each deploy's CPU that no installed copy spends."""
    import compileall

    import provisioner

    compileall.compile_dir(Path(provisioner.__file__).parent, quiet=1)


def run_platform(quick: bool, runs: int, counts: list[int] | None = None) -> dict[str, Any]:
    from provisioner.localcloud import control

    started_cloud = control.daemon_pid() is None
    control.up()
    counts = counts or ([1, 2, 4] if quick else [1, 2, 4, 8])
    plat.cli("platform:init")  # a new local cloud has no platform: `hosts` would fail
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


def plot(figures: dict[str, Any], where: Path) -> None:
    """deploy-vs-hosts.png (warm deploy time, and one SSH command, against hosts) and
    router-vs-apps.png (requests/s through the router against apps in it), when measured."""
    if "deploy_vs_hosts" not in figures and "router_vs_apps" not in figures:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.stderr.write("matplotlib is not installed: no plot (pip install matplotlib)\n")
        return
    where.mkdir(parents=True, exist_ok=True)
    if "deploy_vs_hosts" in figures:
        fan = figures.get("ssh_fanout_ms", {})
        fig, axes = plt.subplots(1, 2 if fan else 1, figsize=(10 if fan else 5.5, 4), squeeze=False)
        left = axes[0][0]
        curve = figures["deploy_vs_hosts"]
        xs = sorted(int(k) for k in curve)
        left.plot(xs, [curve[str(x)]["median"] for x in xs], marker="o", label="warm deploy")
        cpu = [curve[str(x)].get("per_host_cpu_s", {}).get("platform", 0.0) for x in xs]
        left.plot(xs, cpu, marker="s", label="platform CPU s, per host")
        cli_cpu = [curve[str(x)].get("cli_cpu_s", 0.0) for x in xs]
        left.plot(xs, cli_cpu, marker="^", label="CLI CPU s")
        left.set(title="warm deploy vs hosts", xlabel="hosts (one web dyno each)", ylabel="seconds")
        left.set_ylim(bottom=0)
        left.legend()
        if fan:
            right = axes[0][1]
            fx = sorted(int(k) for k in fan)
            right.plot(fx, [fan[str(x)]["median"] for x in fx], marker="o", color="tab:orange")
            right.set(title="one command on N hosts (pooled SSH)", xlabel="hosts", ylabel="ms")
            right.set_ylim(bottom=0)
        _save(fig, where / "deploy-vs-hosts.png")
    if "router_vs_apps" in figures:
        fig, ax = plt.subplots(figsize=(5, 4))
        curve = figures["router_vs_apps"]
        xs = sorted(int(k) for k in curve)
        ax.plot(xs, [curve[str(x)]["rps"] for x in xs], marker="o", label="through the router")
        direct = figures.get("router_vs_direct", {}).get("direct_http", {}).get("rps")
        if direct:
            ax.axhline(direct, color="tab:gray", linestyle="--", label="direct (1 target)")
        ax.set_xscale("log")
        ax.set(title="router throughput vs apps (HTTP)", xlabel="apps", ylabel="requests/s")
        ax.set_ylim(bottom=0)
        ax.legend()
        _save(fig, where / "router-vs-apps.png")
    plt.close("all")


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    sys.stderr.write(f"plot written to {path}\n")


if __name__ == "__main__":
    main()
