"""Custom domains: which app owns a name (a claim document in the state store decides it),
the router rules that send it to the app, and its automatic HTTPS certificate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from provisioner.context import Context
from provisioner.errors import NotFound
from provisioner.model.app import App
from provisioner.model.names import normalise_domain, validate_domain
from provisioner.ops import certs, router
from provisioner.store import Store


@dataclass(frozen=True)
class DomainRow:
    """A hostname of the app as `domains` lists it: its default one, or a custom one."""

    hostname: str
    kind: str  # "default" or "custom"
    certificate: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DomainAdded:
    domain: str
    dns_hint: str  # where the domain's DNS must point
    cert_lines: list[str]  # what changed about the app's certificates


@dataclass(frozen=True)
class DomainRemoved:
    domain: str
    cert_lines: list[str]


@dataclass(frozen=True)
class DomainsServed:
    domains: list[str]  # those waited for; empty: every domain of the app
    cert_lines: list[str]


# the app record's domains (the one place that reads or writes them) ---------------------------
def _listed(store: Store, app: str) -> list[str]:
    return list(store.app(app).domains)


def _change_domains(ctx: Context, app: str, change: Callable[[list[str]], list[str]]) -> App:
    """Change the app's domains in its record, then its router rule to match."""
    record = ctx.store.update_app(app, lambda a: replace(a, domains=tuple(change(list(a.domains)))))
    router.sync_rules(ctx, record)
    return record


# operations ------------------------------------------------------------------------------------
def list_domains(ctx: Context, app: str) -> list[DomainRow]:
    """The app's default hostname, then its custom domains with their certificate's state."""
    ctx.store.app(app)  # NotFound before anything else
    default = DomainRow(f"{app}.{ctx.target.app_domain}", "default", "platform wildcard")
    states = certs.domain_states(ctx, app)
    return [default, *(DomainRow(d, "custom", s) for d, s in states.items())]


def add(ctx: Context, app: str, domain: str) -> DomainAdded:
    """Route a custom domain to the app and give it an automatic certificate (again, after an
    interrupted add: every step is idempotent)."""
    host = validate_domain(domain, ctx.target.app_domain)
    record = ctx.store.app(app)
    domains = list(record.domains)
    if host not in domains:  # room on its load balancer? (rules, certificates): before any change
        more = 0 if certs.covered(ctx, app, host) else 1
        ctx.router().check_room(app, [*domains, host], record.plain_http, more)
    claimed = claim(ctx.store, app, host)  # the one owner, or an error naming it
    try:
        _change_domains(ctx, app, lambda listed: sorted({*listed, host}))
    except BaseException:
        if host not in domains:  # nothing half-made: a domain no rule routes blocks no deploy
            ctx.store.update_app(
                app, lambda a: replace(a, domains=tuple(d for d in a.domains if d != host))
            )
            if claimed:
                ctx.store.release_domain(host, app)
        raise
    ctx.say(f"{host} is already a domain of {app}" if host in domains else f"added {host} to {app}")
    cert_lines = certs.sync(ctx, app)
    return DomainAdded(host, router.dns_hint(ctx, app, host), cert_lines)


def remove(ctx: Context, app: str, domain: str) -> DomainRemoved:
    """Stop routing a domain to the app and let go of its claim; its automatic certificate
    goes too."""
    host = normalise_domain(domain)
    listed = host in _listed(ctx.store, app)
    # A name from before today's rules may be listed; one that is not must be a valid name,
    # and may be only claimed (an interrupted domains:add): then the claim goes.
    if not listed:
        valid = validate_domain(domain, ctx.target.app_domain)
        if ctx.store.domain_owner(valid) != app:
            raise NotFound(f"{host} is not a domain of {app}", f"dynoform domains -a {app}")
    if listed:
        _change_domains(ctx, app, lambda names: [x for x in names if x != host])
    ctx.store.release_domain(host, app)  # after the rule: the name is free once nothing routes it
    ctx.say(f"removed {host} from {app}")
    return DomainRemoved(host, certs.sync(ctx, app))


def wait(ctx: Context, app: str, domains: list[str], timeout: float) -> DomainsServed:
    """Wait until ACM has issued the domains' certificates (default: every domain's) and the
    router serves them; saying how it goes."""
    hosts = [normalise_domain(d) for d in domains]
    return DomainsServed(hosts, certs.wait(ctx, app, hosts, timeout))


def claim(store: Store, app: str, domain: str) -> bool:
    """Claim `domain` for `app` (True if newly claimed; raises naming another owner).

    Apps that added a domain before claims existed hold it only in their record: such an
    owner gets its claim first, so the conditional create decides for everyone alike."""
    if store.domain_owner(domain) is None:
        legacy = _listed_by_other(store, app, domain)
        if legacy is not None:
            store.claim_domain(domain, legacy)
    return store.claim_domain(domain, app)


def _listed_by_other(store: Store, app: str, domain: str) -> str | None:
    for other in store.apps():
        try:
            listed = other != app and domain in _listed(store, other)
        except NotFound:
            continue  # destroyed meanwhile
        if listed:
            return other
    return None
