"""The local CA on this machine: trusting it (Debian's store), and talking HTTPS to the local
router with it. The CA itself (issuing, its files) is provisioner.authority; it is kept in the
local cloud's state directory."""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

from provisioner import authority
from provisioner.errors import DynoformError
from provisioner.localcloud import files

TRUST_PATH = Path("/usr/local/share/ca-certificates/dynoform-local.crt")


def ca_dir() -> Path:
    return files().ca_dir


def ca_cert_path() -> Path:
    return authority.ca_cert_path(ca_dir())


def ensure_ca() -> authority.Issued:
    """The local CA, made on first use."""
    return authority.ensure_ca(ca_dir())


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
    authority.write_file(dest, source.read_bytes(), 0o644)
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
