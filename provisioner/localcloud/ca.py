"""The local cloud's certificate authority: HTTPS for `*.localhost` without a public CA.

Made once and kept under `<local state dir>/ca/` (it survives `local down` / `local up`, so a
CA the user trusted stays trusted): `ca.crt` (public, the file to trust), `ca.key` (0600).
Server certificates it issues are kept in `certs/<sha256 of the DER certificate>.{crt,key}`
(keys 0600), so that `platform:init` imports the same certificate again instead of a new one.

Issuing is pure (cryptography only); the small file helpers are the only I/O.
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import os
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioner import paths
from provisioner.errors import DynoformError

CA_NAME = "dynoform local CA"
CA_DAYS = 3650
CERT_DAYS = 397  # what browsers accept for a server certificate
RENEW_DAYS = 30  # issue a new server certificate this long before the old one expires
TRUST_PATH = Path("/usr/local/share/ca-certificates/dynoform-local.crt")


@dataclass(frozen=True)
class Issued:
    """A server certificate and its key, PEM."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.cert_pem)


def ca_dir() -> Path:
    return paths.local_state_dir() / "ca"


def ca_cert_path(base: Path | None = None) -> Path:
    return (base or ca_dir()) / "ca.crt"


def fingerprint(cert_pem: bytes | str) -> str:
    """sha256 of the DER form: the same however the PEM is wrapped or which chain follows it."""
    data = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
    cert = x509.load_pem_x509_certificate(data)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


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


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def ensure_ca(base: Path | None = None) -> Issued:
    """The local CA, made on first use and kept (key 0600, directory 0700)."""
    base = base or ca_dir()
    cert_path, key_path = base / "ca.crt", base / "ca.key"
    if cert_path.exists() and key_path.exists():
        return Issued(cert_path.read_bytes(), key_path.read_bytes())
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o700)
    ca = make_ca()
    _write(key_path, ca.key_pem, 0o600)
    _write(cert_path, ca.cert_pem, 0o644)
    return ca


def server_cert(names: list[str], base: Path | None = None) -> Issued:
    """The newest kept certificate for `names` signed by the current CA, else a new one."""
    base = base or ca_dir()
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
    _write(certs / f"{issued.fingerprint}.key", issued.key_pem, 0o600)
    _write(certs / f"{issued.fingerprint}.crt", issued.cert_pem, 0o644)
    return issued


# ---------------------------------------------------------------- the machine's trust store


def _update_trust_store() -> None:
    tool = shutil.which("update-ca-certificates")
    if tool is None:
        raise DynoformError(
            "update-ca-certificates is not installed (dynoform local trust knows Debian's store)",
            f"trust {ca_cert_path()} by hand, or pass it to curl with --cacert",
        )
    result = subprocess.run([tool], capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise DynoformError(
            f"update-ca-certificates failed: {(result.stderr or result.stdout).strip()}",
            "run it by hand to see why",
        )


def trust(source: Path, dest: Path = TRUST_PATH) -> None:
    """Install the CA certificate where Debian's update-ca-certificates picks it up."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    _write(dest, source.read_bytes(), 0o644)
    _update_trust_store()


def untrust(dest: Path = TRUST_PATH) -> bool:
    """Remove it again; True when it was there."""
    if not dest.exists():
        return False
    dest.unlink()
    _update_trust_store()
    return True


def router_connection(
    host: str, port: int, scheme: str = "https", timeout: float = 5.0
) -> http.client.HTTPConnection:
    """A connection to the local router on loopback for the app at `host`.

    HTTPS sends the app's name as SNI and checks its certificate against the local CA only, so
    `<app>.localhost` need not resolve and nothing else is trusted. Callers send `Host: host`.
    """
    if scheme != "https":
        return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    context = ssl.create_default_context(cafile=str(ca_cert_path()))
    conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    conn.sock = context.wrap_socket(raw, server_hostname=host)
    return conn
