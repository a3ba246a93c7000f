"""HTTPS certificates of an app's custom domains: `certs`, `certs:add`, `certs:remove`, and
the automatic certificates `domains:add` asks ACM for.

Every command ends with `sync`: the pure plan (provisioner.model.tls) of what to request,
delete, attach and detach, carried out on ACM and the platform's HTTPS listener. On AWS an
automatic certificate waits for DNS validation (records put in Route 53 when this account has
the zone, else printed); the local cloud's ACM issues it at once from the local CA.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from provisioner.aws import acmdns
from provisioner.aws.acm import AppCertificates
from provisioner.context import Context, quiet
from provisioner.errors import DynoformError, NoPlatform
from provisioner.model.tls import (
    AUTO,
    CUSTOM,
    DEAD,
    AppCert,
    Bundle,
    check_app_cert_names,
    covered_by,
    domain_status,
    find,
    fingerprint,
    parse_bundle,
    plan_certificates,
)

Say = Callable[[str], None]
WAIT_POLL_SECONDS = 10.0


@dataclass(frozen=True)
class CertRow:
    """One of an app's certificates as `certs` lists it, and which custom domains it covers."""

    id: str
    kind: str
    names: list[str]
    domains: list[str]
    status: str
    serving: bool
    expires: str
    issuer: str
    arn: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CertAdded:
    """certs:add: the certificate, and the app's domains it does not cover."""

    cert: CertRow
    uncovered: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**self.cert.as_dict(), "uncovered": self.uncovered}


def app_certificates(ctx: Context, app: str, create: bool = True) -> AppCertificates:
    """The app's certificates, served by the HTTPS listener of its load balancer (shard)."""
    platform = ctx.platform(create)
    listener = ctx.router().listeners_of(app).rules if platform.https_listener_arn else ""
    return AppCertificates(ctx.aws, platform, listener)


def _every_listener(ctx: Context, app: str) -> list[AppCertificates]:
    """The app's certificates as each load balancer (shard) serves them."""
    platform = ctx.platform(create=False)
    return [
        AppCertificates(ctx.aws, platform, s.https_listener_arn)
        for s in platform.all_shards
        if s.https_listener_arn
    ]


def _domains(ctx: Context, app: str) -> list[str]:
    return list(ctx.store.app(app).domains)


def sync(ctx: Context, app: str, certs: AppCertificates | None = None) -> list[str]:
    """Bring the app's certificates in line with its domains; returns what changed (and says
    what the user must do for DNS validation)."""
    return _sync(ctx, app, certs or app_certificates(ctx, app), ctx.say)


def _sync(ctx: Context, app: str, certs: AppCertificates, say: Say) -> list[str]:
    """sync, saying through `say`. A second pass attaches certificates issued during the
    first (the local cloud's at once)."""
    domains = _domains(ctx, app)
    done: list[str] = []
    for _ in range(2):
        mine = certs.of_app(app)
        plan = plan_certificates(domains, mine, certs.attached())
        if plan.empty:
            break
        changed, requested = certs.apply(app, plan)
        done += changed
        for domain, arn in requested.items():
            _announce_validation(ctx, certs, app, domain, arn, say)
    for note in plan.notes:
        say(note)
    return done


def _announce_validation(
    ctx: Context, certs: AppCertificates, app: str, domain: str, arn: str, say: Say
) -> None:
    """Put a new certificate's DNS validation records in Route 53, or tell the user them."""
    records = certs.pending_records(arn)
    if records is None:
        return  # issued already (the local cloud's ACM)
    zone = acmdns.hosted_zone(ctx.aws, domain)
    if records and zone:
        acmdns.put_records(ctx.aws, zone, records)
        say(f"{domain}: DNS validation records put in Route 53 zone {zone}")
    elif records:
        say(f"{domain}: add this DNS record so that ACM issues its certificate:")
        for r in records:
            say(f"  {r['Name']} {r['Type']} {r['Value']}")
    say(f"then run: dynoform domains:wait {domain} -a {app}")


