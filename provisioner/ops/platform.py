"""The platform of a target: its network, security groups, key pair, state bucket and load
balancer. `init` makes or completes it, `info` checks it, `destroy` deletes it."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from provisioner.aws import billing
from provisioner.aws.billing import Billed
from provisioner.aws.iam import controller_policy
from provisioner.aws.platform import Platform, load_platform, require_valid_name
from provisioner.aws.policy import cli_policy
from provisioner.aws.state import Documents, bucket_name
from provisioner.aws.teardown import destroy_platform
from provisioner.aws.tlscerts import require_validatable
from provisioner.context import Context
from provisioner.fleet import SIZE_DOC, declared_size
from provisioner.model.tls import Bundle
from provisioner.ops import controller


def init(ctx: Context, ssh_cidr: str | None = None, bundle: Bundle | None = None) -> Platform:
    """Create the platform, or complete it (a second run creates nothing); `created` says
    what this run made. With `bundle`, HTTPS serves that certificate for *.<app domain>.
    Refused up front (nothing made) when the name or the domain could not work on AWS."""
    require_valid_name(ctx.aws, ctx.target)  # existing ones (older, longer names) upgrade
    if bundle is None:
        require_validatable(ctx.aws, ctx.target)
    platform = ctx.build_platform(ssh_cidr=ssh_cidr, bundle=bundle)
    ctx.remember_platform(platform)  # what other operations read
    _upgrade_controllers(ctx)
    return platform


def _upgrade_controllers(ctx: Context) -> None:
    """The controller on every ready runner, as this dynoform has it (a newer one upgrades it)."""
    for outcome in ctx.fleet().install_controllers():
        host = outcome.item.id
        if not outcome.ok or outcome.value is None:
            ctx.say(f"warning: the controller on {host} was not checked: {outcome.error}")
        elif outcome.value.changes:
            ctx.say(f"controller on {host}: installed or upgraded")


def info(ctx: Context) -> Platform:
    """The platform's resources, each checked (NoPlatform when any is missing)."""
    return load_platform(ctx.aws, ctx.target)


def idle_billing(ctx: Context) -> list[Billed]:
    """What of the platform bills while idle (load balancer, hosts, volumes, databases...)."""
    return billing.idle_billing(ctx.aws, ctx.target.platform)


def policy(ctx: Context, controller: bool = False) -> dict[str, Any]:
    """The IAM policy the CLI needs; with controller, the runners' narrower one (scoped to
    this platform's resources, in this account and region)."""
    if not controller:
        return cli_policy()
    account = ctx.aws.account_id()
    bucket = bucket_name(ctx.target.platform, account)
    return controller_policy(ctx.target.platform, ctx.target.region, account, [bucket])


def destroy(ctx: Context, delete_state: bool = False) -> list[str]:
    """Terminate every host and delete the platform's resources; returns what was deleted.

    With delete_state the state bucket goes too, and the Context's store with it: open a new
    Context to go on."""
    _quiesce_controller(ctx)
    done = destroy_platform(ctx.aws, ctx.target, delete_state=delete_state)
    if done and not delete_state:
        ctx.forget_platform()  # the state bucket stays: its record of the platform goes
        # The hosts and their controllers are gone: so are the declared size and the
        # controller's records (a later platform starts from none).
        ctx.store.docs.delete(SIZE_DOC)
        ctx.store.docs.delete_prefix("controller/")
    return done


def declared_hosts(ctx: Context) -> int | None:
    """The number of runners the controller keeps (None until hosts:add declares one)."""
    return declared_size(ctx.store.docs)


def _quiesce_controller(ctx: Context) -> None:
    """Pause the controller first: no host about to go may be replaced."""
    state = Documents(ctx.aws.s3, bucket_name(ctx.target.platform, ctx.aws.account_id()))
    try:  # no state bucket (or none of ours): no controller, and none is made just to ask
        if not state.exists():
            return
    except ClientError:
        return
    if ctx.store.docs.get(SIZE_DOC) is None and not controller.status(ctx, 0).leader:
        return
    if not controller.quiesce(ctx):
        ctx.say("warning: the controller did not confirm its pause; destroying anyway")
