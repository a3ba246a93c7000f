"""Certificates for an app's custom domains (pure: no I/O).

Two kinds, as on Heroku: *automatic* certificates, one per custom domain, requested from ACM
when the domain is added (the local cloud's ACM issues them from its CA at once), and *custom*
certificates the user brings (`certs:add CERT KEY`). A domain a custom certificate covers needs
no automatic one. `plan_certificates` says what to request, delete, attach to and detach from
the HTTPS listener so that every custom domain has a certificate; run twice, it plans nothing.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from provisioner.errors import ValidationError

if TYPE_CHECKING:  # imported where used: ~10 ms that commands reading no certificate skip
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

AUTO = "auto"
CUSTOM = "custom"
# ACM statuses after which a certificate will never serve: an automatic one is requested again.
DEAD = frozenset({"EXPIRED", "REVOKED", "FAILED", "VALIDATION_TIMED_OUT", "INACTIVE"})
EC_CURVES = ("secp256r1", "secp384r1")  # what ALB serves
MIN_RSA_BITS = 2048


def fingerprint(cert_pem: bytes | str) -> str:
    """sha256 of the DER form: the same however the PEM is wrapped or which chain follows it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    data = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
    cert = x509.load_pem_x509_certificate(data)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A certificate the user brings, checked and ready to import into ACM."""

    cert_pem: bytes  # the leaf
    chain_pem: bytes  # intermediates that followed it in the file (may be empty)
    key_pem: bytes
    names: tuple[str, ...]
    not_after: datetime.datetime
    issuer: str

    def import_args(self) -> dict[str, bytes]:
        """ACM import_certificate's Certificate, PrivateKey and (if any) CertificateChain."""
        args = {"Certificate": self.cert_pem, "PrivateKey": self.key_pem}
        if self.chain_pem:
            args["CertificateChain"] = self.chain_pem
        return args


@dataclass(frozen=True)
class AppCert:
    """One of an app's certificates as ACM and the listener know it."""

    arn: str
    kind: str  # AUTO or CUSTOM
    names: tuple[str, ...]
    status: str  # ACM's: ISSUED, PENDING_VALIDATION, ...
    domain: str = ""  # AUTO: the custom domain it was requested for
    not_after: str = ""
    issuer: str = ""
    created: str = ""

    @property
    def id(self) -> str:
        """ACM's certificate id (the end of the ARN): what `certs:remove` takes."""
        return self.arn.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class CertPlan:
    request: tuple[str, ...] = ()  # domains that get an automatic certificate
    delete: tuple[str, ...] = ()  # certificate ARNs (detached first)
    attach: tuple[str, ...] = ()
    detach: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def empty(self) -> bool:
        return not (self.request or self.delete or self.attach or self.detach)


# ---------------------------------------------------------------- names


def covers(name: str, host: str) -> bool:
    """Whether a certificate name covers a hostname: exactly, or `*.rest` one label deep."""
    name, host = name.lower().rstrip("."), host.lower().rstrip(".")
    if not name.startswith("*."):
        return name == host
    label, _, rest = host.partition(".")
    return bool(label) and rest == name[2:]


def check_app_cert_names(names: Iterable[str], platform_domain: str) -> None:
    """An app's own certificate may not name the platform's domain or any name under it: the
    listener picks certificates by SNI, so it could answer for another app's host."""
    platform = platform_domain.lower().rstrip(".")
    for name in names:
        plain = name.lower().rstrip(".").removeprefix("*.")
        if plain == platform or plain.endswith("." + platform) or covers(name, platform):
            raise ValidationError(
                f"certificate name {name!r}",
                f"is the platform's domain {platform!r} or under it: app certificates are for "
                "the app's custom domains",
            )


def covered_by(host: str, certs: Iterable[AppCert]) -> AppCert | None:
    """The first certificate whose names cover the host."""
    for cert in certs:
        if any(covers(name, host) for name in cert.names):
            return cert
    return None


# ---------------------------------------------------------------- a bundle from files


def _certificates(data: bytes) -> list[x509.Certificate]:
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise ValidationError("certificate file", "must hold a PEM certificate (BEGIN CERTIFICATE)")
    return certs


