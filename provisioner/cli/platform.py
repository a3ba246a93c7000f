"""`platform`: the network, security groups, key pair, state bucket and load balancer."""

from __future__ import annotations

from pathlib import Path

import typer

from provisioner.cli.common import confirm, emit_json, err, g, out
from provisioner.errors import DynoformError
from provisioner.model.tls import Bundle
from provisioner.ops import platform as ops


def say(message: str) -> None:
    """Status on stderr, one line per message however long (logs and tests grep them)."""
    err.print(message, markup=False, soft_wrap=True, highlight=False)


group = typer.Typer(
    help="The platform a target's hosts and apps live in.\n\nExample: dynoform platform:init",
    no_args_is_help=True,
)

_FIELDS = [
    "name", "target", "region", "cidr", "vpc_id", "subnet_ids", "zones", "runner_sg_id",
    "lb_sg_id", "key_name", "key_path", "bucket", "lb_dns", "lb_arn", "listener_arn",
    "https_listener_arn", "certificate_arn", "declared_hosts",
]  # fmt: skip


def _show(data: dict[str, object]) -> None:
    if g().json:
        emit_json(data)
        return
    for key in (k for k in _FIELDS if k in data):
        value = data[key]
        out.print(f"{key}: {' '.join(map(str, value)) if isinstance(value, list) else value}")
    billed = data.get("idle_billing")
    if isinstance(billed, list):
        out.print("bills while idle:" + ("" if billed else " nothing"))
        for line in billed:
            detail = f" ({line['detail']})" if line["detail"] else ""
            out.print(f"  {line['kind']}: {line['count']}{detail}")


def _bundle(cert: Path | None, key: Path | None) -> Bundle | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise DynoformError("--cert and --key go together", "give both files, or neither")
    from provisioner.ops.certs import read_bundle

    return read_bundle(cert, key)


@group.command("init")
def init(
    ssh_cidr: str = typer.Option(
        None, "--ssh-cidr", help="Who may SSH to hosts (default: this machine)."
    ),
    cert: Path = typer.Option(
        None, "--cert", help="Your own certificate for *.<app domain> (PEM, then intermediates)."
    ),
    key: Path = typer.Option(None, "--key", help="Its private key (PEM, not encrypted)."),
) -> None:
    """Create the platform, or complete it; a second run creates nothing.

    Example: dynoform platform:init --ssh-cidr 203.0.113.7/32
    """
    platform = ops.init(g().ctx, ssh_cidr=ssh_cidr, bundle=_bundle(cert, key))
    for item in platform.created:
        say(f"created {item}")
    say(
        f"platform {platform.name} on {g().target.name}: "
        + (f"{len(platform.created)} resources created" if platform.created else "up to date")
    )
    _show(platform.as_dict())


@group.command("info")
def info() -> None:
    """Show the platform's resources. Example: dynoform platform:info --json"""
    data = ops.info(g().ctx).as_dict()
    data["declared_hosts"] = ops.declared_hosts(g().ctx)
    data["idle_billing"] = [line.as_dict() for line in ops.idle_billing(g().ctx)]
    _show(data)


@group.command("destroy")
def destroy(
    confirm_name: str = typer.Option(None, "--confirm", help="The platform name, to confirm."),
    delete_state: bool = typer.Option(
        False, "--delete-state", help="Also delete the state bucket (apps, releases, slugs)."
    ),
) -> None:
    """Terminate every host and delete the platform's resources.

    Example: dynoform platform:destroy --confirm dynoform
    """
    target = g().target
    what = ", and its state bucket" if delete_state else ""
    confirm(
        f"This terminates every host of platform {target.platform} on {target.name} "
        f"and deletes its network, load balancer, managed add-ons and their backups{what}.",
        expected=target.platform,
        given=confirm_name,
    )
    done = ops.destroy(g().ctx, delete_state=delete_state)
    for item in done:
        say(f"deleted {item}")
    say(f"platform {target.platform} destroyed" if done else "nothing to destroy")


@group.command("policy")
def policy(
    controller: bool = typer.Option(
        False, "--controller", help="The runners' narrower policy, scoped to this platform."
    ),
) -> None:
    """Print the IAM policy dynoform needs (JSON). Example: dynoform platform:policy > policy.json"""
    emit_json(ops.policy(g().ctx, controller=controller))  # a policy is JSON, --json or not


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="platform")
