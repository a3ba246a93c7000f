"""The local target's certificate authority: HTTPS for `*.localhost` without a public CA.

The platform (its wildcard certificate on `local`) and the local cloud (a certificate per app
host, ACM's requested ones) both issue from it, so it lives beside them rather than in either.
Made once and kept in the target's `local.ca_dir` (it survives `local down` / `local up`, so a
CA the user trusted stays trusted): `ca.crt` (public, the file to trust), `ca.key` (0600).
Server certificates it issues are kept in `certs/<sha256 of the DER certificate>.{crt,key}`
(keys 0600), so that `platform:init` imports the same certificate again instead of a new one.

Issuing is pure (cryptography only); the small file helpers are the only I/O.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioner.model.tls import fingerprint

CA_NAME = "dynoform local CA"
CA_DAYS = 3650
CERT_DAYS = 397  # what browsers accept for a server certificate
RENEW_DAYS = 30  # issue a new server certificate this long before the old one expires


@dataclass(frozen=True)
class Issued:
    """A server certificate and its key, PEM."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.cert_pem)


def ca_cert_path(base: Path) -> Path:
    return base / "ca.crt"


# ---------------------------------------------------------------- pure issuing


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(now: datetime.datetime | None = None) -> Issued:
    """A self-signed CA certificate (P-256), constrained to issuing server certificates."""
    now = now or _now()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dynoform"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue(ca: Issued, names: list[str], now: datetime.datetime | None = None) -> Issued:
    """A server certificate for `names` (DNS names, wildcards allowed) signed by `ca`."""
    if not names:
        raise ValueError("a certificate needs at least one name")
    now = now or _now()
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def dns_names(cert_pem: bytes | str) -> list[str]:
    data = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
    cert = x509.load_pem_x509_certificate(data)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.DNSName))


def single_label_wildcards(names: list[str]) -> list[str]:
    """The X of each `*.X` where X is one label (`*.localhost`): OpenSSL, and so curl and
    Python, refuse such wildcards (as browsers do for `*.com`), so hosts under them need
    certificates of their own."""
    return [n[2:] for n in names if n.startswith("*.") and "." not in n[2:]]


def covers(cert_pem: bytes, names: list[str], now: datetime.datetime | None = None) -> bool:
    """True when the certificate names exactly these DNS names and is not about to expire."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    have = sorted(dns_names(cert_pem))
    fresh = cert.not_valid_after_utc - (now or _now()) > datetime.timedelta(days=RENEW_DAYS)
    return have == sorted(names) and fresh


def signed_by(cert_pem: bytes, ca_pem: bytes) -> bool:
    cert = x509.load_pem_x509_certificate(cert_pem)
    ca_cert = x509.load_pem_x509_certificate(ca_pem)
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def server_names(domain: str) -> list[str]:
    """What the local wildcard certificate covers: `*.localhost`, `localhost`, and the
    platform's app domain when it is another one."""
    names = ["*.localhost", "localhost"]
    if domain and domain != "localhost":
        names += [f"*.{domain}", domain]
    return names


# ---------------------------------------------------------------- files


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` atomically with `data`, created with `mode` (never wider for a moment)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def ensure_ca(base: Path) -> Issued:
    """The CA kept in `base`, made on first use (key 0600, directory 0700)."""
    cert_path, key_path = base / "ca.crt", base / "ca.key"
    if cert_path.exists() and key_path.exists():
        return Issued(cert_path.read_bytes(), key_path.read_bytes())
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o700)
    ca = make_ca()
    write_file(key_path, ca.key_pem, 0o600)
    write_file(cert_path, ca.cert_pem, 0o644)
    return ca


def server_cert(names: list[str], base: Path) -> Issued:
    """The newest kept certificate for `names` signed by the current CA, else a new one."""
    ca = ensure_ca(base)
    certs = base / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    certs.chmod(0o700)
    for crt in sorted(certs.glob("*.crt"), key=lambda p: p.stat().st_mtime, reverse=True):
        key = crt.with_suffix(".key")
        pem = crt.read_bytes()
        if key.exists() and covers(pem, names) and signed_by(pem, ca.cert_pem):
            return Issued(pem, key.read_bytes())
    issued = issue(ca, names)
    write_file(certs / f"{issued.fingerprint}.key", issued.key_pem, 0o600)
    write_file(certs / f"{issued.fingerprint}.crt", issued.cert_pem, 0o644)
    return issued
