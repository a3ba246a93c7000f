"""`domains`: custom hostnames routed to an app, beside <app>.<platform domain>."""

from __future__ import annotations

from dataclasses import replace

import typer

from provisioner.cli.common import AppOption, emit_json, g, print_table, resolve_app, status
from provisioner.errors import DynoformError
from provisioner.model.names import normalise_domain, validate_domain
from provisioner.ops import router

group = typer.Typer(
    help="Custom domains.\n\nExample: dynoform domains:add www.example.com -a myapp",
    invoke_without_command=True,
)


def _validate(domain: str) -> str:
    return validate_domain(domain, g().target.app_domain)


@group.callback()
def list_domains(ctx: typer.Context, app: str = AppOption) -> None:
    """List an app's hostnames and their certificates. Example: dynoform domains -a myapp --json"""
    if ctx.invoked_subcommand is not None:
        return
    from provisioner.ops import certs

    name = resolve_app(app)
    g().store.app(name)
    rows = [
        {
            "hostname": f"{name}.{g().target.app_domain}",
            "kind": "default",
            "certificate": "platform wildcard",
        },
        *certs.domain_rows(g().ctx, name),
    ]
    if g().json:
        emit_json(rows)
    else:
        print_table(rows, ["hostname", "kind", "certificate"])


@group.command("add")
def add(domain: str = typer.Argument(...), app: str = AppOption) -> None:
    """Route a hostname to the app and give it an HTTPS certificate.

    Example: dynoform domains:add www.example.com -a myapp"""
    from provisioner.aws.router import app_hostnames
    from provisioner.ops import certs, router
    from provisioner.ops.domains import claim

    name, host = resolve_app(app), _validate(domain)
    store = g().store
    domains = list(store.app(name).domains)
    known = host in domains
    app_hostnames(name, g().target.app_domain, [*domains, host])  # room in the rule?
    claim(store, name, host)  # the one owner, or an error naming it; before any rule changes
    record = store.update_app(name, lambda a: replace(a, domains=tuple(sorted({*a.domains, host}))))
    router.sync_rules(g().ctx, record)
    status(f"{host} is already a domain of {name}" if known else f"added {host} to {name}")
    for line in certs.sync(g().ctx, name, status):
        status(line)
    status(router.dns_hint(g().ctx, host))


@group.command("remove")
def remove(domain: str = typer.Argument(...), app: str = AppOption) -> None:
    """Stop routing a hostname (its automatic certificate goes too).

    Example: dynoform domains:remove www.example.com -a myapp"""
    from provisioner.ops import certs

    name, host = resolve_app(app), normalise_domain(domain)
    store = g().store
    listed = host in store.app(name).domains
    # A name from before today's rules may be listed; one that is not must be a valid name,
    # and may be only claimed (an interrupted domains:add): then the claim goes.
    if not listed and store.domain_owner(_validate(domain)) != name:
        raise DynoformError(f"{host} is not a domain of {name}", f"dynoform domains -a {name}")
    if listed:
        record = store.update_app(
            name, lambda a: replace(a, domains=tuple(x for x in a.domains if x != host))
        )
        router.sync_rules(g().ctx, record)
    store.release_domain(host, name)  # after the rule: the name is free once nothing routes it
    status(f"removed {host} from {name}")
    for line in certs.sync(g().ctx, name, status):
        status(line)


@group.command("wait")
def wait(
    domains: list[str] = typer.Argument(None, help="Domains to wait for (default: all)."),
    app: str = AppOption,
    timeout: int = typer.Option(1800, help="Give up after this many seconds."),
) -> None:
    """Wait until ACM has issued the domains' certificates, and serve them.

    Example: dynoform domains:wait www.example.com -a myapp"""
    from provisioner.ops import certs

    name = resolve_app(app)
    hosts = [normalise_domain(d) for d in domains or []]
    for line in certs.wait(g().ctx, name, hosts, timeout, status):
        status(line)
    status(f"{', '.join(hosts) or 'every domain of ' + name}: certificate issued and served")


def register(root: typer.Typer) -> None:
    root.add_typer(group, name="domains")
