"""`local up`, `local status`, `local down`: the embedded local cloud (root, Linux)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from provisioner.cli.common import emit_json, err, g, out, print_table, status

group = typer.Typer(
    help="The local cloud: moto + real Debian hosts (systemd-nspawn) + HAProxy, on this machine.",
    no_args_is_help=True,
)


@group.callback()
def _local_extra() -> None:
    # Every `local` command runs the local cloud or its CA: the `local` extra, checked first.
    from provisioner.localcloud import require_extra

    require_extra()


@group.command("up")
def up_command() -> None:
    """Start the local cloud in the background and wait until it is ready (idempotent)."""
    from provisioner.localcloud import control

    data = control.up(progress=status)
    data["ca_cert"] = str(_ensure_ca())
    if g().json:
        emit_json(data)
        return
    if data.get("started"):
        status(f"the local cloud is up: {data['endpoint']} (pid {data['pid']})")
    else:
        status(f"the local cloud is already running: {data['endpoint']} (pid {data['pid']})")


@group.command("down")
def down_command() -> None:
    """Stop the local cloud and remove everything it made (its AWS state is in memory: gone)."""
    from provisioner.localcloud import control

    data = control.down(progress=status)
    if g().json:
        emit_json(data)
        return
    if not data["was_running"] and not data["cleaned"]:
        status("the local cloud was not running; nothing to do")
        return
    if data["cleaned"]:
        status(f"removed leftovers: {', '.join(data['cleaned'])}")
    status("the local cloud is down; its AWS resources (held in memory) are gone")


@group.command("status")
def status_command() -> None:
    """What runs: the endpoint, hosts, instances not realised (and why), load balancers."""
    from provisioner.localcloud import control

    data = control.status()
    data["ca_cert"] = _ca_cert()
    if g().json:
        emit_json(data)
        return
    _print_status(data)


def _ensure_ca() -> object:
    """The local CA (made once; kept across `local down` so a trusted CA stays trusted)."""
    from provisioner.localcloud import ca

    ca.ensure_ca()
    return ca.ca_cert_path()


def _ca_cert() -> str | None:
    from provisioner.localcloud import ca

    path = ca.ca_cert_path()
    return str(path) if path.exists() else None


@group.command("trust")
def trust_command() -> None:
    """Add the local CA to this machine's trust store, so curl and browsers accept the
    https:// URLs of apps on the local cloud. Example: dynoform local trust"""
    from provisioner.localcloud import ca

    source = _ensure_ca()
    ca.trust(Path(str(source)))
    status(f"trusted the local CA: {ca.TRUST_PATH} (from {source})")
    if g().json:
        emit_json({"ca_cert": str(source), "trusted": str(ca.TRUST_PATH)})


@group.command("untrust")
def untrust_command() -> None:
    """Remove the local CA from this machine's trust store. Example: dynoform local untrust"""
    from provisioner.localcloud import ca

    removed = ca.untrust()
    status(
        "removed the local CA from the trust store" if removed else "the local CA was not trusted"
    )
    if g().json:
        emit_json({"removed": removed})


def _print_status(data: dict[str, Any]) -> None:
    if not data["running"]:
        err.print(f"the local cloud is not running (state dir {data['state_dir']})")
        if data.get("leftovers"):
            left = "; ".join(f"{k}: {', '.join(v)}" for k, v in data["leftovers"].items())
            err.print(f"a previous run left: {left} (`local up` or `local down` removes them)")
        err.print("start it with `dynoform local up`")
        return
    out.print(f"endpoint   {data.get('endpoint')}")
    out.print(f"pid        {data.get('pid')}")
    out.print(f"state dir  {data.get('state_dir')}")
    out.print(f"ca cert    {data.get('ca_cert')}")
    if data.get("phase"):
        out.print(f"phase      {data['phase']}")
    out.print("")
    print_table(
        data.get("hosts", []),
        ["instance_id", "private_ip", "state", "host", "ssh", "boots"],
        empty="no hosts",
    )
    refused = data.get("not_realised") or []
    if refused:
        out.print("")
        out.print("not realised:")
        print_table(refused, ["instance_id", "private_ip", "state", "reason"])
    lbs = data.get("load_balancers") or []
    if lbs:
        out.print("")
        rows = []
        for lb in lbs:
            listeners = lb.get("listeners") or [{}]
            for listener in listeners:
                rows.append(
                    {
                        "load_balancer": lb.get("name") or lb.get("arn"),
                        "port": listener.get("port"),
                        "local_url": listener.get("local_url"),
                    }
                )
        print_table(rows, ["load_balancer", "port", "local_url"])
    if data.get("load_balancer_error"):
        err.print(f"load balancers: {data['load_balancer_error']}")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="local")
