"""Certificates as users bring them, and an HTTPS client pinned to one CA (tests only)."""

from __future__ import annotations

import datetime
import http.client
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class UserCert:
    leaf: bytes  # PEM
    chain: bytes  # the intermediate, PEM (empty when self-signed)
    key: bytes  # PEM, not encrypted
    root: Path  # the file a client trusts

    def write(self, directory: Path, with_chain: bool = True) -> tuple[Path, Path]:
        """server.crt (leaf, then the intermediate) and server.key, as certs:add takes them."""
        crt, key = directory / "server.crt", directory / "server.key"
        crt.write_bytes(self.leaf + (self.chain if with_chain else b""))
        key.write_bytes(self.key)
        return crt, key


def _cert(subject: str, issuer: str, key: Any, signer: Any, names: list[str] | None) -> bytes:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=names is None, path_length=None), critical=True)
    )
    if names is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
    return builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _pem_key(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def user_cert(directory: Path, names: list[str], chained: bool = True) -> UserCert:
    """A leaf for `names` from a root through an intermediate, as a commercial CA hands them
    out (clients trust only the root); or, with chained=False, a self-signed one."""
    directory.mkdir(parents=True, exist_ok=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    root_file = directory / "user-root.crt"
    if not chained:
        leaf = _cert(names[0], names[0], leaf_key, leaf_key, names)
        root_file.write_bytes(leaf)
        return UserCert(leaf, b"", _pem_key(leaf_key), root_file)
    root_key, mid_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    root = _cert("User Root", "User Root", root_key, root_key, None)
    mid = _cert("User Intermediate", "User Root", mid_key, root_key, None)
    leaf = _cert(names[0], "User Intermediate", leaf_key, mid_key, names)
    root_file.write_bytes(root)
    return UserCert(leaf, mid, _pem_key(leaf_key), root_file)


def tls_get(port: int, host: str, cafile: Path, path: str = "/") -> str:
    """`<status> <body>` of GET over HTTPS to 127.0.0.1:port with SNI and Host `host`,
    verified against `cafile` only; `error <why>` when the handshake or request fails."""
    context = ssl.create_default_context(cafile=str(cafile))
    try:
        conn = http.client.HTTPSConnection(host, port, context=context, timeout=5)
        conn.sock = context.wrap_socket(
            socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname=host
        )
        conn.request("GET", path)
        resp = conn.getresponse()
        answer = f"{resp.status} {resp.read().decode(errors='replace')}"
        conn.close()
    except (OSError, ssl.SSLError) as exc:
        return f"error {exc}"
    return answer
