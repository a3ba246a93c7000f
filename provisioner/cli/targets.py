"""`targets`: where platforms live (the built-in local cloud, or AWS accounts)."""

from __future__ import annotations

from dataclasses import asdict

import typer

from provisioner import targets as tg
from provisioner.cli.common import emit_json, g, out, print_table, status

group = typer.Typer(
    help="Where platforms live.\n\nExample: dynoform targets:add prod --profile work --region eu-west-1",
    invoke_without_command=True,
    no_args_is_help=False,
)


@group.callback()
def list_targets(ctx: typer.Context) -> None:
    """List targets. Example: dynoform targets --json"""
    if ctx.invoked_subcommand is not None:
        return
    rows = [asdict(t) for t in tg.load_targets().values()]
    if g().json:
        emit_json(rows)
        return
    print_table(rows, ["name", "kind", "region", "profile", "platform", "endpoint_url"])


@group.command("add")
def add(
    name: str = typer.Argument(..., help="A name for the target."),
    profile: str = typer.Option(None, "--profile", help="AWS profile (boto3's chain if unset)."),
    region: str = typer.Option("us-east-1", "--region", help="AWS region."),
    platform: str = typer.Option("dynoform", "--platform", help="Platform name (tags, bucket)."),
    endpoint_url: str = typer.Option(None, "--endpoint-url", help="A custom AWS endpoint."),
    vpc_cidr: str = typer.Option(None, "--vpc-cidr", help="VPC CIDR (default 10.42.0.0/16)."),
    domain: str = typer.Option(None, "--domain", help="Apps are served as <app>.<domain>."),
) -> None:
    """Add an AWS target. Example: dynoform targets:add prod --profile work --region eu-west-1"""
    target = tg.Target(
        name=name,
        kind="aws",
        profile=profile,
        region=region,
        platform=platform,
        endpoint_url=endpoint_url,
        vpc_cidr=vpc_cidr,
        domain=domain,
    )
    tg.add_target(target)
    status(f"added target {name} ({region}) to {tg.targets_file()}")


@group.command("remove")
def remove(name: str = typer.Argument(..., help="The target to forget.")) -> None:
    """Forget a target (nothing in AWS changes). Example: dynoform targets:remove prod"""
    tg.remove_target(name)
    status(f"removed target {name}")


@group.command("info")
def info(name: str = typer.Argument("local")) -> None:
    """Show one target. Example: dynoform targets:info prod --json"""
    target = tg.get_target(name)
    if g().json:
        emit_json(asdict(target))
    else:
        for key, value in asdict(target).items():
            out.print(f"{key}: {'' if value is None else value}")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="targets")
