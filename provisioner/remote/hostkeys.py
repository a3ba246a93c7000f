"""Host keys dynoform makes for each host, handed in through user-data and pinned before use.

Pure apart from key generation: rendering cloud-config and computing fingerprints do no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from provisioner.errors import DynoformError


@dataclass(frozen=True)
class HostKey:
    kind: str  # the cloud-init name: "ed25519"
    private_openssh: str
    public: str  # "ssh-ed25519 AAAA..."


def generate_ed25519() -> HostKey:
    from cryptography.hazmat.primitives import serialization  # here: only a new host needs it
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return HostKey("ed25519", private, public)


def generate_host_keys() -> list[HostKey]:
    """The host keys of one new host; ed25519 only, so no other type can be offered."""
    return [generate_ed25519()]


def split_public(line: str) -> tuple[str, bytes]:
    """("ssh-ed25519", raw blob) from an OpenSSH public key line."""
    parts = line.strip().split()
    if len(parts) < 2:
        raise DynoformError(f"not an OpenSSH public key: {line[:40]!r}")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError as exc:
        raise DynoformError(f"not an OpenSSH public key: {line[:40]!r}") from exc
    return parts[0], blob


def fingerprint_blob(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint, as `ssh-keygen -lf` prints it."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def fingerprint(line: str) -> str:
    return fingerprint_blob(split_public(line)[1])


def cloud_config(
    host_keys: list[HostKey], hostname: str | None = None, extra: dict[str, Any] | None = None
) -> str:
    """`#cloud-config` user-data that installs exactly these SSH host keys.

    JSON is valid YAML, so the document is rendered with json.dumps: nothing can be injected.
    """
    config: dict[str, Any] = {
        "ssh_deletekeys": True,
        "ssh_genkeytypes": [],
        "ssh_keys": {},
    }
    for key in host_keys:
        config["ssh_keys"][f"{key.kind}_private"] = key.private_openssh
        config["ssh_keys"][f"{key.kind}_public"] = key.public
    if hostname:
        config["hostname"] = hostname
    config.update(extra or {})
    return "#cloud-config\n" + json.dumps(config, indent=1, sort_keys=True) + "\n"


def pin_record(instance_id: str, host_keys: list[HostKey], **fields: Any) -> dict[str, Any]:
    """The state-store document pinning a host's public keys (never the private ones)."""
    record: dict[str, Any] = {
        "id": instance_id,
        "host_keys": [key.public for key in host_keys],
        "fingerprints": [fingerprint(key.public) for key in host_keys],
    }
    record.update(fields)
    return record