def rows(ctx: Context, app: str) -> list[CertRow]:
    """What `certs` lists: one row per certificate, and which custom domains it covers."""
    certs = app_certificates(ctx, app, create=False)
    serving = certs.attached()
    domains = _domains(ctx, app)
    return [_row(c, c.arn in serving, domains) for c in certs.of_app(app)]


def _row(cert: AppCert, serving: bool, domains: list[str]) -> CertRow:
    return CertRow(
        id=cert.id,
        kind=cert.kind,
        names=list(cert.names),
        domains=[d for d in domains if covered_by(d, [cert])],
        status=cert.status.lower(),
        serving=serving,
        expires=cert.not_after,
        issuer=cert.issuer,
        arn=cert.arn,
    )


def covered(ctx: Context, app: str, domain: str) -> bool:
    """Whether a certificate the app has already covers the domain (it needs no new one)."""
    mine = [c for c in app_certificates(ctx, app).of_app(app) if c.status not in DEAD]
    return covered_by(domain, mine) is not None


def domain_states(ctx: Context, app: str) -> dict[str, str]:
    """Each custom domain of the app (in its record's order) -> its certificate's state."""
    domains = _domains(ctx, app)
    if not domains:
        return {}
    certs = app_certificates(ctx, app, create=False)
    mine, serving = certs.of_app(app), certs.attached()
    return {d: domain_status(d, mine, serving) for d in domains}


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DynoformError(f"cannot read the {what} {path}: {exc.strerror}") from None


def read_bundle(cert_file: Path, key_file: Path) -> Bundle:
    """A certificate and key from files, checked (one clear line when they are not fit)."""
    return parse_bundle(_read(cert_file, "certificate file"), _read(key_file, "key file"))


def read_app_bundle(ctx: Context, cert_file: Path, key_file: Path) -> Bundle:
    """read_bundle for an app's own certificate: none of its names the platform's."""
    bundle = read_bundle(cert_file, key_file)
    check_app_cert_names(bundle.names, ctx.target.app_domain)
    return bundle


def add(ctx: Context, app: str, cert_file: Path, key_file: Path) -> CertAdded:
    """Import a certificate the user brings and serve it for the app's domains it covers."""
    bundle = read_app_bundle(ctx, cert_file, key_file)
    certs = app_certificates(ctx, app)
    say = ctx.say
    same = _already_imported(certs, app, bundle.cert_pem)
    if same is not None:
        say(f"{app} already has this certificate ({same.id}); nothing to change")
        cert = same
    else:
        arn = certs.import_bundle(app, bundle)
        say(f"imported the certificate for {', '.join(bundle.names)} into ACM")
        for line in sync(ctx, app, certs):
            say(line)
        cert = next(c for c in certs.of_app(app) if c.arn == arn)
    domains = _domains(ctx, app)
    uncovered = [d for d in domains if not covered_by(d, [cert])]
    if len(uncovered) == len(domains):
        say(f"note: it covers none of {app}'s domains yet: dynoform domains:add NAME -a {app}")
    return CertAdded(_row(cert, cert.arn in certs.attached(), domains), uncovered)


def update(ctx: Context, app: str, ident: str, cert_file: Path, key_file: Path) -> CertRow:
    """Renew one of your certificates in place: the listener keeps serving it, now the new one."""
    bundle = read_app_bundle(ctx, cert_file, key_file)
    certs = app_certificates(ctx, app)
    cert = _yours(
        certs, app, ident, f"ACM renews it; to serve your own: certs:add CERT KEY -a {app}"
    )
    certs.reimport(app, cert.arn, bundle)
    ctx.say(f"replaced certificate {cert.id} with the one for {', '.join(bundle.names)}")
    for line in sync(ctx, app, certs):
        ctx.say(line)
    renewed = next(c for c in certs.of_app(app) if c.arn == cert.arn)
    return _row(renewed, renewed.arn in certs.attached(), _domains(ctx, app))