def _private_key(data: bytes) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ValidationError(
            "key file", "must not be encrypted (openssl pkey -in KEY -out plain.key)"
        ) from None
    except ValueError:
        raise ValidationError(
            "key file", "must hold a PEM private key (BEGIN PRIVATE KEY)"
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValidationError("key", f"RSA keys need at least {MIN_RSA_BITS} bits")
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in EC_CURVES:
        return key
    raise ValidationError("key", "must be RSA (2048 bits or more) or ECDSA P-256/P-384")


def _public_der(key: Any) -> bytes:
    """The key's SubjectPublicKeyInfo (what a certificate and its private key share)."""
    from cryptography.hazmat.primitives import serialization

    return bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def cert_names(cert: x509.Certificate) -> list[str]:
    """DNS names a certificate is valid for: its SANs, else its common name."""
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = list(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = []
    if not names:
        names = [
            str(attr.value)
            for attr in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        ]
    return [n.lower() for n in names]


def _pem(certs: Sequence[x509.Certificate]) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def parse_bundle(cert_data: bytes, key_data: bytes, now: datetime.datetime | None = None) -> Bundle:
    """Check a certificate file (leaf first, then any intermediates) and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    certs = _certificates(cert_data)
    leaf = certs[0]
    key = _private_key(key_data)
    if _public_der(leaf.public_key()) != _public_der(key.public_key()):
        raise ValidationError("key file", "does not belong to the certificate (public keys differ)")
    now = now or datetime.datetime.now(datetime.UTC)
    if leaf.not_valid_after_utc <= now:
        raise ValidationError(
            "certificate", f"expired on {leaf.not_valid_after_utc:%Y-%m-%d}; renew it first"
        )
    names = cert_names(leaf)
    if not names:
        raise ValidationError("certificate", "names no DNS name (subjectAltName or CN)")
    issuer = leaf.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Bundle(
        cert_pem=_pem([leaf]),
        chain_pem=_pem(certs[1:]),
        key_pem=key_pem,
        names=tuple(names),
        not_after=leaf.not_valid_after_utc,
        issuer=str(issuer[0].value) if issuer else leaf.issuer.rfc4514_string(),
    )


# ---------------------------------------------------------------- what to change


def _keep_auto(domains: Sequence[str], certs: Sequence[AppCert]) -> dict[str, AppCert]:
    """Per domain that needs one, the automatic certificate to keep: issued before pending,
    then the newest. Domains a live custom certificate covers need none."""
    customs = [c for c in certs if c.kind == CUSTOM and c.status not in DEAD]
    keep: dict[str, AppCert] = {}
    for domain in domains:
        if covered_by(domain, customs):
            continue
        candidates = [c for c in certs if c.kind == AUTO and c.domain == domain]
        candidates = [c for c in candidates if c.status not in DEAD]
        if candidates:
            keep[domain] = max(candidates, key=lambda c: (c.status == "ISSUED", c.created, c.arn))
    return keep


def plan_certificates(
    domains: Sequence[str], certs: Sequence[AppCert], attached: Iterable[str]
) -> CertPlan:
    """What makes the listener hold exactly the app's usable certificates, one automatic
    certificate per custom domain not covered by a custom one, and no automatic leftovers."""
    keep = _keep_auto(domains, certs)
    kept = {c.arn for c in keep.values()}
    delete = [c.arn for c in certs if c.kind == AUTO and c.arn not in kept]
    request = [d for d in domains if d not in keep and not _custom_covers(d, certs)]
    usable = [c for c in certs if c.status == "ISSUED" and c.arn not in delete]
    wanted = {c.arn for c in usable}
    mine = {c.arn for c in certs}
    have = set(attached) & mine
    notes = [
        f"{d}: certificate pending ({keep[d].status.lower().replace('_', ' ')})"
        for d in domains
        if d in keep and keep[d].status != "ISSUED"
    ]
    return CertPlan(
        request=tuple(request),
        delete=tuple(sorted(delete)),
        attach=tuple(sorted(wanted - have)),
        detach=tuple(sorted(have - wanted)),
        notes=tuple(notes),
    )


def _custom_covers(domain: str, certs: Sequence[AppCert]) -> bool:
    return (
        covered_by(domain, [c for c in certs if c.kind == CUSTOM and c.status not in DEAD])
        is not None
    )


def domain_status(domain: str, certs: Sequence[AppCert], attached: Iterable[str]) -> str:
    """What `domains` shows for a custom domain's certificate."""
    on = set(attached)
    live = [c for c in certs if c.status not in DEAD]
    custom = covered_by(domain, [c for c in live if c.kind == CUSTOM])
    auto = [c for c in live if c.kind == AUTO and c.domain == domain]
    cert = custom or (max(auto, key=lambda c: c.status == "ISSUED") if auto else None)
    if cert is None:
        return "no certificate"
    state = "issued" if cert.status == "ISSUED" else cert.status.lower().replace("_", " ")
    served = " (serving)" if cert.arn in on else ""
    return f"{cert.kind}: {state}{served}"


def find(certs: Sequence[AppCert], ident: str) -> AppCert:
    """A certificate by its id, a unique prefix of it (6 or more characters), or its ARN."""
    ident = ident.strip()
    exact = [c for c in certs if ident in (c.arn, c.id)]
    if exact:
        return exact[0]
    matches = [c for c in certs if len(ident) >= 6 and c.id.startswith(ident)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValidationError(f"certificate {ident!r}", "is ambiguous: give more of its id")
    raise ValidationError(f"certificate {ident!r}", "is not one of the app's (see dynoform certs)")