def _yours(certs: AppCertificates, app: str, ident: str, hint: str) -> AppCert:
    """One of the certificates the user added; an automatic one is refused with the hint
    (`{domain}` in it names the certificate's domain)."""
    cert = find(certs.of_app(app), ident)
    if cert.kind == AUTO:
        raise DynoformError(
            f"certificate {cert.id} is the automatic one of {cert.domain}",
            hint.format(domain=cert.domain),
        )
    return cert


def _already_imported(certs: AppCertificates, app: str, cert_pem: bytes) -> AppCert | None:
    wanted = fingerprint(cert_pem)
    for cert in certs.of_app(app):
        if cert.kind == CUSTOM and cert.status not in DEAD:
            held = certs.acm.get_certificate(CertificateArn=cert.arn)["Certificate"]
            if fingerprint(held) == wanted:
                return cert
    return None


def remove(ctx: Context, app: str, ident: str) -> list[str]:
    """Stop serving a custom certificate and delete it; domains it covered get automatic
    certificates again."""
    certs = app_certificates(ctx, app)
    cert = _yours(certs, app, ident, f"it goes with the domain: domains:remove {{domain}} -a {app}")
    certs.detach([cert.arn])
    certs.delete(cert.arn)
    return [f"removed certificate {cert.id} ({', '.join(cert.names)})", *sync(ctx, app, certs)]


def wait(ctx: Context, app: str, domains: list[str], timeout: float) -> list[str]:
    """Wait until every given domain (default: all) has an issued certificate, then serve it."""
    certs = app_certificates(ctx, app)
    have = _domains(ctx, app)
    unknown = [d for d in domains if d not in have]
    if unknown:
        raise DynoformError(
            f"{', '.join(unknown)} is not a domain of {app}", f"dynoform domains -a {app}"
        )
    wanted = domains or have
    deadline = time.monotonic() + timeout
    done: list[str] = []
    while True:
        done += _sync(ctx, app, certs, quiet)
        mine, serving = certs.of_app(app), certs.attached()
        states = {d: domain_status(d, mine, serving) for d in wanted}
        if all(s.endswith("(serving)") for s in states.values()):
            return done
        if time.monotonic() > deadline:
            pending = ", ".join(f"{d} ({s})" for d, s in states.items() if "(serving)" not in s)
            raise DynoformError(
                f"still waiting for certificates: {pending}",
                "check the DNS validation records, then run domains:wait again",
            )
        ctx.say("waiting for ACM: " + ", ".join(f"{d} {s}" for d, s in states.items()))
        time.sleep(WAIT_POLL_SECONDS)


def destroy_app_certs(ctx: Context, app: str) -> int:
    """Detach and delete every certificate of the app (apps:destroy); returns how many.
    Without a platform there are none."""
    try:
        served = _every_listener(ctx, app)
    except NoPlatform:
        return 0
    if not served:
        return 0
    mine = served[0].of_app(app)
    _detach_everywhere(served, {c.arn for c in mine})
    for cert in mine:
        served[0].delete(cert.arn)
    return len(mine)


def _detach_everywhere(served: list[AppCertificates], arns: set[str]) -> None:
    """Stop serving the certificates on every load balancer (the app's target group, which
    tells its shard, may be gone already)."""
    for certs in served:
        certs.detach(sorted(arns & certs.attached()))


def rename_app_certs(ctx: Context, old: str, new: str) -> None:
    """The old name's certificates become the new one's; they stop being served until the new
    name's rules are made (it may be placed on another load balancer): then sync serves them."""
    served = _every_listener(ctx, old)
    if not served:
        return
    mine = served[0].of_app(old)
    _detach_everywhere(served, {c.arn for c in mine})
    for cert in mine:
        served[0].retag(cert, new)
